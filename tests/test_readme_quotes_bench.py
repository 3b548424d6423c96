"""The README quotes the demo grid exactly as ``bench/demo_seeds.py`` wrote it."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _section(text: str, title: str) -> str:
    start = text.index(title)
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None].split("\n", 2)[2].strip()


def test_readme_demo_tables_equal_bench_demo_seeds():
    bench = (ROOT / "bench" / "demo_seeds.md").read_text()
    readme = (ROOT / "README.md").read_text()
    for title, marker in (("## Vision-language", "VL-TABLE"), ("## Text-to-image", "T2I-TABLE")):
        if title not in bench:
            continue
        quoted = readme[readme.index(f"<!-- {marker} -->") + len(f"<!-- {marker} -->"):readme.index(f"<!-- /{marker} -->")]
        assert quoted.strip() == _section(bench, title), f"README's {marker} differs from bench/demo_seeds.md"
