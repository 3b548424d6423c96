"""Box coordinate frames: a perfect box scores 1.0 in every frame on every aspect ratio, the wrong frame
scores low, and the trainer passes the image sizes the model saw (the processor's own resize)."""

import json

import pytest
from PIL import Image

import mmr1
from mmr1.models.processors import smart_resize_hw
from mmr1.plugins import reset_plugin_manager

FRAMES = ("original", "resized", "qwen1000", "normalized")
SIZES = [(1280, 720), (1920, 1080), (720, 1280), (333, 500)]
MIN_PIXELS, MAX_PIXELS = 56 * 56, 28 * 28 * 64          # a budget that really shrinks every image
REL = (0.3, 0.3, 0.6, 0.7)                                # the object, as fractions of width and height


@pytest.fixture(scope="module")
def reward():
    reset_plugin_manager()
    yield mmr1.get_reward
    reset_plugin_manager()


def _seen(size):
    w, h = size
    rh, rw = smart_resize_hw(h, w, MIN_PIXELS, MAX_PIXELS)
    return rw, rh


def _box(frame, size):
    """The object's box written in ``frame`` for an image file of ``size``."""
    w, h = {"original": size, "resized": _seen(size), "qwen1000": (1000, 1000), "normalized": (1, 1)}[frame]
    return [REL[0] * w, REL[1] * h, REL[2] * w, REL[3] * h]


def _columns(size):
    return {"images": [[Image.new("RGB", size)]], "seen_image_sizes": [[_seen(size)]]}


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("written", FRAMES)
@pytest.mark.parametrize("solution_frame", FRAMES)
def test_a_perfect_box_scores_one_in_every_frame(reward, size, written, solution_frame):
    answer = f"<answer>{json.dumps(_box(written, size))}</answer>"
    kwargs = dict(_columns(size), solution=[_box(solution_frame, size)], box_format=written,
                  solution_format=solution_frame)
    assert reward("iou")([answer], **kwargs) == [pytest.approx(1.0)]
    assert reward("perpo_reward")([answer], **kwargs) == [pytest.approx(1.0)]
    det = json.dumps([{"bbox_2d": _box(written, size), "label": "cat"}])
    gold = json.dumps([{"bbox_2d": _box(solution_frame, size), "label": "cat"}])
    assert reward("detection_ap")([det], **{**kwargs, "solution": [gold]}) == [pytest.approx(1.0)]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("written", FRAMES)
@pytest.mark.parametrize("told", FRAMES)
def test_the_wrong_frame_scores_low(reward, size, written, told):
    if written == told:
        return
    answer = json.dumps(_box(written, size))
    kwargs = dict(_columns(size), solution=[_box("original", size)], box_format=told)
    assert reward("iou")([answer], **kwargs)[0] < 0.3
    det = json.dumps([{"bbox_2d": _box(written, size), "label": "cat"}])
    gold = json.dumps([{"bbox_2d": _box("original", size), "label": "cat"}])
    assert reward("detection_ap50")([det], **{**kwargs, "solution": [gold]}) == [0.0]


def test_the_model_convention_column_sets_the_default_box_format(reward):
    """What the trainer passes for Qwen2.5-VL (``box_frame: resized`` + seen sizes) makes a box in the pixels
    the model saw score 1.0; read as pixels of the file (the old default), the same answer scores low."""
    size = (1280, 720)
    answer = [json.dumps(_box("resized", size))]
    columns = dict(_columns(size), solution=[_box("original", size)])
    assert reward("iou")(answer, **columns, box_frame=["resized"]) == [pytest.approx(1.0)]
    assert reward("iou")(answer, **columns)[0] < 0.3                       # no convention given: original
    assert reward("iou")(answer, **columns, box_frame=["resized"], box_format="original")[0] < 0.3
    assert reward("perpo_reward")(answer, **columns, box_frame=["qwen1000"]) == [-0.2]   # read as 0-1000


def test_without_sizes_frames_behave_as_documented(reward):
    img = Image.new("RGB", (200, 100))
    sol = [[10, 10, 50, 50]]
    # same frame: compared as written, no image needed; "absolute" is a synonym of "original"
    assert reward("iou")(["[10, 10, 50, 50]"], solution=sol, box_format="absolute") == [1.0]
    assert reward("iou")(["[10, 10, 50, 50]"], solution=sol, images=[[img]]) == [1.0]
    with pytest.raises(ValueError, match="seen_image_sizes"):
        reward("iou")(["[10, 10, 50, 50]"], solution=sol, images=[[img]], box_format="resized")
    with pytest.raises(ValueError, match="PIL image"):
        reward("iou")(["[10, 10, 50, 50]"], solution=sol, box_format="normalized")
    with pytest.raises(ValueError, match="box_format='pixels' is not one of original"):
        reward("iou")(["[1, 2, 3, 4]"], solution=sol, box_format="pixels")


# -- adapter and trainer -------------------------------------------------------------------------


def test_the_adapter_reports_the_processor_resize_and_its_convention(tiny_vl):
    import torch

    from mmr1.models.adapters import QwenVLAdapter
    from mmr1.models.base import ModelAdapter
    from mmr1.templates import Template

    proc = QwenVLAdapter.load_processor(tiny_vl, MIN_PIXELS, MAX_PIXELS)
    adapter = QwenVLAdapter(proc, MIN_PIXELS, MAX_PIXELS)
    adapter.bind(QwenVLAdapter.load_model(tiny_vl, torch.float32))
    rows = [[Image.new("RGB", s)] for s in SIZES[:3]] + [[Image.new("RGB", SIZES[3]), Image.new("RGB", (64, 64))]]
    batch = adapter.encode_prompts([Template("t").messages("q", len(r)) for r in rows], rows)
    columns = adapter.reward_columns(batch)
    assert columns["seen_image_sizes"] == [[_seen(s)] for s in SIZES[:3]] + [[_seen(SIZES[3]), _seen((64, 64))]]
    assert all(seen != size for seen, size in zip(columns["seen_image_sizes"], SIZES))     # really resized
    assert columns["box_frame"] == ["resized"] * 4
    adapter.bind(type("Qwen2VL", (), {"config": type("C", (), {"model_type": "qwen2_vl"})()})())
    assert adapter.box_frame == "qwen1000"
    assert ModelAdapter.box_frame is None


def test_the_trainer_passes_the_sizes_the_model_saw(tiny_vl, tmp_path, reward):
    from mmr1.config import build_config
    from mmr1.grpo.trainer import GRPOTrainer

    for k, size in enumerate(SIZES):
        Image.new("RGB", size, (40 * k, 90, 160)).save(tmp_path / f"{k}.png")
    rows = [{"problem": "Where is the cat?", "solution": json.dumps(_box("original", s)), "image": f"{k}.png"}
            for k, s in enumerate(SIZES)]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    seen_log = tmp_path / "seen.jsonl"
    plugin = tmp_path / "recorder.py"
    plugin.write_text(
        "import json\nfrom mmr1 import hookimpl\n"
        "def recorder(completions, images, solution, seen_image_sizes=None, box_frame=None, **kw):\n"
        f"    with open({str(seen_log)!r}, 'a') as f:\n"
        "        for im, seen, frame, sol in zip(images, seen_image_sizes, box_frame, solution):\n"
        "            f.write(json.dumps({'file': im[0].size, 'seen': seen, 'frame': frame, 'solution': sol}) + '\\n')\n"
        "    return [0.0] * len(completions)\n"
        "@hookimpl\ndef register_rewards(register):\n    register('box_recorder', recorder)\n")
    try:
        config = build_config({
            "model_name_or_path": tiny_vl, "dataset_path": str(tmp_path / "data.jsonl"), "rewards": ["box_recorder"],
            "plugins": [str(plugin)], "num_generations": 2, "per_device_train_batch_size": 8,
            "max_completion_length": 3, "max_steps": 1, "min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS,
            "output_dir": str(tmp_path / "out"), "disable_tqdm": True, "log_completions": False})
        GRPOTrainer(config).train()
    finally:
        reset_plugin_manager()
    records = [json.loads(x) for x in seen_log.read_text().splitlines()]
    assert {tuple(r["file"]) for r in records} == set(SIZES)
    for r in records:
        size = tuple(r["file"])
        assert [tuple(s) for s in r["seen"]] == [_seen(size)] and r["frame"] == "resized"
        # what the trainer passed is what a perfect answer in the model's frame needs to score 1.0
        got = reward("iou")([json.dumps(_box("resized", size))], solution=[r["solution"]],
                            images=[[Image.new("RGB", size)]], seen_image_sizes=[r["seen"]], box_frame=[r["frame"]])
        assert got == [pytest.approx(1.0)]
