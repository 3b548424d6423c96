"""The data layouts of MMR1, SimpleAR, trl, VLM-R1 and EasyR1 load as they are, or fail with a located line."""

from __future__ import annotations

import json
import logging
import textwrap
from pathlib import Path

import pytest
from PIL import Image

from mmr1.data import DataError, ImageLoadError, RowDataset, load_image
from mmr1.data.hf_loader import load_hf, split_suffix
from mmr1.data.json_loader import load_json
from mmr1.data.rows import lookup, prompt_text, resolve_image_roots
from mmr1.grpo.rewards import dataset_columns

RED, BLUE = (255, 0, 0), (0, 0, 255)


def _png(path: Path, colour=RED) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (6, 6), colour).save(path)
    return path


def _jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _save(path: Path, columns: dict, features=None, splits: dict | None = None) -> Path:
    import datasets

    ds = datasets.Dataset.from_dict(columns, features=datasets.Features(features) if features else None)
    (datasets.DatasetDict({k: ds.select(v) for k, v in splits.items()}) if splits else ds).save_to_disk(str(path))
    return path


def _preflight(folder: Path, body: str):
    from mmr1.config import load_config
    from mmr1.grpo.setup import preflight

    config = folder / "run.yaml"
    config.write_text(f"model_name_or_path: {folder / 'no-model'}\n" + textwrap.dedent(body), encoding="utf-8")
    result = preflight(load_config(config))
    return result, [p for p in result.problems if not p.startswith("model:")]


# ------------------------------------------------------------------------------------------ 1. image paths


def test_image_root_and_its_vlm_r1_and_easyr1_synonyms(tmp_path):
    _png(tmp_path / "pics" / "a.png", BLUE)
    data = _jsonl(tmp_path / "data" / "t.jsonl", [{"problem": "q", "solution": "a", "image": "a.png"}])
    for key, value in (("image_root", str(tmp_path / "pics")), ("image_folders", [str(tmp_path / "none"),
                                                                                   str(tmp_path / "pics")]),
                       ("image_dir", str(tmp_path / "pics"))):
        if key == "image_folders":
            (tmp_path / "none").mkdir(exist_ok=True)
        (image,) = load_json(str(data), **{key: value})[0]["image"]
        assert Path(image) == (tmp_path / "pics" / "a.png").resolve(), key
        assert load_image(image).getpixel((0, 0)) == BLUE
    with pytest.raises(ValueError, match="image_root and image_dir are synonyms; give one"):
        load_json(str(data), image_root=str(tmp_path), image_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"dataset_kwargs: image_root '.*nowhere' is not a folder"):
        load_json(str(data), image_root=str(tmp_path / "nowhere"))


def test_relative_image_paths_fall_back_to_the_launch_folder(tmp_path, monkeypatch):
    """MMR1 and SimpleAR meta files name images from the folder training is launched in."""
    _png(tmp_path / "launch" / "images" / "a.png", BLUE)
    data = _jsonl(tmp_path / "meta" / "train.jsonl", [{"problem": "q", "solution": "a", "image": "images/a.png"},
                                                      {"problem": "q", "solution": "a", "image": "images/gone.png"}])
    monkeypatch.chdir(tmp_path / "launch")
    ds = load_json(str(data))
    assert Path(ds[0]["image"][0]) == (tmp_path / "launch" / "images" / "a.png").resolve()
    with pytest.raises(ImageLoadError) as info:
        load_image(ds[1]["image"][0])
    message = str(info.value)
    assert f"image file not found: {(tmp_path / 'meta' / 'images' / 'gone.png').resolve()}" in message
    assert f"also looked for {(tmp_path / 'launch' / 'images' / 'gone.png').resolve()}" in message
    assert "image_root" in message and "\n" not in message
    import pickle

    with pytest.raises(ImageLoadError, match="also looked for"):        # what a data-loader worker receives
        load_image(pickle.loads(pickle.dumps(ds[1]["image"][0])))


def test_hf_rows_holding_paths_use_image_root_or_the_dataset_folder(tmp_path, monkeypatch):
    _png(tmp_path / "pics" / "a.png", BLUE)
    _png(tmp_path / "ds" / "b.png", RED)
    folder = _save(tmp_path / "ds", {"problem": ["q", "r"], "solution": ["a", "b"], "image": ["a.png", "b.png"]})
    monkeypatch.chdir(tmp_path / "pics")
    ds = load_hf(str(folder))
    assert [Path(r["image"][0]) for r in ds] == [(tmp_path / "pics" / "a.png").resolve(), (folder / "b.png").resolve()]
    ds = load_hf(str(folder), image_dir=str(tmp_path / "pics"))
    assert load_image(ds[0]["image"][0]).getpixel((0, 0)) == BLUE


def test_a_relative_image_root_is_relative_to_the_config_folder_then_the_launch_folder(tmp_path, monkeypatch):
    (tmp_path / "cfg" / "pics").mkdir(parents=True)
    (tmp_path / "launch" / "other").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "launch")
    kwargs = {"image_root": "pics", "image_folders": ["pics", "other"], "columns": {"a": "b"}}
    out = resolve_image_roots(kwargs, tmp_path / "cfg")
    assert out == {"image_root": str(tmp_path / "cfg" / "pics"), "image_folders": [str(tmp_path / "cfg" / "pics"),
                                                                                   "other"], "columns": {"a": "b"}}
    assert kwargs["image_root"] == "pics"  # not changed in place


def test_a_relative_image_root_through_the_config(tmp_path, monkeypatch):
    _png(tmp_path / "cfg" / "pics" / "a.png")
    _jsonl(tmp_path / "cfg" / "t.jsonl", [{"problem": "q", "solution": "a", "image": "a.png"}])
    (tmp_path / "launch").mkdir()
    monkeypatch.chdir(tmp_path / "launch")
    _, problems = _preflight(tmp_path / "cfg", "dataset_path: t.jsonl\ndataset_kwargs: {image_root: pics}\n")
    assert problems == []


# ----------------------------------------------------------------------------------- 2. nested field paths


VLM_R1 = {"image": "a.png", "conversations": [{"from": "human", "value": "<image>How many?"},
                                              {"from": "gpt", "value": "3"}]}
VLM_R1_COLUMNS = {"conversations.0.value": "problem", "conversations.1.value": "solution"}


def test_vlm_r1_conversations_map_with_dotted_paths(tmp_path):
    _png(tmp_path / "a.png")
    data = _jsonl(tmp_path / "t.jsonl", [VLM_R1, {"image": "a.png", "conversations": [{"from": "human", "value": "Q"}]}])
    with pytest.raises(DataError) as info:
        load_json(str(data), columns=VLM_R1_COLUMNS)
    assert str(info.value).count("\n") == 1  # one problem: row 2
    assert (f"{data}, row 2: dataset_kwargs: columns path 'conversations.1.value' (to 'solution') does not resolve "
            f"here: conversations has 1 item(s), so no index 1") in str(info.value)
    ds = load_json(str(data), columns=VLM_R1_COLUMNS, strict=False)
    assert ds[0]["problem"] == "<image>How many?" and ds[0]["solution"] == "3" and len(ds) == 1
    assert ds[0]["conversations"] == VLM_R1["conversations"]


def test_dotted_paths_in_an_hf_dataset_and_a_typo_in_the_head(tmp_path):
    folder = _save(tmp_path / "ds", {"conversations": [[{"from": "human", "value": "How many?"},
                                                         {"from": "gpt", "value": "3"}]]})
    ds = load_hf(str(folder), columns=VLM_R1_COLUMNS)
    assert (ds[0]["problem"], ds[0]["solution"]) == ("How many?", "3")
    with pytest.raises(DataError, match=r"columns maps 'conversation\.0\.value' \(to 'problem'\), whose column "
                                        r"'conversation' no row of .* has.*Did you mean 'conversations'\?"):
        load_hf(str(folder), columns={"conversation.0.value": "problem"})


def test_lookup_messages():
    row = {"a": {"b": [1, 2]}, "x.y": 5}
    assert lookup(row, "a.b.-1") == 2 and lookup(row, "x.y") == 5
    for path, text in (("a.c", "a has no key 'c' (its keys: b)"), ("a.b.2", "a.b has 2 item(s), so no index 2"),
                       ("a.b.k", "a.b is a list, which has no 'k'")):
        with pytest.raises(LookupError, match=text.replace("(", r"\(").replace(")", r"\)")):
            lookup(row, path)


# ------------------------------------------------------------------------------------- 3. mapping copies


def test_column_mapping_copies_so_either_name_reaches_the_rewards(tmp_path):
    _png(tmp_path / "a.png")
    data = _jsonl(tmp_path / "t.jsonl", [{"problem": "q", "solution": "4", "picture": "a.png"}])
    ds = load_json(str(data), columns={"solution": "ground_truth", "picture": "image"})
    row = ds[0]
    assert row["solution"] == row["ground_truth"] == "4" and row["picture"] == "a.png"
    assert row["image"] == [str((tmp_path / "a.png").resolve())] and row["_source"] == f"{data}:1"
    assert dataset_columns(ds) == {"problem", "solution", "ground_truth", "picture"}


def test_an_images_column_moves_so_it_never_shadows_the_reward_images(tmp_path):
    _png(tmp_path / "a.png")
    data = _jsonl(tmp_path / "t.jsonl", [{"problem": "q", "solution": "4", "images": ["a.png"]}])
    ds = load_json(str(data), columns={"images": "image"})
    assert "images" not in ds[0] and len(ds[0]["image"]) == 1 and "images" not in dataset_columns(ds)


# ----------------------------------------------------------------------------------- 4. trl prompt rows


def test_trl_prompt_rows_need_no_problem_or_solution(tmp_path):
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}]
    parts = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What colour?"}]}]
    _png(tmp_path / "a.png")
    data = _jsonl(tmp_path / "t.jsonl", [{"prompt": "Say hi", "ground_truth": "hi"},
                                         {"prompt": chat, "solution": "4"},
                                         {"prompt": parts, "image": "a.png"}])
    ds = load_json(str(data))
    assert [r["problem"] for r in ds] == ["Say hi", "What is 2+2?", "What colour?"]
    assert [r["solution"] for r in ds] == [None, "4", None]
    assert ds[1]["prompt"] == chat and ds[2]["prompt"] == parts and ds[0]["ground_truth"] == "hi"


def test_rows_without_problem_or_prompt_still_say_what_is_missing(tmp_path):
    data = _jsonl(tmp_path / "t.jsonl", [{"solution": "1"}, {"prompt": [{"role": "assistant", "content": "x"}]},
                                         {"prompt": 5}])
    with pytest.raises(DataError) as info:
        load_json(str(data))
    message = str(info.value)
    assert f"{data}, row 1: missing field 'problem' (" in message and "or give a 'prompt'" in message
    assert f"{data}, row 2: field 'prompt' must be a string or chat messages" in message
    assert f"{data}, row 3: field 'prompt' must be a string or chat messages" in message and "got int" in message
    assert prompt_text([{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]) \
        == "a\nb"


# ------------------------------------------------------------------------- 5. List(Image) stays lazy


def test_list_and_sequence_of_images_stay_undecoded(tmp_path):
    import datasets

    images = [[Image.new("RGB", (4, 4), RED), Image.new("RGB", (4, 4), BLUE)]]
    folder = _save(tmp_path / "ds", {"problem": ["q<image><image>"], "solution": ["a"], "images": images,
                                     "extra": images},
                   {"problem": datasets.Value("string"), "solution": datasets.Value("string"),
                    "images": datasets.List(datasets.Image()), "extra": datasets.Sequence(datasets.Image())})
    ds = load_hf(str(folder))
    refs = ds[0]["image"]
    assert len(refs) == 2 and all(isinstance(r, dict) and r["bytes"] for r in refs)
    assert all(isinstance(r, dict) for r in ds[0]["extra"])
    assert [load_image(r).getpixel((0, 0)) for r in refs] == [RED, BLUE]


# ------------------------------------------------------------------------------------------- 6. @split


def test_split_syntax(tmp_path):
    folder = _save(tmp_path / "dd", {"problem": ["a", "b"], "solution": ["1", "2"]}, splits={"train": [0], "test": [1]})
    assert [r["problem"] for r in load_hf(f"{folder}@test")] == ["b"]
    assert load_hf(f"{folder}@test")[0]["_source"] == f"{folder}@test:0"
    assert [r["problem"] for r in load_hf(f"{folder}@train")] == ["a"]
    with pytest.raises(ValueError, match=r"no split 'dev'; splits: \['test', 'train'\]"):
        load_hf(f"{folder}@dev")
    with pytest.raises(ValueError, match="names split 'test' but dataset_kwargs split is 'train'"):
        load_hf(f"{folder}@test", split="train")
    single = _save(tmp_path / "one", {"problem": ["a"], "solution": ["1"]})
    with pytest.raises(ValueError, match="holds one data set.*drop @test"):
        load_hf(f"{single}@test")
    assert split_suffix("org/name@validation") == ("org/name", "validation")
    assert split_suffix("a/b") == ("a/b", None)
    at = tmp_path / "x@y"
    at.mkdir()
    assert split_suffix(str(at)) == (str(at), None)  # a folder really named with an @


# ----------------------------------------------------------------------- 7. save_to_disk without `dataset: hf`


def test_a_save_to_disk_folder_given_to_the_json_loader_loads_with_a_note(tmp_path, caplog):
    folder = _save(tmp_path / "dd", {"q": ["a", "b"], "solution": ["1", "2"]}, splits={"train": [0], "test": [1]})
    with caplog.at_level(logging.WARNING, logger="mmr1.data"):
        ds = load_json(str(folder), columns={"q": "problem"})
    assert [r["problem"] for r in ds] == ["a"]
    (note,) = [r.getMessage() for r in caplog.records]
    assert "written by datasets' save_to_disk: loading it with the hf loader (set dataset: hf" in note
    assert [r["problem"] for r in load_json(f"{folder}@test", columns={"q": "problem"})] == ["b"]
    (tmp_path / "plain").mkdir()
    with pytest.raises(ValueError, match="is a folder; give a .json or .jsonl file"):
        load_json(str(tmp_path / "plain"))


def test_a_save_to_disk_folder_relative_to_the_config_without_dataset_hf(tmp_path, monkeypatch):
    _save(tmp_path / "cfg" / "hfds", {"problem": ["a", "b"], "solution": ["1", "2"]})
    _save(tmp_path / "cfg" / "hfdd", {"problem": ["a", "b"], "solution": ["1", "2"]}, splits={"train": [0], "test": [1]})
    (tmp_path / "launch").mkdir()
    monkeypatch.chdir(tmp_path / "launch")
    for path, rows in (("hfds", 2), ("hfdd", 1), ("hfdd@test", 1)):
        result, problems = _preflight(tmp_path / "cfg", f"dataset_path: {path}\n")
        assert problems == [] and result.summary == [f"train data: {rows} usable rows, 0 problem(s)"], path


def test_split_syntax_relative_to_the_config_with_dataset_hf(tmp_path, monkeypatch):
    _save(tmp_path / "cfg" / "hfdd", {"problem": ["a", "b"], "solution": ["1", "2"]}, splits={"train": [0], "test": [1]})
    (tmp_path / "launch").mkdir()
    monkeypatch.chdir(tmp_path / "launch")
    result, problems = _preflight(tmp_path / "cfg", "dataset: hf\ndataset_path: hfdd@test\n")
    assert problems == [] and result.summary == ["train data: 1 usable rows, 0 problem(s)"]


# --------------------------------------------------------------------------- 8. a plugin's plain list of rows


@pytest.fixture
def list_plugin(tmp_path, fresh_plugins):
    from mmr1.plugins import load_plugins

    plugin = tmp_path / "rows_plugin.py"
    plugin.write_text(textwrap.dedent("""\
        from mmr1 import hookimpl

        def load_listed(path=None, strict=True, **_):
            '''Rows as plain dicts.'''
            return [{"question": "q", "problem": "2+2?", "solution": "4"}, {"problem": "no solution"}]

        @hookimpl
        def register_datasets(register):
            register("listed", load_listed)
        """), encoding="utf-8")
    load_plugins([str(plugin)])
    return str(plugin.resolve())


def test_a_plugin_returning_plain_dicts_gets_normalised_rows_and_named_problems(list_plugin, tmp_path):
    from mmr1.plugins import get_dataset

    loader = get_dataset("listed")
    ds = loader(path=None, strict=False)
    assert isinstance(ds, RowDataset) and [r["problem"] for r in ds] == ["2+2?"] and ds[0]["image"] == []
    (problem,) = ds.problems
    assert str(problem) == (f"dataset 'listed' of plugin {list_plugin!r}, row 1: missing field 'solution' "
                            f"(rename it, or map a column with dataset_kwargs: {{columns: {{yours: solution}}}})")
    with pytest.raises(DataError, match="dataset 'listed' of plugin"):
        loader(path=None)
    import inspect

    assert list(inspect.signature(loader).parameters) == ["path", "strict", "_"]  # dataset_kwargs still checked
    _, problems = _preflight(tmp_path, f"plugins: [{list_plugin}]\ndataset: listed\n")
    assert problems == [f"train data: dataset 'listed' of plugin {list_plugin!r}, row 1: missing field 'solution' "
                        f"(rename it, or map a column with dataset_kwargs: {{columns: {{yours: solution}}}})"]


# ---------------------------------------------------------------------------- 9. <image> placeholders


def test_image_placeholders_must_match_the_images(tmp_path):
    _png(tmp_path / "a.png")
    data = _jsonl(tmp_path / "t.jsonl", [
        {"prompt": "<image>What is it?", "answer": "cat", "images": ["a.png"]},           # EasyR1
        {"problem": "<image> vs <image>?", "solution": "x", "image": "a.png"},
        {"problem": "<image>text only?", "solution": "x"},
        {"problem": "no placeholder", "solution": "x", "image": ["a.png", "a.png"]},
        {"prompt": [{"role": "user", "content": "<image>A"}, {"role": "user", "content": "<image>B"}],
         "image": ["a.png", "a.png"]}])                 # chat prompts: counted over every message, not here
    with pytest.raises(DataError) as info:
        load_json(str(data), columns={"answer": "solution"})
    message = str(info.value)
    assert "2 data problem(s)" in message
    assert (f"{data}, row 2: field 'problem' holds 2 <image> placeholder(s) but the row has 1 image(s); give one "
            f"<image> per image, or none to put the images first") in message
    assert f"{data}, row 3: field 'problem' holds 1 <image> placeholder(s) but the row has 0 image(s)" in message
    ds = load_json(str(data), columns={"answer": "solution"}, strict=False)
    assert [r["problem"] for r in ds] == ["<image>What is it?", "no placeholder", "<image>B"]  # placeholders stay
