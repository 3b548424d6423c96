"""The demos over seeds x torch threads, on a busy machine: writes the table the README quotes.

    python bench/demo_seeds.py [--part vl|t2i|both] [--vl-seeds 0,1,2,3,4] [--t2i-seeds 0,1,2]
                               [--threads 1,2] [--parallel 2] [--out outputs/demo_seeds]
                               [--table bench/demo_seeds.md] [--no-readme]

The cells are also kept in bench/demo_seeds.json, and README.md's quoted tables are rewritten.

Each cell is one ``mmr1 demo --only PART --seed S --threads T`` in its own process: the command a
user runs, with nothing changed. ``--parallel`` cells run at once, and whenever fewer cells than
that are left, a CPU burner (a busy loop) takes the free slot, so every cell runs with another
CPU-heavy process beside it. The table lists every cell, the bad ones too, with the bars from
:mod:`mmr1.verdicts`. A benchmark, not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mmr1.verdicts import (T2I_MAX_SHAPE_DROP, T2I_MIN_FIDELITY, VL_MIN_ACCURACY,  # noqa: E402
                           VL_MIN_FORMAT, t2i_verdict, vl_verdict)

BURNER = "import time\nwhile True:\n    sum(i * i for i in range(100_000))\n"
VL_MAX_SECONDS = 240


def _cells(args) -> list[tuple[str, int, int]]:
    parts = ["vl", "t2i"] if args.part == "both" else [args.part]
    seeds = {"vl": args.vl_seeds, "t2i": args.t2i_seeds}
    return [(p, s, t) for p in parts for s in seeds[p] for t in args.threads]


def _start(cell, out: Path, quick: bool = False) -> subprocess.Popen:
    part, seed, threads = cell
    folder = out / f"{part}-seed{seed}-threads{threads}"
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "mmr1.cli", "demo", "--only", part, "--seed", str(seed), "--threads", str(threads),
           "--out", str(folder)] + (["--quick"] if quick else [])
    log = (folder / "demo.log").open("w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    proc.cell, proc.folder, proc.started = cell, folder, time.time()
    return proc


def _result(proc) -> dict:
    part, seed, threads = proc.cell
    summary_path = proc.folder / part / "summary.json"
    row = {"part": part, "seed": seed, "threads": threads, "exit": proc.returncode,
           "wall_s": round(time.time() - proc.started, 1)}
    if not summary_path.is_file():
        row.update(learned=False, verdict=f"no summary: the run failed, see {proc.folder / 'demo.log'}")
        return row
    s = json.loads(summary_path.read_text())
    learned, verdict = (vl_verdict if part == "vl" else t2i_verdict)(s)
    keep = ("accuracy_before", "accuracy_after", "format_before", "format_after", "fidelity_before", "fidelity_after",
            "shape_before", "shape_after", "seconds", "seconds_by_phase")
    row.update(summary={k: s[k] for k in keep if k in s}, learned=learned, verdict=verdict, seconds=s["seconds"])
    return row


def run_grid(args) -> list[dict]:
    cells, running, burners, rows = _cells(args), [], [], []
    print(f"{len(cells)} cells, {args.parallel} at a time; output in {args.out}", flush=True)
    while cells or running:
        while cells and len(running) < args.parallel:
            running.append(_start(cells.pop(0), args.out, args.quick))
        while not cells and running and len(running) + len(burners) < args.parallel:
            burners.append(subprocess.Popen([sys.executable, "-c", BURNER]))
        time.sleep(2)
        for proc in [p for p in running if p.poll() is not None]:
            running.remove(proc)
            row = _result(proc)
            rows.append(row)
            print(f"{row['part']} seed {row['seed']} threads {row['threads']}: {row['verdict']} "
                  f"({row.get('seconds', '?')} s)", flush=True)
    for b in burners:
        b.kill()
    return sorted(rows, key=lambda r: (r["part"], r["seed"], r["threads"]))


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":!bench/demo_seeds.md", ":!bench/demo_seeds.json", ":!README.md"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()   # its own outputs don't count
        return out.stdout.strip() + (" (with uncommitted changes)" if dirty else "")
    except OSError:
        return "unknown"


def _section(part: str, rows: list[dict], run: dict) -> list[str]:
    title = {"vl": "Vision-language (`mmr1 demo --only vl`)", "t2i": "Text-to-image (`mmr1 demo --only t2i`)"}[part]
    lines = [f"## {title}", "",
             f"Measured {run['when']}, commit {run['commit']}, {run['machine']}; {run['parallel']} cells at a time, "
             f"whole grid {run['minutes']:.0f} min.", ""]
    if part == "vl":
        lines += ["| seed | threads | accuracy before -> after | format after | seconds | verdict |", "|---|---|---|---|---|---|"]
    else:
        lines += ["| seed | threads | fidelity before -> after | shape accuracy before -> after | seconds | verdict |",
                  "|---|---|---|---|---|---|"]
    good = 0
    for r in rows:
        s = r.get("summary")
        if s is None:
            lines.append(f"| {r['seed']} | {r['threads']} | - | - | - | FAILED: {r['verdict']} |")
            continue
        slow = part == "vl" and s["seconds"] > VL_MAX_SECONDS
        good += r["learned"] and not slow
        verdict = ("learned" if r["learned"] else "**did not learn**") + (" (**too slow**)" if slow else "")
        if part == "vl":
            figures = f"{s['accuracy_before']:.3f} -> {s['accuracy_after']:.3f} | {s['format_after']:.3f}"
        else:
            figures = f"{s['fidelity_before']:.3f} -> {s['fidelity_after']:.3f} | {s['shape_before']:.3f} -> {s['shape_after']:.3f}"
        lines.append(f"| {r['seed']} | {r['threads']} | {figures} | {s['seconds']:.0f} | {verdict} |")
    return lines + ["", f"{good} of {len(rows)} cells meet every bar.", ""]


def write_table(results: dict) -> str:
    """The Markdown table of every part in ``results`` (``{part: {"run": ..., "rows": [...]}}``)."""
    lines = [
        "# The demos over seeds and threads",
        "",
        "Written by `python bench/demo_seeds.py`. Each cell is one `mmr1 demo --only PART --seed S --threads T` in "
        "its own process. Cells ran two at a time; when fewer were left, a CPU burner filled the free slot, so "
        "every cell had another CPU-heavy process beside it.",
        "",
        f"Bars: vision-language held-out accuracy >= {VL_MIN_ACCURACY:.2f} (3x chance) and format >= "
        f"{VL_MIN_FORMAT:.2f}, in at most {VL_MAX_SECONDS} s; text-to-image colour fidelity >= "
        f"{T2I_MIN_FIDELITY:.2f} with shape accuracy at most {T2I_MAX_SHAPE_DROP * 100:.0f} points below its "
        "pre-GRPO level. Every cell is listed as it came out.",
        "",
    ]
    for part in ("vl", "t2i"):
        if part in results:
            lines += _section(part, results[part]["rows"], results[part]["run"])
    return "\n".join(lines)


def quote_in_readme(table: str, readme: Path) -> None:
    """Replace the text between ``<!-- VL-TABLE -->`` / ``<!-- T2I-TABLE -->`` and their closing markers."""
    text = readme.read_text()
    for title, marker in (("## Vision-language", "VL-TABLE"), ("## Text-to-image", "T2I-TABLE")):
        opening, closing = f"<!-- {marker} -->", f"<!-- /{marker} -->"
        if title not in table or opening not in text:
            continue
        start = table.index(title)
        end = table.find("\n## ", start + 1)
        body = table[start:end if end > 0 else None].split("\n", 2)[2].strip()
        head, rest = text.split(opening, 1)
        tail = rest.split(closing, 1)[1] if closing in rest else rest
        text = f"{head}{opening}\n{body}\n{closing}{tail}"
    readme.write_text(text)


def _run_info(args, started: float) -> dict:
    import torch
    import transformers

    return {"when": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "commit": _commit(),
            "machine": f"{os.cpu_count()} CPUs ({platform.machine()}), torch {torch.__version__}, "
                       f"transformers {transformers.__version__}",
            "parallel": args.parallel, "minutes": (time.time() - started) / 60, "argv": sys.argv[1:]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ints = lambda text: [int(x) for x in text.split(",") if x]  # noqa: E731
    p.add_argument("--part", choices=["vl", "t2i", "both"], default="both")
    p.add_argument("--vl-seeds", type=ints, default=[0, 1, 2, 3, 4])
    p.add_argument("--t2i-seeds", type=ints, default=[0, 1, 2])
    p.add_argument("--threads", type=ints, default=[1, 2])
    p.add_argument("--parallel", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "outputs" / "demo_seeds")
    p.add_argument("--quick", action="store_true", help="quick demos (checks this script; the bars cannot be met)")
    p.add_argument("--no-readme", dest="readme", action="store_false", help="leave README.md's quoted tables alone")
    p.add_argument("--table", type=Path, default=ROOT / "bench" / "demo_seeds.md")
    args = p.parse_args(argv)
    started = time.time()
    rows = run_grid(args)
    run = _run_info(args, started)
    store = args.table.with_suffix(".json")            # every part's last grid; a run replaces its own parts
    results = json.loads(store.read_text()) if store.is_file() else {}
    for part in {r["part"] for r in rows}:
        results[part] = {"run": run, "rows": [r for r in rows if r["part"] == part]}
    store.write_text(json.dumps(results, indent=1, default=str))
    text = write_table(results)
    args.table.write_text(text + "\n")
    if args.readme:
        quote_in_readme(text, ROOT / "README.md")
    print(text)
    return 0 if all(r["learned"] for r in rows) else 1

if __name__ == "__main__":
    sys.exit(main())
