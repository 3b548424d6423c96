"""Grounding / referring-expression rewards: IoU of one predicted box with the solution box."""

from __future__ import annotations

import ast
import logging

from mmr1_vision.frames import check_frame, resolve_frames, sample_columns, to_common
from mmr1_vision.parsing import MAX_PARSE_CHARS, answer_region, as_text, column, parse_box, solution_box

logger = logging.getLogger("mmr1_vision")
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


def _pairs(completions, solution, images, box_format, solution_format, reward, seen=None, frames=None):
    """Yield ``(pred_box | None, gold_box | None)`` per sample, in one coordinate frame."""
    if box_format is not None:
        check_frame("box_format", box_format, reward)
    check_frame("solution_format", solution_format, reward)
    n = len(completions)
    solutions = column(solution, n, "solution", reward)
    samples = sample_columns(n, images, seen, frames, reward)
    for completion, sol, (img, size, model) in zip(completions, solutions, samples):
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
        if pred is not None:
            pred_frame, gold_frame = resolve_frames(box_format, solution_format, model, reward)
            pred = to_common(pred, pred_frame, gold_frame, img, size, reward, "box_format")
            gold = to_common(gold, gold_frame, pred_frame, img, size, reward, "solution_format")
        yield pred, gold


def iou_reward(completions, solution=None, images=None, box_format=None, solution_format="original",
               seen_image_sizes=None, box_frame=None, **kwargs):
    """IoU of the first box in the answer (last ``<answer>`` block, else the completion) with the ``solution`` box; 0.0 if no box parses or the box is inverted; None where the solution has no valid box. Reads ``solution`` (``[x1, y1, x2, y2]`` list or string) and, when the two frames differ, the image sizes (``images``, ``seen_image_sizes``); range [0, 1].

    Box forms: ``[x1, y1, x2, y2]``, ``{"bbox_2d": [...]}``, Qwen's ``<|box_start|>(x1,y1),(x2,y2)<|box_end|>``.
    Option ``box_format`` is the prediction's frame and ``solution_format`` the solution's: ``original``
    (pixels of the image file; synonym ``absolute``), ``resized`` (pixels of the image the model saw),
    ``qwen1000`` (0-1000) or ``normalized`` (0-1). ``box_format`` defaults to the model's convention (the
    ``box_frame`` column the trainer passes: Qwen2.5-VL ``resized``, Qwen2-VL ``qwen1000``), else
    ``original``; ``solution_format`` defaults to ``original``. Boxes in two frames are compared after
    scaling both to 0-1 with the sample's first image.
    """
    out: list[float | None] = []
    for pred, gold in _pairs(completions, solution, images, box_format, solution_format, "iou",
                             seen_image_sizes, box_frame):
        if gold is None:
            out.append(None)
        elif pred is None or inverted(pred):
            out.append(0.0)
        else:
            out.append(box_iou(pred, gold))
    return out


def perpo_reward(completions, solution=None, images=None, box_format=None, solution_format="original",
                 seen_image_sizes=None, box_frame=None, mmr1_compat=False, **kwargs):
    """MMR1's shaped grounding reward: IoU^2 when the answer box overlaps the ``solution`` box, -0.2 when it does not, -0.6 for an inverted box (x2 < x1 or y2 < y1), -1.0 when no box parses; None where the solution has no valid box. Reads ``solution`` and, when frames differ, the image sizes; range [-1, 1].

    Parsing and the frame options are those of ``iou``. Option ``mmr1_compat=True`` scores as MMR1 did:
    the whole completion must be a ``[...]`` list literal (first four numbers used), coordinates are
    compared as written (no frames), and a solution that does not parse scores -1.0.
    """
    if _flag(mmr1_compat):
        return [_mmr1_perpo(c, s) for c, s in zip(completions, column(solution, len(completions), "solution",
                                                                        "perpo_reward"))]
    out: list[float | None] = []
    for pred, gold in _pairs(completions, solution, images, box_format, solution_format, "perpo_reward",
                             seen_image_sizes, box_frame):
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


def _four(text: str) -> list[float]:
    """MMR1's box reading: a literal (``ast.literal_eval``, never ``eval``) whose first four items are numbers."""
    values = [float(v) for v in ast.literal_eval(text[:MAX_PARSE_CHARS])]
    if len(values) < 4:
        raise ValueError("fewer than four numbers")
    return values[:4]


def _mmr1_perpo(completion, solution) -> float:
    """MMR1's ``perpo_reward`` on one sample; any parsing problem scores -1.0."""
    text = as_text(completion).strip()
    try:
        gold = _four(str(solution).strip())
        if not (text.startswith("[") and text.endswith("]")):
            return -1.0
        pred = _four(text)
        if pred[0] > pred[2] or pred[1] > pred[3]:
            return -0.6
        x1, y1 = max(gold[0], pred[0]), max(gold[1], pred[1])
        x2, y2 = min(gold[2], pred[2]), min(gold[3], pred[3])
        if x2 <= x1 or y2 <= y1:
            return -0.2
        inter = (x2 - x1) * (y2 - y1)
        union = (gold[2] - gold[0]) * (gold[3] - gold[1]) + (pred[2] - pred[0]) * (pred[3] - pred[1]) - inter
        if union <= 0:
            return 0.0
        iou = inter / union
        return iou if iou <= 0 else iou * iou
    except Exception:  # noqa: BLE001 - MMR1 scored every failure -1.0
        return -1.0


def _flag(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)
