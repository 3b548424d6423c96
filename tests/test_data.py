"""Data loaders: json / jsonl, hf save_to_disk folders, the synthetic shapes set, and their problems."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import mmr1
from mmr1.data import DataError, DataProblem, ImageLoadError, RowDataset, load_image, load_images
from mmr1.data.hf_loader import load_hf
from mmr1.data.json_loader import load_json
from mmr1.data.synthetic import load_shapes
from mmr1.fixtures.shapes import VL_COLORS, make_shapes_rows

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def _png(path: Path, colour=RED, size=(6, 6)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def _jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def data_dir(tmp_path):
    folder = tmp_path / "data"
    _png(folder / "imgs" / "red.png", RED)
    _png(folder / "imgs" / "green.png", GREEN)
    _png(folder / "blue.png", BLUE)
    return folder


# ----------------------------------------------------------------------------------------- json


def test_json_list(data_dir):
    path = data_dir / "train.json"
    path.write_text(json.dumps([
        {"problem": "What colour?", "solution": "red", "image": "imgs/red.png"},
        {"problem": "Which two?", "solution": ["green", "blue"], "image": ["imgs/green.png", "blue.png"]},
        {"problem": "No image", "solution": 3},
    ]), encoding="utf-8")
    ds = load_json(str(path))
    assert isinstance(ds, RowDataset) and len(ds) == 3 and ds.problems == []
    assert ds[0]["image"] == [str(data_dir.resolve() / "imgs" / "red.png")]
    assert ds[1]["image"] == [str(data_dir.resolve() / "imgs" / "green.png"), str(data_dir.resolve() / "blue.png")]
    assert ds[2]["image"] == [] and ds[2]["solution"] == 3
    assert [img.getpixel((0, 0)) for img in load_images(ds[1]["image"])] == [GREEN, BLUE]
    assert ds[0]["problem"] == "What colour?" and ds[1]["solution"] == ["green", "blue"]


def test_jsonl_with_blank_lines_and_extra_columns(data_dir):
    path = _jsonl(data_dir / "train.jsonl", [
        {"problem": "a", "solution": "1", "image": "imgs/red.png", "difficulty": 2},
        "",
        {"problem": "b", "solution": "2", "image": ["imgs/green.png"]},
    ])
    ds = load_json(str(path))
    assert [r["problem"] for r in ds] == ["a", "b"]
    assert ds[0]["difficulty"] == 2  # extra columns travel to the rewards
    assert ds[1]["_source"] == f"{path}:3"  # JSONL rows are numbered by line


def test_relative_image_paths_follow_the_data_file_not_the_cwd(data_dir, tmp_path, monkeypatch):
    path = _jsonl(data_dir / "train.jsonl", [{"problem": "a", "solution": "1", "image": "imgs/red.png"}])
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    _png(elsewhere / "imgs" / "red.png", BLUE)  # a decoy with the same relative path
    monkeypatch.chdir(elsewhere)
    ds = load_json("../../data/train.jsonl")
    (image,) = ds[0]["image"]
    assert Path(image).is_absolute()
    assert Path(image) == (data_dir / "imgs" / "red.png").resolve()
    assert load_image(image).getpixel((0, 0)) == RED


def test_absolute_image_path_is_kept(data_dir):
    absolute = str((data_dir / "blue.png").resolve())
    ds = load_json(str(_jsonl(data_dir / "abs.jsonl", [{"problem": "a", "solution": "b", "image": absolute}])))
    assert ds[0]["image"] == [absolute]


def test_images_alias(data_dir):
    ds = load_json(str(_jsonl(data_dir / "t.jsonl", [
        {"problem": "a", "solution": "1", "images": ["imgs/red.png", "blue.png"]}])))
    assert "images" not in ds[0]
    assert [load_image(p).getpixel((0, 0)) for p in ds[0]["image"]] == [RED, BLUE]


def test_column_mapping(data_dir):
    path = _jsonl(data_dir / "t.jsonl", [{"question": "q?", "answer": "42", "picture": "blue.png"}])
    with pytest.raises(DataError):
        load_json(str(path))
    ds = load_json(str(path), columns={"question": "problem", "answer": "solution", "picture": "image"})
    assert ds[0]["problem"] == "q?" and ds[0]["solution"] == "42"
    assert ds[0]["image"] == [str((data_dir / "blue.png").resolve())]
    assert ds[0]["question"] == "q?" and ds[0]["answer"] == "42"  # mapping copies: the original columns stay


def test_json_loader_through_the_registry(data_dir):
    path = _jsonl(data_dir / "t.jsonl", [{"problem": "a", "solution": "1"}])
    loader = mmr1.get_dataset("json")
    assert len(loader(path=str(path), columns=None)) == 1


def test_strict_loading_lists_every_problem_with_file_and_row(data_dir):
    path = _jsonl(data_dir / "bad.jsonl", [
        {"problem": "ok", "solution": "1"},
        {"problem": "no solution"},
        '{"problem": "cut off", ',
        {"solution": "no problem"},
        {"problem": 5, "solution": "1"},
        {"problem": "bad image type", "solution": "1", "image": 7},
        ["not", "an", "object"],
    ])
    with pytest.raises(DataError) as info:
        load_json(str(path))
    error = info.value
    message = str(error)
    assert "6 data problem(s)" in message
    for row, fragment in [(2, "missing field 'solution'"), (3, "malformed JSON line"),
                          (4, "missing field 'problem'"), (5, "field 'problem' must be a string"),
                          (6, "field 'image' must be a path or a list"), (7, "expected an object")]:
        assert f"{path}, row {row}: {fragment}" in message, (row, fragment)
    assert {p.row for p in error.problems} == {2, 3, 4, 5, 6, 7}
    assert all(p.source == str(path) for p in error.problems)

    lenient = load_json(str(path), strict=False)
    assert [r["problem"] for r in lenient] == ["ok"]
    assert len(lenient.problems) == 6


def test_json_list_rows_are_numbered_by_index(data_dir):
    path = data_dir / "list.json"
    path.write_text(json.dumps([{"problem": "a", "solution": "1"}, {"problem": "b"}]), encoding="utf-8")
    with pytest.raises(DataError, match=r"list\.json, row 1: missing field 'solution'"):
        load_json(str(path))


def test_whole_file_problems(data_dir):
    broken = data_dir / "broken.json"
    broken.write_text('[{"problem": "a",', encoding="utf-8")
    with pytest.raises(DataError, match=r"broken\.json: invalid JSON at line 1"):
        load_json(str(broken))
    mapping = data_dir / "mapping.json"
    mapping.write_text('{"problem": "a"}', encoding="utf-8")
    with pytest.raises(DataError, match="must hold a list of rows"):
        load_json(str(mapping))
    empty = data_dir / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="holds no rows"):
        load_json(str(empty))
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_json(str(data_dir / "nope.jsonl"))


def test_data_problem_text():
    assert str(DataProblem("f.jsonl", 3, "bad")) == "f.jsonl, row 3: bad"
    assert str(DataProblem("f.jsonl", None, "bad")) == "f.jsonl: bad"
    many = DataError([DataProblem("f", i, "x") for i in range(25)])
    assert "25 data problem(s)" in str(many) and "and 5 more" in str(many) and len(many.problems) == 25


# ------------------------------------------------------------------------------------------- images


def test_load_image_errors_name_the_file(tmp_path):
    with pytest.raises(ImageLoadError, match="image file not found: .*missing.png"):
        load_image(str(tmp_path / "missing.png"))
    corrupt = tmp_path / "x.png"
    corrupt.write_bytes(b"\x89PNG not really")
    with pytest.raises(ImageLoadError, match=r"cannot read image .*x\.png"):
        load_image(str(corrupt))
    with pytest.raises(ImageLoadError, match="must be a path or an image"):
        load_image(42)


def test_load_image_converts_to_rgb(tmp_path):
    gray = tmp_path / "g.png"
    Image.new("L", (4, 4), 128).save(gray)
    image = load_image(str(gray))
    assert image.mode == "RGB" and image.getpixel((0, 0)) == (128, 128, 128)
    assert load_image(Image.new("RGBA", (2, 2), (1, 2, 3, 4))).mode == "RGB"
    assert load_image({"bytes": gray.read_bytes(), "path": None}).getpixel((1, 1)) == (128, 128, 128)
    assert load_image({"bytes": None, "path": str(gray)}).size == (4, 4)


def test_check_images_reports_row(data_dir):
    corrupt = data_dir / "bad.png"
    corrupt.write_bytes(b"garbage")
    path = _jsonl(data_dir / "t.jsonl", [
        {"problem": "a", "solution": "1", "image": "imgs/red.png"},
        {"problem": "b", "solution": "1", "image": "bad.png"},
        {"problem": "c", "solution": "1", "image": ["imgs/red.png", "gone.png"]},
    ])
    ds = load_json(str(path))
    problems = ds.check_images()
    assert [(p.source, p.row) for p in problems] == [(str(path), 2), (str(path), 3)]
    assert "bad.png" in problems[0].reason and "gone.png" in problems[1].reason


# ------------------------------------------------------------------------------- train_sample_size


def test_subsample_is_deterministic_by_seed(data_dir):
    path = _jsonl(data_dir / "many.jsonl", [{"problem": f"p{i}", "solution": str(i)} for i in range(50)])
    ds = load_json(str(path))
    pick = lambda d: [r["problem"] for r in d]  # noqa: E731
    a, b = ds.subsample(10, seed=1), ds.subsample(10, seed=1)
    assert len(a) == 10 and pick(a) == pick(b)
    assert len(set(pick(a))) == 10 and set(pick(a)) <= set(pick(ds))
    # The subset keeps file order.
    assert pick(a) == sorted(pick(a), key=lambda p: int(p[1:]))
    others = {tuple(pick(ds.subsample(10, seed=s))) for s in range(2, 6)}
    assert len(others | {tuple(pick(a))}) > 1
    assert ds.subsample(None) is ds and ds.subsample(50) is ds and ds.subsample(500) is ds


def test_train_sample_size_in_prepare(tmp_path, data_dir):
    from mmr1.config import load_config
    from mmr1.fixtures.models import build_tiny_vlm
    from mmr1.grpo.trainer import prepare

    _jsonl(data_dir / "many.jsonl", [{"problem": f"p{i}", "solution": str(i)} for i in range(30)])
    model = build_tiny_vlm(tmp_path / "tiny")
    config_file = tmp_path / "run.yaml"
    config_file.write_text(
        f"model_name_or_path: {model}\ndataset_path: data/many.jsonl\ntrain_sample_size: 7\nseed: 3\n"
        "num_generations: 2\nper_device_train_batch_size: 2\n", encoding="utf-8")
    first = prepare(load_config(config_file)).dataset
    second = prepare(load_config(config_file)).dataset
    assert len(first) == 7 and [r["problem"] for r in first] == [r["problem"] for r in second]
    assert [r["problem"] for r in first] == [r["problem"] for r in load_json(str(data_dir / "many.jsonl")).subsample(7, 3)]


# ---------------------------------------------------------------------------------------------- hf


def _save_hf(path: Path, split_dict: bool = False):
    import datasets

    features = datasets.Features({"question": datasets.Value("string"), "answer": datasets.Value("string"),
                                  "image": datasets.Image()})
    ds = datasets.Dataset.from_dict(
        {"question": ["What colour?", "And this?"], "answer": ["red", "blue"],
         "image": [Image.new("RGB", (6, 6), RED), Image.new("RGB", (6, 6), BLUE)]},
        features=features)
    if split_dict:
        datasets.DatasetDict({"train": ds, "test": ds.select([1])}).save_to_disk(str(path))
    else:
        ds.save_to_disk(str(path))
    return path


def test_hf_loader_on_save_to_disk_folder_with_column_mapping(tmp_path):
    path = _save_hf(tmp_path / "hfds")
    ds = load_hf(str(path), columns={"question": "problem", "answer": "solution"})
    assert [r["problem"] for r in ds] == ["What colour?", "And this?"]
    assert [r["solution"] for r in ds] == ["red", "blue"]
    assert [len(r["image"]) for r in ds] == [1, 1]
    assert [load_images(r["image"])[0].getpixel((0, 0)) for r in ds] == [RED, BLUE]
    assert ds[1]["_source"] == f"{path}:1"
    # Through the registry, as a config's `dataset: hf` does.
    again = mmr1.get_dataset("hf")(path=str(path), columns={"question": "problem", "answer": "solution"})
    assert [r["solution"] for r in again] == ["red", "blue"]


def test_hf_loader_images_stay_undecoded_until_used(tmp_path):
    path = _save_hf(tmp_path / "hfds")
    ds = load_hf(str(path), columns={"question": "problem", "answer": "solution"})
    ref = ds[0]["image"][0]
    assert not isinstance(ref, Image.Image) and isinstance(ref, dict) and ref["bytes"]
    assert load_image(ref).getpixel((0, 0)) == RED


def test_hf_loader_splits_and_problems(tmp_path):
    path = _save_hf(tmp_path / "hfdd", split_dict=True)
    ds = load_hf(str(path), split="test", columns={"question": "problem", "answer": "solution"})
    assert [r["solution"] for r in ds] == ["blue"]
    with pytest.raises(ValueError, match="no split 'validation'.*test.*train"):
        load_hf(str(path), split="validation")
    with pytest.raises(DataError) as info:
        load_hf(str(path))  # no column mapping: problem / solution missing
    assert f"{path}, row 0: missing field 'problem'" in str(info.value)
    assert f"{path}, row 1: missing field 'solution'" in str(info.value)


# ------------------------------------------------------------------------------------------ shapes


def _pixels(img):
    return np.asarray(img).astype(int)


def _foreground(img):
    return (np.abs(_pixels(img) - 245) > 40).any(-1)  # the background is light grey (245 +- 10)


def _dominant_colour(img):
    a = _pixels(img).reshape(-1, 3)[_foreground(img).reshape(-1)]
    names = list(VL_COLORS)
    palette = np.array([VL_COLORS[n] for n in names])
    nearest = ((a[:, None, :] - palette[None]) ** 2).sum(-1).argmin(1)
    return names[np.bincount(nearest, minlength=len(names)).argmax()]


def _count_blobs(img):
    fg = _foreground(img)
    seen = np.zeros_like(fg)
    h, w = fg.shape
    blobs = 0
    for y in range(h):
        for x in range(w):
            if fg[y, x] and not seen[y, x]:
                blobs += 1
                stack = [(y, x)]
                seen[y, x] = True
                while stack:
                    cy, cx = stack.pop()
                    for ny in range(max(0, cy - 1), min(h, cy + 2)):
                        for nx in range(max(0, cx - 1), min(w, cx + 2)):
                            if fg[ny, nx] and not seen[ny, nx]:
                                seen[ny, nx] = True
                                stack.append((ny, nx))
    return blobs


def _signature(rows):
    return [(r["problem"], r["solution"], r["task"], r["image"][0].size, r["image"][0].tobytes()) for r in rows]


def test_shapes_deterministic_by_seed():
    a = load_shapes(n=12, seed=7, image_size=28)
    b = mmr1.get_dataset("shapes")(path=None, n=12, seed=7, image_size=28)
    c = load_shapes(n=12, seed=8, image_size=28)
    assert len(a) == 12
    assert _signature(a) == _signature(b)
    assert [r["image"][0].tobytes() for r in a] != [r["image"][0].tobytes() for r in c]
    assert [r["solution"] for r in a] != [r["solution"] for r in c] or _signature(a) != _signature(c)
    # A longer set starts with the shorter one (row i depends on seed and i only).
    assert _signature(load_shapes(n=20, seed=7, image_size=28)[:12]) == _signature(a)


def test_shapes_colour_answer_is_the_dominant_colour():
    rows = make_shapes_rows(60, seed=1, task="color", image_size=32, colors=list(VL_COLORS))
    assert {r["solution"] for r in rows} <= set(VL_COLORS)
    assert len({r["solution"] for r in rows}) >= 4
    for r in rows:
        assert r["problem"] == "What colour is the shape?" and r["task"] == "color"
        assert _dominant_colour(r["image"][0]) == r["solution"]


def test_shapes_count_answer_is_the_number_of_shapes():
    rows = make_shapes_rows(60, seed=2, task="count", image_size=40, max_count=4)
    assert {r["solution"] for r in rows} == {"1", "2", "3", "4"}
    for i, r in enumerate(rows):
        assert r["problem"] == "How many shapes are there?"
        assert _count_blobs(r["image"][0]) == int(r["solution"]), i
        assert _dominant_colour(r["image"][0]) in VL_COLORS


def test_shapes_mixed_and_options():
    rows = make_shapes_rows(30, seed=0, task="mixed", image_size=28, colors=["red", "blue"])
    assert {r["task"] for r in rows} == {"color", "count"}
    assert {r["solution"] for r in rows if r["task"] == "color"} <= {"red", "blue"}
    sizes = {r["image"][0].size for r in rows}
    assert all(w == h and 23 <= w <= 32 for w, h in sizes) and len(sizes) > 1
    with pytest.raises(ValueError, match="unknown colours"):
        make_shapes_rows(1, colors=["mauve"])
    with pytest.raises(ValueError, match="task must be"):
        make_shapes_rows(1, task="size")


def test_null_problem_or_solution_is_reported_like_a_missing_one(data_dir):
    path = _jsonl(data_dir / "nulls.jsonl", [
        {"problem": "a", "solution": None},
        {"problem": None, "solution": "1"},
        {"problem": "ok", "solution": "1"},
    ])
    with pytest.raises(DataError) as info:
        load_json(str(path))
    message = str(info.value)
    assert f"{path}, row 1: missing field 'solution'" in message
    assert f"{path}, row 2: missing field 'problem'" in message
    assert [r["problem"] for r in load_json(str(path), strict=False)] == ["ok"]
