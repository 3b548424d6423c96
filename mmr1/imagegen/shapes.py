"""A rule-based shape classifier: which of circle, square or triangle an image shows (no weights).

:func:`shape_of` classifies the shape in an image by rules (the row / column profile of the
largest non-background blob against ideal shapes). The text-to-image demo uses it as the guard metric
that catches reward hacking (a colour reward alone lets the model shrink or smear the shape). The
synthetic shapes it is measured on are drawn by :mod:`mmr1.fixtures.shapes`.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from PIL import Image

from mmr1.imagegen.foreground import foreground_mask

__all__ = ["shape_of", "shape_scores"]


def _largest_component(mask: np.ndarray) -> np.ndarray:
    h, w = mask.shape
    seen = np.zeros_like(mask, dtype=bool)
    best: list = []
    for y, x in zip(*np.nonzero(mask)):
        if seen[y, x]:
            continue
        comp = []
        queue = deque([(y, x)])
        seen[y, x] = True
        while queue:
            cy, cx = queue.popleft()
            comp.append((cy, cx))
            for ny, nx in ((cy - 1, cx), (cy + 1, cx), (cy, cx - 1), (cy, cx + 1)):
                if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    queue.append((ny, nx))
        if len(comp) > len(best):
            best = comp
    out = np.zeros_like(mask, dtype=bool)
    if best:
        ys, xs = zip(*best)
        out[list(ys), list(xs)] = True
    return out


def _trim_strays(blob: np.ndarray) -> np.ndarray:
    """Drop first / last rows that are stray pixels sticking out of an edge (a patch tokenizer's
    ragged reconstruction): at most 2 pixels and under a quarter of the next row."""
    counts = blob.sum(axis=1)
    top, bottom = 0, len(counts)
    while bottom - top > 2 and counts[top] <= 2 and counts[top] < 0.25 * counts[top + 1]:
        top += 1
    while bottom - top > 2 and counts[bottom - 1] <= 2 and counts[bottom - 1] < 0.25 * counts[bottom - 2]:
        bottom -= 1
    return blob[top:bottom]


def _profiles(bh: int, bw: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Expected row widths / column heights (as fractions of the box) of each shape in a bh x bw box."""
    y = (np.arange(bh) + 0.5) / bh
    x = (np.arange(bw) + 0.5) / bw
    disc = lambda t: np.sqrt(np.clip(1.0 - (2.0 * t - 1.0) ** 2, 0.0, 1.0))  # noqa: E731
    return {
        "square": (np.ones(bh), np.ones(bw)),
        "circle": (disc(y), disc(x)),
        "triangle": (y, 1.0 - np.abs(2.0 * x - 1.0)),  # apex up
    }


def shape_scores(image: Image.Image, threshold: int = 48) -> dict[str, float] | None:
    """Mismatch of the image's blob with each shape (lower is closer), or None without a blob."""
    blob = _largest_component(foreground_mask(image, threshold=threshold))
    ys, xs = np.nonzero(blob)
    if len(ys) == 0:
        return None
    blob = blob[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    blob = _trim_strays(_trim_strays(blob).T).T
    if min(blob.shape) < 2:
        return None
    bh, bw = blob.shape
    rows = blob.sum(axis=1) / float(bw)
    cols = blob.sum(axis=0) / float(bh)
    return {
        name: float(np.abs(rows - tr).mean() + np.abs(cols - tc).mean())
        for name, (tr, tc) in _profiles(bh, bw).items()
    }


def shape_of(image: Image.Image, min_pixels: int = 6, threshold: int = 48) -> str:
    """``"circle"``, ``"square"``, ``"triangle"`` or ``"none"`` (no blob of ``min_pixels``).

    Rules on the largest 4-connected non-background blob: its row widths and column heights
    (relative to its bounding box) are compared with those of an ideal square (constant), circle
    (a half-disc profile) and apex-up triangle (linear rows, tent-shaped columns); the closest
    wins. Robust to the ragged edges of a patch tokenizer's reconstructions.
    """
    blob = _largest_component(foreground_mask(image, threshold=threshold))
    if int(blob.sum()) < min_pixels:
        return "none"
    scores = shape_scores(image, threshold=threshold)
    if scores is None:
        return "none"
    return min(scores, key=scores.get)
