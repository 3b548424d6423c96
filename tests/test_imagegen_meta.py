"""Meta files and YAML mixtures with sampling strategies."""

import json

import pytest

from mmr1.imagegen.meta import MetaError, load_meta, load_mixture, sample_rows


def _meta(path, n, tag):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([{"code_path": f"codes/{tag}{i}.npy", "label_path": f"codes/{tag}{i}.txt"} for i in range(n)]))
    return path


def _names(rows):
    return [r["code_path"].rsplit("/", 1)[-1].removesuffix(".npy") for r in rows]


@pytest.fixture()
def metas(tmp_path):
    return _meta(tmp_path / "a" / "meta.json", 20, "a"), _meta(tmp_path / "b" / "meta.json", 10, "b")


def _mixture(tmp_path, entries):
    path = tmp_path / "mix.yaml"
    lines = ["datasets:"]
    for json_path, strategy in entries:
        lines.append(f"  - json_path: {json_path}")
        if strategy is not None:
            lines.append(f"    sampling_strategy: \"{strategy}\"")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_load_meta_resolves_relative_paths(metas, tmp_path):
    rows = load_meta(metas[0])
    assert len(rows) == 20
    assert rows[0]["code_path"] == str(tmp_path / "a" / "codes" / "a0.npy")


@pytest.mark.parametrize(
    "strategy, expected",
    [
        ("all", [f"a{i}" for i in range(20)]),
        (None, [f"a{i}" for i in range(20)]),
        ("first:3", ["a0", "a1", "a2"]),
        ("end:2", ["a18", "a19"]),
        ("first:10%", ["a0", "a1"]),
        ("end:0", []),
    ],
)
def test_deterministic_strategies(metas, tmp_path, strategy, expected):
    rows = load_mixture(_mixture(tmp_path, [("a/meta.json", strategy)]))
    assert _names(rows) == expected
    assert all(r["meta_file"] == str(metas[0]) for r in rows)


def test_random_strategies_seeded(metas, tmp_path):
    mix = _mixture(tmp_path, [("a/meta.json", "random:5"), ("b/meta.json", "50%")])
    rows = load_mixture(mix, seed=0)
    names = _names(rows)
    a, b = [n for n in names if n[0] == "a"], [n for n in names if n[0] == "b"]
    assert len(a) == 5 and len(b) == 5 and len(set(names)) == 10
    assert a == sorted(a, key=lambda n: int(n[1:]))  # file order kept
    assert _names(load_mixture(mix, seed=0)) == names  # same seed, same rows
    draws = {tuple(_names(load_mixture(mix, seed=s))) for s in range(5)}
    assert len(draws) > 1  # the seed matters
    # percent rounds up; more than available takes all
    assert len(load_mixture(_mixture(tmp_path, [("b/meta.json", "15%")]))) == 2
    assert len(load_mixture(_mixture(tmp_path, [("b/meta.json", "random:50")]))) == 10


def test_sample_rows_directly():
    rows = list(range(10))
    assert sample_rows(rows, "first:4") == [0, 1, 2, 3]
    assert sample_rows(rows, "end:4") == [6, 7, 8, 9]
    assert sample_rows(rows, "random:10", seed=1) == rows
    assert sample_rows(rows, "100%") == rows
    assert sample_rows(rows, "0%") == []


@pytest.mark.parametrize("strategy", ["last:3", "first:x", "random:-1", "150%", "7", "first:2.5", "sometimes"])
def test_bad_strategy_names_file_and_entry(metas, tmp_path, strategy):
    mix = _mixture(tmp_path, [("a/meta.json", "all"), ("b/meta.json", strategy)])
    with pytest.raises(MetaError) as err:
        load_mixture(mix)
    msg = str(err.value)
    assert "mix.yaml" in msg and "datasets[1]" in msg and "b/meta.json" in msg and "sampling_strategy" in msg


def test_missing_and_malformed_files(metas, tmp_path):
    with pytest.raises(MetaError, match=r"datasets\[0\].*nope/meta.json.*does not exist"):
        load_mixture(_mixture(tmp_path, [("nope/meta.json", "all")]))
    with pytest.raises(MetaError, match="mixture file .* does not exist"):
        load_mixture(tmp_path / "absent.yaml")
    (tmp_path / "empty.yaml").write_text("datasets: []\n")
    with pytest.raises(MetaError, match="non-empty `datasets:`"):
        load_mixture(tmp_path / "empty.yaml")
    (tmp_path / "rows.json").write_text(json.dumps([{"code_path": "x.npy"}]))
    with pytest.raises(MetaError, match="rows.json.*row 0"):
        load_meta(tmp_path / "rows.json")
    # a plain meta JSON is a mixture of one
    assert len(load_mixture(metas[1])) == 10
