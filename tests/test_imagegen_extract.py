"""Token extraction: codes + captions per image, resume, corrupt images, sharding, meta files."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from mmr1.fixtures.shapes import make_shapes, write_shapes_dataset
from mmr1.imagegen.extract import ExtractError, center_crop_resize, extract_tokens, item_paths, tokenize_main, write_meta
from mmr1.imagegen.meta import load_codes, load_meta, read_label
from mmr1.imagegen.tokenizers import VQTokenizer


@pytest.fixture(scope="module")
def vq():
    return VQTokenizer.train([s["image"] for s in make_shapes(100, seed=0)], codebook_size=32, patch=4, seed=0, iters=5)


@pytest.fixture()
def dataset(tmp_path):
    meta = write_shapes_dataset(tmp_path / "data", 10, seed=3)
    rows = json.loads(meta.read_text())
    # a corrupt file, a missing file, a malformed row, an absolute path with a short/long caption
    (tmp_path / "data" / "images" / "broken.png").write_bytes(b"this is not a png")
    big = Image.new("RGB", (48, 64), "white")
    big.paste(Image.new("RGB", (20, 20), (220, 40, 40)), (14, 22))
    big.save(tmp_path / "big.png")
    rows += [
        {"image_path": "images/broken.png", "caption": "a broken image"},
        {"image_path": "images/missing.png", "caption": "a missing image"},
        {"caption": "no image path"},
        {"image_path": str(tmp_path / "big.png"), "caption": {"short": "a red square", "long": "a red square on white"}},
    ]
    meta.write_text(json.dumps(rows))
    return meta, rows


def test_center_crop_resize():
    im = Image.new("RGB", (60, 40), "white")
    im.paste(Image.new("RGB", (10, 40), "black"), (0, 0))  # left band is cropped away
    out = center_crop_resize(im, 32)
    assert out.size == (32, 32)
    assert np.asarray(out).min() > 200


def test_extract_resume_and_corrupt(dataset, vq, tmp_path):
    meta, rows = dataset
    out = tmp_path / "tokens"
    s = extract_tokens(meta, out, vq, resolution=32, batch_size=4, progress=False)
    assert (s.total, s.assigned, s.encoded, s.skipped, s.failed) == (14, 14, 11, 0, 3)
    failed = {what: reason for what, reason in s.failures}
    assert any(w.endswith("broken.png") for w in failed)
    assert any(w.endswith("missing.png") for w in failed)
    assert any("row 12" in w for w in failed)
    assert all(reason for reason in failed.values())

    code_path, label_path = item_paths(out, 0)
    arr = np.load(code_path)
    assert arr.shape == (1, 1, 8, 8) and arr.dtype == np.int64
    assert label_path.read_text() == rows[0]["caption"]
    # codes are the tokenizer's codes of the image
    image = Image.open(meta.parent / rows[0]["image_path"]).convert("RGB")
    assert torch.equal(load_codes(code_path), vq.encode([image])[0])
    # non-string captions are kept as JSON; the 48x64 image was centre-cropped and resized
    code13, label13 = item_paths(out, 13, rows[13]["caption"])
    assert label13.suffix == ".json" and read_label(label13) == rows[13]["caption"]
    assert load_codes(code13).shape == (8, 8)

    # second run: everything done is skipped; the failures are reported again
    s2 = extract_tokens(meta, out, vq, resolution=32, progress=False)
    assert (s2.encoded, s2.skipped, s2.failed) == (0, 11, 3)
    # a lost file is redone; no temporary files are left behind
    code_path.unlink()
    s3 = extract_tokens(meta, out, vq, resolution=32, progress=False)
    assert (s3.encoded, s3.skipped) == (1, 10)
    assert not [p for p in out.rglob(".*")]

    n = write_meta(out, tmp_path / "meta" / "tokens.json")
    assert n == 11
    listed = load_meta(tmp_path / "meta" / "tokens.json")
    assert len(listed) == 11
    assert not json.loads((tmp_path / "meta" / "tokens.json").read_text())[0]["code_path"].startswith("/")
    assert all(np.load(r["code_path"]).shape == (1, 1, 8, 8) for r in listed)
    assert read_label(listed[0]["label_path"]) == rows[0]["caption"]


def test_strided_sharding_covers_every_row_once(dataset, vq, tmp_path):
    meta, _ = dataset
    out = tmp_path / "tokens"
    done = []
    for rank in range(3):
        acc = SimpleNamespace(process_index=rank, num_processes=3, is_local_main_process=rank == 0)
        s = extract_tokens(meta, out, vq, resolution=32, accelerator=acc, progress=False)
        assert s.assigned == len(range(rank, 14, 3))
        done.append(s)
    assert sum(s.encoded for s in done) == 11 and sum(s.failed for s in done) == 3
    assert write_meta(out, out / "meta.json") == 11


def test_extract_errors(vq, tmp_path):
    with pytest.raises(ExtractError, match="does not exist"):
        extract_tokens(tmp_path / "none.json", tmp_path / "out", vq, 32)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ExtractError, match="bad.json.*not valid JSON"):
        extract_tokens(tmp_path / "bad.json", tmp_path / "out", vq, 32)
    (tmp_path / "ok.json").write_text("[]")
    with pytest.raises(ExtractError, match="multiple of the tokenizer's downsample 4"):
        extract_tokens(tmp_path / "ok.json", tmp_path / "out", vq, 30)


def test_tokenize_main_cli(dataset, vq, tmp_path, capsys):
    meta, _ = dataset
    vq.save(tmp_path / "vq")
    out = tmp_path / "cli"
    rc = tokenize_main(["--data", str(meta), "--out", str(out), "--tokenizer", f"vq:{tmp_path / 'vq'}",
                        "--resolution", "32", "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "11 encoded" in printed and "3 failed" in printed and "broken.png" in printed
    assert len(load_meta(out / "meta.json")) == 11
    assert tokenize_main(["--data", str(meta), "--out", str(out), "--tokenizer", f"vq:{tmp_path / 'vq'}",
                          "--resolution", "32", "--no-progress", "--strict"]) == 1
    assert tokenize_main(["--data", str(meta), "--out", str(out), "--tokenizer", f"vq:{tmp_path / 'nope'}",
                          "--resolution", "32"]) == 2
    assert "has no codebook.pt" in capsys.readouterr().err


def test_tokenize_under_torchrun_shards_over_two_processes(dataset, vq, tmp_path):
    """`mmr1 tokenize` launched with 2 processes: the same code files as one process, one merged report."""
    from launching import run_processes

    meta, _ = dataset
    vq.save(tmp_path / "vq")
    one = tmp_path / "one"
    assert tokenize_main(["--data", str(meta), "--out", str(one), "--tokenizer", f"vq:{tmp_path / 'vq'}",
                          "--resolution", "32", "--no-progress"]) == 0
    two = tmp_path / "two"
    result = run_processes(["-m", "mmr1.imagegen.extract", "--data", str(meta), "--out", str(two), "--tokenizer",
                            f"vq:{tmp_path / 'vq'}", "--resolution", "32", "--no-progress"], processes=2)
    reports = [line for line in result.stdout.splitlines() if line.startswith("tokenized ")]
    assert len(reports) == 1                                  # the main process reports for both
    assert "11 encoded" in reports[0] and "3 failed" in reports[0]
    rows_one, rows_two = load_meta(one / "meta.json"), load_meta(two / "meta.json")
    assert len(rows_two) == len(rows_one) == 11
    for a, b in zip(rows_one, rows_two):
        assert read_label(a["label_path"]) == read_label(b["label_path"])
        assert torch.equal(load_codes(a["code_path"]), load_codes(b["code_path"]))
