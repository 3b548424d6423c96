"""Reading boxes, detections and answers out of model output.

Model output is data, never code: regexes, ``json.loads`` and ``ast.literal_eval`` only (the latter
evaluates literals and nothing else). Inputs are capped in size before any parser sees them.
"""

from __future__ import annotations

import ast
import json
import math
import re

from mmr1.api import ANSWER_CLOSE, ANSWER_OPEN, answer_block, as_text  # noqa: F401 - re-exported

MAX_PARSE_CHARS = 200_000


def answer_region(text) -> str:
    """The contents of the last closed ``<answer>...</answer>`` block, else the whole text."""
    text = as_text(text)
    block = answer_block(text)
    return text if block is None else block


def column(values, n: int, name: str, reward: str) -> list:
    """A per-sample column as a list of ``n`` entries (a scalar is broadcast)."""
    if values is None or isinstance(values, (str, bytes, int, float, dict)):
        return [values] * n
    values = list(values)
    if len(values) != n:
        raise ValueError(f"{reward}: got {n} completions but the {name!r} column has {len(values)} entries")
    return values


# -- single boxes ---------------------------------------------------------------------------------
_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_N = rf"\s*({_NUM})\s*"
_QWEN_BOX = re.compile(rf"<\|box_start\|>\s*\({_N},{_N}\)\s*,\s*\({_N},{_N}\)\s*<\|box_end\|>")
_KEYED_BOX = re.compile(rf"[\"']?bbox_2d[\"']?\s*:\s*\[{_N},{_N},{_N},{_N}\]")
_LIST_BOX = re.compile(rf"\[{_N},{_N},{_N},{_N}\]")
_PAIR_BOX = re.compile(rf"\({_N},{_N}\)\s*,\s*\({_N},{_N}\)")
BOX_PATTERNS = (_QWEN_BOX, _KEYED_BOX, _LIST_BOX, _PAIR_BOX)


def _finite(values) -> tuple[float, float, float, float] | None:
    try:
        box = tuple(float(v) for v in values)
    except (TypeError, ValueError, OverflowError):
        return None
    if len(box) != 4 or not all(math.isfinite(v) for v in box):
        return None
    return box


def parse_box(text: str) -> tuple[float, float, float, float] | None:
    """The first box in ``text`` as ``(x1, y1, x2, y2)``, or None.

    Tried in order: Qwen's ``<|box_start|>(x1,y1),(x2,y2)<|box_end|>``, a ``"bbox_2d": [..]`` key,
    a plain ``[x1, y1, x2, y2]`` list, a bare ``(x1,y1),(x2,y2)`` pair."""
    if not isinstance(text, str):
        return None
    text = text[:MAX_PARSE_CHARS]
    for pattern in BOX_PATTERNS:
        m = pattern.search(text)
        if m:
            return _finite(m.groups())
    return None


def solution_box(solution) -> tuple[float, float, float, float] | None:
    """A dataset box: ``[x1, y1, x2, y2]``, ``[[x1, y1, x2, y2]]``, ``{"bbox_2d": [...]}`` or a string
    holding one of those (``<answer>`` tags allowed)."""
    if solution is None:
        return None
    if isinstance(solution, dict):
        return solution_box(solution.get("bbox_2d", solution.get("bbox")))
    if isinstance(solution, (list, tuple)):
        if len(solution) == 1 and isinstance(solution[0], (list, tuple, dict)):
            return solution_box(solution[0])
        if len(solution) == 4:
            return _finite(solution)
        return None
    if hasattr(solution, "tolist"):  # numpy / torch
        return solution_box(solution.tolist())
    return parse_box(answer_region(str(solution)))


def image_size(images) -> tuple[int, int] | None:
    """``(width, height)`` of a sample's first image (a PIL image, or a list of them)."""
    if isinstance(images, (list, tuple)):
        images = images[0] if images else None
    size = getattr(images, "size", None)
    if isinstance(size, tuple) and len(size) == 2:
        return int(size[0]), int(size[1])
    return None


# -- detections -----------------------------------------------------------------------------------
_FENCE = re.compile(r"```(?:json|python)?\s*(.*?)```", re.DOTALL)
_OBJECT = re.compile(r"\{[^{}]*\}")


def _load(text: str):
    text = text.strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        pass
    try:
        return ast.literal_eval(text)  # literals only (single-quoted dicts); never executes code
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def _structures(region: str):
    """Candidate substrings to parse, most specific first: fenced code blocks, then the region,
    each cut from its first ``[`` / ``{`` (whichever comes first) to the matching last bracket."""
    for cand in _FENCE.findall(region) + [region]:
        spans = []
        for lo, hi in (("[", "]"), ("{", "}")):
            i, j = cand.find(lo), cand.rfind(hi)
            if i != -1 and j > i:
                spans.append((i, j))
        for i, j in sorted(spans):
            yield cand[i : j + 1]


def _usable(data) -> bool:
    return isinstance(data, dict) or (isinstance(data, list) and all(isinstance(x, dict) for x in data))


def parse_detections(text, class_agnostic: bool = False) -> list[dict] | None:
    """``[{"box": (x1, y1, x2, y2), "label": str, "score": float | None}, ...]`` from a JSON (or
    Python-literal) list of ``{"bbox_2d": [...], "label": ..., "score": ...}`` objects, in the order
    written; None if nothing could be parsed. Items without a valid 4-number ``bbox_2d`` (or
    ``bbox``) are skipped. Labels are compared case-folded and stripped."""
    if isinstance(text, (list, tuple, dict)):
        data = text
    else:
        if not isinstance(text, str):
            return None
        region = answer_region(text)[:MAX_PARSE_CHARS]
        data = None
        for cand in _structures(region):
            data = _load(cand)
            if _usable(data):
                break
            data = None
        if data is None:  # broken list: read the objects one by one
            objs = [_load(m.group(0)) for m in _OBJECT.finditer(region)]
            objs = [o for o in objs if isinstance(o, dict)]
            if not objs:
                return None
            data = objs
    if isinstance(data, dict):
        data = [data]
    out = []
    for item in data:
        if not isinstance(item, dict):
            continue
        raw = item.get("bbox_2d", item.get("bbox"))
        if isinstance(raw, (list, tuple)) and len(raw) == 1 and isinstance(raw[0], (list, tuple)):
            raw = raw[0]
        if not isinstance(raw, (list, tuple)) or len(raw) != 4 or any(isinstance(v, bool) for v in raw):
            continue
        box = _finite(raw)
        if box is None:
            continue
        label = "" if class_agnostic else " ".join(str(item.get("label", "")).split()).casefold()
        score = item.get("score")
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
            score = None
        out.append({"box": box, "label": label, "score": None if score is None else float(score)})
    return out
