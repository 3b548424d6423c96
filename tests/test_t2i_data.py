"""The ``captions`` and ``t2i_meta`` dataset loaders."""

import json

import numpy as np
import pytest

from mmr1.data import DataError
from mmr1.plugins import get_dataset


def test_captions_json_list_jsonl_and_txt(tmp_path):
    load = get_dataset("captions")
    f = tmp_path / "caps.json"
    f.write_text(json.dumps(["a red circle", {"caption": "a blue square", "shape": "square"},
                             {"prompt": "a green triangle"}, {"caption": {"short": "a cat", "long": "a photo of a cat"}}]))
    rows = load(path=str(f))
    assert len(rows) == 4
    assert rows[0]["problem"] == rows[0]["solution"] == rows[0]["caption"] == "a red circle"
    assert rows[0]["image"] == []
    assert rows[1]["shape"] == "square"                        # other keys stay columns
    assert rows[2]["caption"] == "a green triangle"
    assert rows[3]["caption"] == "a photo of a cat"            # the long caption is the prompt
    jl = tmp_path / "caps.jsonl"
    jl.write_text('{"caption": "a red circle"}\n\n"a yellow square"\n')
    assert [r["caption"] for r in load(path=str(jl))] == ["a red circle", "a yellow square"]
    txt = tmp_path / "caps.txt"
    txt.write_text("a red circle\n\n  a blue triangle  \n")
    assert [r["problem"] for r in load(path=str(txt))] == ["a red circle", "a blue triangle"]


def test_captions_problems_name_file_and_row(tmp_path):
    load = get_dataset("captions")
    f = tmp_path / "bad.jsonl"
    f.write_text('{"caption": "ok"}\n{"caption": ""}\n{"nothing": 1}\nnot json\n')
    with pytest.raises(DataError) as err:
        load(path=str(f))
    text = str(err.value)
    assert "bad.jsonl, row 2" in text and "bad.jsonl, row 3" in text and "bad.jsonl, row 4" in text
    assert len(load(path=str(f), strict=False)) == 1
    with pytest.raises(FileNotFoundError, match="captions file not found"):
        load(path=str(tmp_path / "missing.json"))
    with pytest.raises(ValueError, match="needs dataset_path"):
        load(path=None)


def _write_tokens(root, n, prefix):
    rows = []
    for i in range(n):
        code = root / f"{prefix}{i}.npy"
        np.save(code, np.full((1, 1, 2, 2), i, dtype=np.int64))
        label = root / f"{prefix}{i}.txt"
        label.write_text(f"caption {prefix} {i}\n")
        rows.append({"code_path": code.name, "label_path": label.name})
    return rows


def test_t2i_meta_from_meta_json_and_mixture(tmp_path):
    load = get_dataset("t2i_meta")
    (tmp_path / "meta_a.json").write_text(json.dumps(_write_tokens(tmp_path, 4, "a")))
    (tmp_path / "meta_b.json").write_text(json.dumps(_write_tokens(tmp_path, 6, "b")))
    rows = load(path=str(tmp_path / "meta_a.json"))
    assert len(rows) == 4
    row = rows[2]
    assert row["caption"] == row["problem"] == "caption a 2"
    assert row["code_path"] == str(tmp_path / "a2.npy") and row["image"] == []
    mix = tmp_path / "mix.yaml"
    mix.write_text("datasets:\n  - json_path: meta_a.json\n    sampling_strategy: first:2\n"
                   "  - json_path: meta_b.json\n    sampling_strategy: end:3\n")
    rows = load(path=str(mix))
    assert [rows[i]["caption"] for i in range(len(rows))] == ["caption a 0", "caption a 1", "caption b 3",
                                                              "caption b 4", "caption b 5"]
    sub = rows.subsample(2, seed=0)
    assert len(sub) == 2 and sub[0]["caption"].startswith("caption")


def test_t2i_meta_missing_files(tmp_path):
    load = get_dataset("t2i_meta")
    rows = _write_tokens(tmp_path, 2, "c")
    rows.append({"code_path": "gone.npy", "label_path": "gone.txt"})
    (tmp_path / "meta.json").write_text(json.dumps(rows))
    with pytest.raises(DataError, match="row 2: code_path"):
        load(path=str(tmp_path / "meta.json"), check_files=True)
    lazy = load(path=str(tmp_path / "meta.json"))
    with pytest.raises(ValueError, match="cannot read caption file"):
        lazy[2]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load(path=str(tmp_path / "nope.json"))
