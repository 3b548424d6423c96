"""Table-driven tests of the first-party vision rewards, and the AP implementation against
pycocotools on randomized box sets."""

import contextlib
import io
import json

import numpy as np
import pytest
from PIL import Image

import mmr1
from mmr1.plugins import reset_plugin_manager


@pytest.fixture(scope="module")
def reward():
    reset_plugin_manager()
    return mmr1.get_reward


def test_registered_names(reward):
    from mmr1.plugins import get_plugin_manager

    registry = get_plugin_manager().registry("register_rewards")
    for name in ("iou", "perpo_reward", "detection_ap", "detection_ap50", "ocr_edit_distance",
                 "perpo_ocr_edit_distance_reward", "anls"):
        entry = registry.entry(name)
        assert entry.plugin.startswith("vision"), entry.plugin
        assert entry.description
    assert reward("perpo_ocr_edit_distance_reward") is reward("ocr_edit_distance")
    for name in ("iou", "perpo_reward", "detection_ap", "detection_ap50", "ocr_edit_distance", "anls"):
        text = registry.entry(name).description
        assert "range" in text and "Reads" in text, (name, text)


# -- iou / perpo_reward ----------------------------------------------------------------------------
SOL = [10, 10, 50, 50]
# (completion, solution, iou, perpo)
BOX_CASES = [
    ("<answer>[10, 10, 50, 50]</answer>", SOL, 1.0, 1.0),
    ("[10,10,50,50]", SOL, 1.0, 1.0),
    ("<answer>[10.0, 10.0, 50.0, 50.0]</answer>", SOL, 1.0, 1.0),
    ("<|box_start|>(10,10),(50,50)<|box_end|>", SOL, 1.0, 1.0),
    ('<answer>{"bbox_2d": [10, 10, 50, 50], "label": "dog"}</answer>', SOL, 1.0, 1.0),
    ('```json\n[{"bbox_2d": [10, 10, 50, 50]}]\n```', SOL, 1.0, 1.0),
    ("<think>maybe [0,0,1,1]</think><answer>[10,10,50,50]</answer>", SOL, 1.0, 1.0),  # answer block wins
    ("[10, 10, 50, 50]", "[10, 10, 50, 50]", 1.0, 1.0),  # solution as a string
    ("[10, 10, 50, 50]", "<answer>[10,10,50,50]</answer>", 1.0, 1.0),
    ("[10, 10, 50, 50]", {"bbox_2d": SOL}, 1.0, 1.0),
    ("[10, 10, 30, 50]", SOL, 0.5, 0.25),
    ("[30, 10, 70, 50]", SOL, 20 * 40 / (2 * 1600 - 800), (800 / 2400) ** 2),
    ("[0, 0, 100, 100]", SOL, 1600 / 10000, 0.16**2),
    ("[60, 60, 90, 90]", SOL, 0.0, -0.2),  # no overlap
    ("[50, 10, 90, 50]", SOL, 0.0, -0.2),  # touching edge only
    ("[30, 30, 30, 40]", SOL, 0.0, -0.2),  # zero width
    ("[50, 50, 10, 10]", SOL, 0.0, -0.6),  # inverted
    ("[10, 50, 50, 10]", SOL, 0.0, -0.6),  # inverted in y
    ("", SOL, 0.0, -1.0),
    ("the dog is on the left", SOL, 0.0, -1.0),
    ("[10, 10, 50]", SOL, 0.0, -1.0),
    ("[a, b, c, d]", SOL, 0.0, -1.0),
    ("<answer>[1e999, 0, 5, 5]</answer>", SOL, 0.0, -1.0),  # infinite coordinate
    ("__import__('os').system('touch /tmp/x')", SOL, 0.0, -1.0),
    ("[__import__('os'), 1, 2, 3]", SOL, 0.0, -1.0),
    ("<answer>［10, 10, 50, 50］</answer>", SOL, 0.0, -1.0),  # full-width brackets are not a box
    ("<answer>盒子 [10, 10, 50, 50]</answer>", SOL, 1.0, 1.0),
]


@pytest.mark.parametrize("completion,solution,iou,perpo", BOX_CASES)
def test_iou_and_perpo(reward, completion, solution, iou, perpo):
    assert reward("iou")([completion], solution=[solution]) == [pytest.approx(iou)]
    assert reward("perpo_reward")([completion], solution=[solution]) == [pytest.approx(perpo)]


def test_iou_bad_solution_is_no_opinion(reward):
    assert reward("iou")(["[1,2,3,4]"] * 3, solution=[None, "no box", [50, 50, 10, 10]]) == [None] * 3
    assert reward("perpo_reward")(["[1,2,3,4]"], solution=[[5, 5]]) == [None]


def test_iou_qwen1000_against_absolute_solution(reward):
    img = Image.new("RGB", (200, 100))
    # 0-1000 box (50, 100, 250, 500) on a 200x100 image is (10, 10, 50, 50) in pixels
    got = reward("iou")(["[50, 100, 250, 500]"], solution=[SOL], images=[[img]], box_format="qwen1000")
    assert got == [pytest.approx(1.0)]
    got = reward("iou")(["[50, 100, 250, 500]"], solution=[SOL], images=[img], box_format="qwen1000")
    assert got == [pytest.approx(1.0)]
    # both in 0-1000: compared directly, no image needed
    got = reward("iou")(["[50, 100, 250, 500]"], solution=[[50, 100, 250, 500]], box_format="qwen1000",
                        solution_format="qwen1000")
    assert got == [1.0]
    # absolute prediction, 0-1000 solution
    got = reward("iou")(["[10, 10, 50, 50]"], solution=[[50, 100, 250, 500]], images=[[img]],
                        solution_format="qwen1000")
    assert got == [pytest.approx(1.0)]
    with pytest.raises(ValueError, match="image"):
        reward("iou")(["[50, 100, 250, 500]"], solution=[SOL], box_format="qwen1000")
    with pytest.raises(ValueError, match="box_format"):
        reward("iou")(["[1,2,3,4]"], solution=[SOL], box_format="xywh")


# -- detection -------------------------------------------------------------------------------------
def _det(*items):
    return json.dumps([{"bbox_2d": list(b), "label": lab, **({"score": s} if s is not None else {})}
                       for b, lab, s in items])


GT = _det(([0, 0, 10, 10], "cat", None), ([20, 20, 40, 40], "dog", None))
# (completion, solution, AP, AP50)
DET_CASES = [
    (f"<answer>{GT}</answer>", GT, 1.0, 1.0),
    (GT, json.loads(GT), 1.0, 1.0),  # solution already a list
    (_det(([20, 20, 40, 40], "dog", None), ([0, 0, 10, 10], "cat", None)), GT, 1.0, 1.0),  # order irrelevant
    (_det(([0, 0, 10, 10], "CAT ", None), ([20, 20, 40, 40], "Dog", None)), GT, 1.0, 1.0),  # labels case-folded
    ("[{'bbox_2d': [0, 0, 10, 10], 'label': 'cat'}, {'bbox_2d': [20, 20, 40, 40], 'label': 'dog'}]", GT, 1.0, 1.0),
    (_det(([0, 0, 10, 10], "cat", None)), GT, 0.5, 0.5),  # dog missed
    (_det(([0, 0, 10, 10], "dog", None), ([20, 20, 40, 40], "cat", None)), GT, 0.0, 0.0),  # labels swapped
    (_det(([0, 0, 10, 10], "cat", None), ([100, 100, 120, 120], "dog", None)), GT, 0.5, 0.5),
    # a 0.6-IoU cat box is a hit at 0.50-0.60 only (3 of 10 thresholds)
    (_det(([0, 0, 10, 6], "cat", None), ([20, 20, 40, 40], "dog", None)), GT, (0.3 + 1.0) / 2, 1.0),
    # unlabeled false positive ranked first halves the cat precision
    (_det(([50, 50, 60, 60], "cat", 0.9), ([0, 0, 10, 10], "cat", 0.8), ([20, 20, 40, 40], "dog", 0.7)), GT,
     (0.5 * 101 / 101 + 1.0) / 2, (0.5 + 1.0) / 2),
    # same boxes, the false positive ranked last costs nothing
    (_det(([50, 50, 60, 60], "cat", 0.1), ([0, 0, 10, 10], "cat", 0.8), ([20, 20, 40, 40], "dog", 0.7)), GT, 1.0, 1.0),
    # no scores: order is the ranking
    (_det(([50, 50, 60, 60], "cat", None), ([0, 0, 10, 10], "cat", None), ([20, 20, 40, 40], "dog", None)), GT,
     (0.5 + 1.0) / 2, (0.5 + 1.0) / 2),
    # a category only in the predictions is left out of the mean (COCO)
    (_det(([0, 0, 10, 10], "cat", None), ([20, 20, 40, 40], "dog", None), ([5, 5, 9, 9], "bird", None)), GT, 1.0, 1.0),
    ('[{"bbox_2d": [0, 0, 10, 10], "label": "cat"}, {"bbox_2d": [20, 20, 40, 40], "label": "dog"}', GT, 1.0, 1.0),  # unclosed list
    ('[{"bbox_2d": [0, 0, 10], "label": "cat"}, {"bbox_2d": [20, 20, 40, 40], "label": "dog"}]', GT, 0.5, 0.5),
    ("", GT, 0.0, 0.0),
    ("[]", GT, 0.0, 0.0),
    ("no objects found", GT, 0.0, 0.0),
    ("[__import__('os').system('touch /tmp/x')]", GT, 0.0, 0.0),
    ('{"bbox_2d": [0, 0, 10, 10], "label": "cat"}', GT, 0.5, 0.5),  # a single object
    ("[]", "[]", 1.0, 1.0),  # nothing to find, nothing found
    (_det(([0, 0, 10, 10], "cat", None)), "[]", 0.0, 0.0),
    (_det(([0, 0, 10, 10], "猫", None)), _det(([0, 0, 10, 10], "猫", None)), 1.0, 1.0),
]


@pytest.mark.parametrize("completion,solution,ap,ap50", DET_CASES)
def test_detection(reward, completion, solution, ap, ap50):
    assert reward("detection_ap")([completion], solution=[solution]) == [pytest.approx(ap, abs=1e-9)]
    assert reward("detection_ap50")([completion], solution=[solution]) == [pytest.approx(ap50, abs=1e-9)]


def test_detection_class_agnostic_and_bad_solution(reward):
    swapped = _det(([0, 0, 10, 10], "dog", None), ([20, 20, 40, 40], "cat", None))
    assert reward("detection_ap")([swapped], solution=[GT], class_agnostic=True) == [pytest.approx(1.0)]
    assert reward("detection_ap")(["[]"], solution=["not json"]) == [None]
    assert reward("detection_ap50")(["[]"], solution=[None]) == [None]


def _coco_reference(gt, dt):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    labels = sorted({lab for _, lab in gt} | {lab for _, lab, _ in dt})
    cat_id = {lab: i + 1 for i, lab in enumerate(labels)}
    anns = []
    for k, (b, lab) in enumerate(gt):
        w, h = b[2] - b[0], b[3] - b[1]
        anns.append({"id": k + 1, "image_id": 1, "category_id": cat_id[lab], "bbox": [b[0], b[1], w, h],
                     "area": w * h, "iscrowd": 0})
    dataset = {"images": [{"id": 1}], "annotations": anns, "categories": [{"id": i} for i in cat_id.values()]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = dataset
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes([
            {"image_id": 1, "category_id": cat_id[lab], "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "score": s}
            for b, lab, s in dt
        ])
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.params.imgIds = [1]
        ev.evaluate()
        ev.accumulate()
    p = ev.eval["precision"][:, :, :, 0, 2]  # all areas, 100 detections
    return float(np.mean(p[p > -1])), float(np.mean(p[0][p[0] > -1]))


def _random_box(rng, lo=0, hi=500):
    x, y = rng.uniform(lo, hi, 2)
    w, h = rng.uniform(2, 150, 2)
    return [float(x), float(y), float(x + w), float(y + h)]


@pytest.mark.parametrize("seed", range(60))
def test_detection_ap_matches_pycocotools(reward, seed):
    pytest.importorskip("pycocotools")
    rng = np.random.default_rng(seed)
    labels = ["cat", "dog", "car"][: int(rng.integers(1, 4))]
    gt = [(_random_box(rng), str(rng.choice(labels))) for _ in range(int(rng.integers(1, 9)))]
    dt = []
    for box, lab in gt:  # noisy copies of most ground-truth boxes, some with the wrong label
        if rng.random() < 0.8:
            noisy = (np.array(box) + rng.normal(0, 8, 4)).tolist()
            dt.append((noisy, lab if rng.random() < 0.85 else "bird", float(rng.random())))
    n_random = int(rng.integers(1, 6)) if seed % 10 else 130  # some trials go past 100 detections
    for _ in range(n_random):
        dt.append((_random_box(rng), str(rng.choice(labels + ["bird"])), float(rng.random())))
    if seed % 3 == 0:  # tied scores: ranking falls back to the written order, as COCO's stable sort
        dt = [(b, lab, round(s, 1)) for b, lab, s in dt]
    rng.shuffle(dt)
    ref_ap, ref_ap50 = _coco_reference(gt, dt)

    completion = "<answer>" + json.dumps([{"bbox_2d": b, "label": lab, "score": s} for b, lab, s in dt]) + "</answer>"
    solution = json.dumps([{"bbox_2d": b, "label": lab} for b, lab in gt])
    assert reward("detection_ap")([completion], solution=[solution])[0] == pytest.approx(ref_ap, abs=1e-6)
    assert reward("detection_ap50")([completion], solution=[solution])[0] == pytest.approx(ref_ap50, abs=1e-6)


# -- OCR / ANLS ------------------------------------------------------------------------------------
OCR_CASES = [
    ("<answer>Hello world</answer>", "Hello world", 1.0),
    ("Hello world", "Hello world", 1.0),
    ("<answer>Hello   world\n</answer>", "Hello world", 1.0),  # whitespace collapsed
    ("<answer>\tHello\nworld </answer>", "  Hello world", 1.0),
    ("<answer>Hello world</answer>", "<answer> Hello world </answer>", 1.0),
    ("<answer>hello world</answer>", "Hello world", 1 - 1 / 11),  # case-sensitive
    ("<answer>Hello wrld</answer>", "Hello world", 1 - 1 / 11),
    ("<answer>Hello</answer>", "Hello world", 1 - 6 / 11),
    ("<answer>Hello world!!!</answer>", "Hello world", 1 - 3 / 14),
    ("<answer>abc</answer>", "xyz", 0.0),
    ("<answer>0123456789</answer>", "abc", 0.0),
    ("<answer>abcdefghij</answer>", "abc", 0.3),
    ("", "Hello", 0.0),
    ("<answer></answer>", "", 1.0),
    ("", "", 1.0),
    ("<answer>日本語のテキスト</answer>", "日本語のテキスト", 1.0),
    ("<answer>日本語</answer>", "日本人", 1 - 1 / 3),
    ("<answer>café</answer>", "cafe", 0.75),
    ("<answer>🙂🙂</answer>", "🙂", 0.5),
    ("<answer>__import__('os')</answer>", "__import__('os')", 1.0),  # just text
    ("<answer>12,345.67</answer>", "12345.67", 1 - 1 / 9),
    ("<answer>a</answer><answer>Hello world</answer>", "Hello world", 1.0),
]


@pytest.mark.parametrize("completion,solution,expected", OCR_CASES)
def test_ocr_edit_distance(reward, completion, solution, expected):
    assert reward("ocr_edit_distance")([completion], solution=[solution]) == [pytest.approx(expected)]
    assert reward("perpo_ocr_edit_distance_reward")([completion], solution=[solution]) == [pytest.approx(expected)]


def test_ocr_missing_solution(reward):
    assert reward("ocr_edit_distance")(["x"], solution=[None]) == [None]


ANLS_CASES = [
    ("<answer>Hello World</answer>", "hello world", 1.0),  # case-insensitive
    ("Hello   World", "hello world", 1.0),
    ("<answer>helo world</answer>", "hello world", 1 - 1 / 11),
    ("<answer>hello</answer>", "hello world", 0.0),  # NL = 6/11 >= 0.5
    ("<answer>hello wo</answer>", "hello world", 1 - 3 / 11),
    ("<answer>abcd</answer>", "abcx", 0.75),
    ("<answer>ab</answer>", "ax", 0.0),  # NL = 0.5 is not < 0.5
    ("<answer>xyz</answer>", "abc", 0.0),
    ("<answer>2019</answer>", ["2019", "the year 2019"], 1.0),
    ("<answer>the year 2019</answer>", ["2019", "the year 2019"], 1.0),
    ("<answer>year 2019</answer>", ["2019", "the year 2019"], 1 - 4 / 13),
    ("<answer>nothing</answer>", ["2019", "the year 2019"], 0.0),
    ("", "abc", 0.0),
    ("", "", 1.0),
    ("<answer>ÉCOLE</answer>", "école", 1.0),
    ("<answer>東京</answer>", ["東京", "Tokyo"], 1.0),
    ("<answer>tokyo</answer>", ["東京", "Tokyo"], 1.0),
    ("<answer>eval('1+1')</answer>", "2", 0.0),
    ("<answer>$12.50</answer>", "$12.50", 1.0),
    ("<answer>12.5</answer>", "$12.50", 0.0),  # NL = 2/6: 1 - 1/3 ... see below
    ("<answer>1 2 3</answer>", "1  2  3", 1.0),
]
ANLS_CASES[-2] = ("<answer>12.5</answer>", "$12.50", 1 - 2 / 6)


@pytest.mark.parametrize("completion,solution,expected", ANLS_CASES)
def test_anls(reward, completion, solution, expected):
    assert reward("anls")([completion], solution=[solution]) == [pytest.approx(expected)]


def test_anls_threshold_option_and_missing(reward):
    assert reward("anls")(["ab"], solution=["ax"], threshold=0.6) == [pytest.approx(0.5)]
    assert reward("anls")(["ab"], solution=[None]) == [None]
    assert reward("anls")(["ab"], solution=[[]]) == [None]


def test_trl_conversational_completions(reward):
    def convo(text):
        return [{"role": "assistant", "content": text}]

    assert reward("iou")([convo("<answer>[10, 10, 50, 50]</answer>")], solution=[SOL]) == [1.0]
    assert reward("detection_ap50")([convo(GT)], solution=[GT]) == [pytest.approx(1.0)]
    assert reward("anls")([convo("<answer>abc</answer>")], solution=["ABC"]) == [1.0]
