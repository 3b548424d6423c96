"""Detection rewards: COCO-style average precision of the boxes in one answer, per image.

The evaluation follows the COCO protocol (``pycocotools.cocoeval``) for one image, written here in
numpy: IoU thresholds 0.50:0.05:0.95, 101 recall points, at most 100 detections per category, a
detection matched to the unmatched ground-truth box of highest IoU above the threshold (in score
order), precision made monotone before sampling. Categories are the labels; a category with
ground truth but no detection scores 0, a category with detections but no ground truth is left out
of the mean (COCO's -1). ``tests/test_rewards_vision.py`` checks this against pycocotools.
"""

from __future__ import annotations

import numpy as np

from mmr1_vision.frames import check_frame, resolve_frames, sample_columns, to_common
from mmr1_vision.parsing import answer_region, as_text, column, parse_detections

IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, int(np.round((1.0 - 0.0) / 0.01)) + 1, endpoint=True)
MAX_DETECTIONS = 100
MAX_AREA = 1e5**2  # COCO's "all" area range is [0, 1e10]


def _xywh(boxes) -> np.ndarray:
    a = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.stack([a[:, 0], a[:, 1], a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]], axis=1)


def _iou_matrix(dt: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU of every detection (rows) with every ground-truth box (columns), both ``[x, y, w, h]``."""
    if len(dt) == 0 or len(gt) == 0:
        return np.zeros((len(dt), len(gt)))
    d = dt[:, None, :]
    g = gt[None, :, :]
    iw = np.minimum(d[..., 0] + d[..., 2], g[..., 0] + g[..., 2]) - np.maximum(d[..., 0], g[..., 0])
    ih = np.minimum(d[..., 1] + d[..., 3], g[..., 1] + g[..., 3]) - np.maximum(d[..., 1], g[..., 1])
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    union = d[..., 2] * d[..., 3] + g[..., 2] * g[..., 3] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(inter > 0, inter / union, 0.0)
    return iou


def _category_precision(gt: np.ndarray, dt: np.ndarray, scores: np.ndarray) -> np.ndarray | None:
    """(T, R) interpolated precision of one category, or None when it has no ground truth."""
    gt_area = gt[:, 2] * gt[:, 3]
    gt_ignore = (gt_area < 0) | (gt_area > MAX_AREA)
    order = np.argsort(gt_ignore, kind="mergesort")  # ignored ground truth last, as COCO
    gt, gt_ignore = gt[order], gt_ignore[order]
    n_pos = int(np.count_nonzero(~gt_ignore))
    if n_pos == 0:
        return None

    keep = np.argsort(-scores, kind="mergesort")[:MAX_DETECTIONS]
    dt = dt[keep]
    dt_area = dt[:, 2] * dt[:, 3]
    T, D, G = len(IOU_THRESHOLDS), len(dt), len(gt)
    precision = np.zeros((T, len(RECALL_THRESHOLDS)))
    if D == 0:
        return precision
    ious = _iou_matrix(dt, gt).tolist()  # plain floats: the greedy loop below is scalar work
    ignored = gt_ignore.tolist()
    matched = np.zeros((T, D), dtype=bool)
    dt_ignore = np.zeros((T, D), dtype=bool)
    for t, thr in enumerate(IOU_THRESHOLDS.tolist()):
        taken = [False] * G
        for d in range(D):
            row = ious[d]
            best_iou = min(thr, 1 - 1e-10)
            m = -1
            for g in range(G):
                if taken[g]:
                    continue
                if m > -1 and not ignored[m] and ignored[g]:
                    break  # only ignored ground truth left
                if row[g] < best_iou:
                    continue
                best_iou = row[g]  # ties go to the later box, as in COCO
                m = g
            if m == -1:
                continue
            dt_ignore[t, d] = ignored[m]
            matched[t, d] = True
            taken[m] = True
    outside = (dt_area < 0) | (dt_area > MAX_AREA)
    dt_ignore |= ~matched & outside[None, :]

    tp_sum = np.cumsum(matched & ~dt_ignore, axis=1).astype(float)
    fp_sum = np.cumsum(~matched & ~dt_ignore, axis=1).astype(float)
    recall = tp_sum / n_pos  # (T, D), non-decreasing along D
    prec = tp_sum / (fp_sum + tp_sum + np.spacing(1))
    prec = np.maximum.accumulate(prec[:, ::-1], axis=1)[:, ::-1]  # monotone from the right
    # searchsorted(recall[t], thresholds, side="left") for every t at once
    idx = (recall[:, :, None] < RECALL_THRESHOLDS[None, None, :]).sum(axis=1)  # (T, R)
    reachable = idx < D  # COCO stops at the first threshold it cannot reach (a prefix: idx is sorted)
    rows = np.broadcast_to(np.arange(T)[:, None], idx.shape)
    precision[reachable] = prec[rows[reachable], idx[reachable]]
    return precision


def average_precision(gt_boxes, gt_labels, dt_boxes, dt_labels, dt_scores) -> tuple[float, float] | None:
    """``(AP@[.50:.95], AP@.50)`` of one image in the COCO protocol, or None if there is no
    ground-truth box. Boxes are ``(x1, y1, x2, y2)``; labels any hashable; higher score = surer."""
    gt = _xywh(gt_boxes)
    dt = _xywh(dt_boxes)
    scores = np.asarray(dt_scores, dtype=np.float64).reshape(-1)
    gt_labels, dt_labels = list(gt_labels), list(dt_labels)
    per_category = []
    for label in sorted(set(gt_labels) | set(dt_labels), key=str):
        g = gt[[i for i, lab in enumerate(gt_labels) if lab == label]]
        sel = [i for i, lab in enumerate(dt_labels) if lab == label]
        p = _category_precision(g, dt[sel], scores[sel])
        if p is not None:
            per_category.append(p)
    if not per_category:
        return None
    stacked = np.stack(per_category)  # (K, T, R)
    return float(stacked.mean()), float(stacked[:, 0, :].mean())


def _score_all(completions, solution, class_agnostic, reward, frames):
    box_format, solution_format, images, seen, model_frames = frames
    if box_format is not None:
        check_frame("box_format", box_format, reward)
    check_frame("solution_format", solution_format, reward)
    n = len(completions)
    solutions = column(solution, n, "solution", reward)
    out = []
    for completion, sol, (img, size, model) in zip(completions, solutions,
                                                   sample_columns(n, images, seen, model_frames, reward)):
        if isinstance(sol, str):
            sol = answer_region(sol)
        gold = parse_detections(sol, class_agnostic) if sol is not None else None
        if gold is None:
            out.append(None)
            continue
        pred = parse_detections(as_text(completion), class_agnostic) or []
        if not gold:
            out.append((1.0, 1.0) if not pred else (0.0, 0.0))
            continue
        if not pred:
            out.append((0.0, 0.0))
            continue
        if all(p["score"] is not None for p in pred):
            scores = [p["score"] for p in pred]
        else:  # no (or partial) scores: the order written is the ranking, first = surest
            scores = [float(len(pred) - k) for k in range(len(pred))]
        pred_frame, gold_frame = resolve_frames(box_format, solution_format, model, reward)
        ap = average_precision(
            [to_common(g["box"], gold_frame, pred_frame, img, size, reward, "solution_format") for g in gold],
            [g["label"] for g in gold],
            [to_common(p["box"], pred_frame, gold_frame, img, size, reward, "box_format") for p in pred],
            [p["label"] for p in pred],
            scores,
        )
        out.append(ap if ap is not None else (0.0, 0.0))
    return out


def detection_ap(completions, solution=None, class_agnostic=False, box_format=None, solution_format="original",
                 images=None, seen_image_sizes=None, box_frame=None, **kwargs):
    """COCO AP averaged over IoU 0.50:0.05:0.95 (101-point interpolation, mean over the categories with ground truth) of the labelled boxes in the answer against the ``solution`` boxes, for this image; None where the solution does not parse. Reads ``solution`` (JSON list of ``{"bbox_2d": [x1, y1, x2, y2], "label": ...}``) and, when the box frames differ, the image sizes; range [0, 1].

    The answer is the last ``<answer>`` block, else the completion: a JSON (or Python-literal) list
    of ``{"bbox_2d": [...], "label": ..., "score": ...}``; items without a valid box are skipped.
    Without a score on every item, the order written is the ranking (first = highest). Labels match
    case-insensitively; option ``class_agnostic=True`` ignores them. No ground-truth box: 1.0 if
    the answer has no box either, else 0.0. Unparsable answers score 0.0. The frame options
    ``box_format`` / ``solution_format`` (and their defaults) are those of ``iou``.
    """
    frames = (box_format, solution_format, images, seen_image_sizes, box_frame)
    return [None if r is None else r[0] for r in _score_all(completions, solution, class_agnostic, "detection_ap",
                                                            frames)]


def detection_ap50(completions, solution=None, class_agnostic=False, box_format=None, solution_format="original",
                   images=None, seen_image_sizes=None, box_frame=None, **kwargs):
    """COCO AP at IoU 0.50 (101-point interpolation, mean over the categories with ground truth) of the labelled boxes in the answer against the ``solution`` boxes, for this image; None where the solution does not parse. Reads ``solution`` (JSON list of ``{"bbox_2d": [x1, y1, x2, y2], "label": ...}``) and, when the box frames differ, the image sizes; range [0, 1].

    Parsing, ranking and options are those of ``detection_ap``.
    """
    frames = (box_format, solution_format, images, seen_image_sizes, box_frame)
    return [None if r is None else r[1] for r in _score_all(completions, solution, class_agnostic, "detection_ap50",
                                                            frames)]
