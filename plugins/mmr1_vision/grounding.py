"""Grounding / referring-expression rewards: IoU of one predicted box with the solution box."""

from __future__ import annotations

import logging

from mmr1_vision.parsing import answer_region, column, image_size, parse_box, solution_box

logger = logging.getLogger("mmr1_vision")
BOX_FORMATS = ("absolute", "qwen1000")
_warned: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        logger.warning(message)


def box_iou(a, b) -> float:
    """IoU of two ``(x1, y1, x2, y2)`` boxes in continuous coordinates (area = (x2-x1)(y2-y1))."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def inverted(box) -> bool:
    return box[2] < box[0] or box[3] < box[1]


def _to_pixels(box, size):
    w, h = size
    return (box[0] * w / 1000.0, box[1] * h / 1000.0, box[2] * w / 1000.0, box[3] * h / 1000.0)


def _check_format(name: str, value: str, reward: str) -> str:
    if value not in BOX_FORMATS:
        raise ValueError(f"{reward}: option {name}={value!r} is not one of {', '.join(BOX_FORMATS)}")
    return value


def _pairs(completions, solution, images, box_format, solution_format, reward):
    """Yield ``(pred_box | None, gold_box | None)`` per sample, in one coordinate system."""
    box_format = _check_format("box_format", box_format, reward)
    solution_format = _check_format("solution_format", solution_format, reward)
    n = len(completions)
    solutions = column(solution, n, "solution", reward)
    imgs = column(images, n, "images", reward) if images is not None else [None] * n
    for completion, sol, img in zip(completions, solutions, imgs):
        gold = solution_box(sol)
        if gold is None:
            _warn_once("gold", f"{reward}: a solution {str(sol)[:80]!r} holds no [x1, y1, x2, y2] box; scored None")
            yield None, None
            continue
        if inverted(gold):
            _warn_once(
                "gold-inverted",
                f"{reward}: solution box {gold} has x2 < x1 or y2 < y1 (is it [x, y, w, h]?); scored None",
            )
            yield None, None
            continue
        pred = parse_box(answer_region(completion))
        if pred is not None and box_format != solution_format:
            size = image_size(img)
            if size is None:
                raise ValueError(
                    f"{reward}: box_format={box_format!r} but solution_format={solution_format!r} needs the "
                    f"image size, and this sample has no PIL image in 'images'. Give both in the same "
                    f"format, or pass the images."
                )
            if box_format == "qwen1000":
                pred = _to_pixels(pred, size)
            else:
                gold = _to_pixels(gold, size)
        yield pred, gold


def iou_reward(completions, solution=None, images=None, box_format="absolute", solution_format="absolute", **kwargs):
    """IoU of the first box in the answer (last ``<answer>`` block, else the completion) with the ``solution`` box; 0.0 if no box parses or the box is inverted; None where the solution has no valid box. Reads ``solution`` (``[x1, y1, x2, y2]`` list or string) and, when the two formats differ, ``images`` (for the image size); range [0, 1].

    The answer is the last ``<answer>`` block, else the completion. Box forms: ``[x1, y1, x2, y2]``,
    ``{"bbox_2d": [...]}``, Qwen's ``<|box_start|>(x1,y1),(x2,y2)<|box_end|>``. Option
    ``box_format`` is the prediction's coordinates and ``solution_format`` the solution's, each
    ``"absolute"`` (pixels of the image given in ``images``; default) or ``"qwen1000"`` (0-1000 of
    width and height, Qwen2-VL). When they differ the 0-1000 box is scaled to pixels with the
    sample's first image; IoU does not depend on which side is scaled.
    """
    out: list[float | None] = []
    for pred, gold in _pairs(completions, solution, images, box_format, solution_format, "iou"):
        if gold is None:
            out.append(None)
        elif pred is None or inverted(pred):
            out.append(0.0)
        else:
            out.append(box_iou(pred, gold))
    return out


def perpo_reward(completions, solution=None, images=None, box_format="absolute", solution_format="absolute", **kwargs):
    """MMR1's shaped grounding reward: IoU^2 when the answer box overlaps the ``solution`` box, -0.2 when it does not, -0.6 for an inverted box (x2 < x1 or y2 < y1), -1.0 when no box parses; None where the solution has no valid box. Reads ``solution`` and, when formats differ, ``images``; range [-1, 1].

    Parsing and the options ``box_format`` / ``solution_format`` are those of ``iou``.
    """
    out: list[float | None] = []
    for pred, gold in _pairs(completions, solution, images, box_format, solution_format, "perpo_reward"):
        if gold is None:
            out.append(None)
        elif pred is None:
            out.append(-1.0)
        elif inverted(pred):
            out.append(-0.6)
        else:
            iou = box_iou(pred, gold)
            out.append(iou * iou if iou > 0 else -0.2)
    return out
