"""Synthetic coloured shapes for the text-to-image demo, and a rule-based shape classifier.

Images are small (32 px by default): one filled circle, square or triangle in one colour on white,
with random size, position and a small colour jitter; captions read ``"a red circle"``.
Everything is deterministic given the seed.

:func:`shape_of` classifies the shape in an image by rules (the row / column profile of the
largest non-background blob against ideal shapes). It needs no weights; the demo uses it as the guard metric that
catches reward hacking (a colour reward alone lets the model shrink or smear the shape).
"""

from __future__ import annotations

import json
import os
import random
from collections import deque
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from mmr1.imagegen.foreground import foreground_mask

__all__ = [
    "SHAPES",
    "COLORS",
    "DEFAULT_COLORS",
    "draw_shape",
    "random_shape",
    "make_shapes",
    "write_shapes_dataset",
    "shape_of",
    "shape_scores",
]

SHAPES = ("circle", "square", "triangle")

# Clean, well-separated colours (each is classified as itself by the color_fidelity reward).
COLORS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 210, 40),
    "purple": (140, 60, 180),
    "orange": (245, 140, 30),
    "cyan": (40, 200, 210),
}
DEFAULT_COLORS = ("red", "green", "blue", "yellow")


def draw_shape(shape: str, color, size: int = 32, box=None, background=(255, 255, 255)) -> Image.Image:
    """One filled ``shape`` in ``color`` (a name from :data:`COLORS` or an RGB triple).

    ``box = (x0, y0, side)`` places the shape's square bounding box; default: centred, half the
    image side.
    """
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")
    rgb = COLORS[color] if isinstance(color, str) else tuple(int(c) for c in color)
    if box is None:
        side = size // 2
        box = ((size - side) // 2, (size - side) // 2, side)
    x0, y0, side = box
    x1, y1 = x0 + side - 1, y0 + side - 1
    image = Image.new("RGB", (size, size), tuple(background))
    draw = ImageDraw.Draw(image)
    if shape == "circle":
        draw.ellipse([x0, y0, x1, y1], fill=rgb)
    elif shape == "square":
        draw.rectangle([x0, y0, x1, y1], fill=rgb)
    else:
        draw.polygon([((x0 + x1) / 2, y0), (x0, y1), (x1, y1)], fill=rgb)
    return image


def random_shape(
    rng: random.Random,
    size: int = 32,
    shapes=SHAPES,
    colors=DEFAULT_COLORS,
    min_frac: float = 0.35,
    max_frac: float = 0.7,
    color_jitter: int = 12,
) -> dict:
    """One random sample: ``{"image", "caption", "shape", "color"}``.

    The shape's side is ``min_frac..max_frac`` of the image, its position uniform inside the image,
    and each RGB channel jittered by up to ``color_jitter``.
    """
    shape = rng.choice(list(shapes))
    color = rng.choice(list(colors))
    side = rng.randint(max(3, round(min_frac * size)), max(3, round(max_frac * size)))
    x0 = rng.randint(0, size - side)
    y0 = rng.randint(0, size - side)
    base = COLORS[color]
    rgb = tuple(int(min(255, max(0, c + rng.randint(-color_jitter, color_jitter)))) for c in base)
    image = draw_shape(shape, rgb, size=size, box=(x0, y0, side))
    return {"image": image, "caption": f"a {color} {shape}", "shape": shape, "color": color}


def make_shapes(n: int, seed: int = 0, size: int = 32, shapes=SHAPES, colors=DEFAULT_COLORS, **options) -> list[dict]:
    """``n`` random samples (see :func:`random_shape`), deterministic by ``seed``."""
    for c in colors:
        if c not in COLORS:
            raise ValueError(f"unknown colour {c!r}; known: {', '.join(COLORS)}")
    rng = random.Random(seed)
    return [random_shape(rng, size=size, shapes=shapes, colors=colors, **options) for _ in range(n)]


def write_shapes_dataset(out_dir, n: int, seed: int = 0, size: int = 32, meta_name: str = "meta.json", **options) -> Path:
    """Write ``n`` samples as PNGs plus a SimpleAR-style meta JSON ``[{image_path, caption}, ...]``.

    Image paths in the JSON are relative to its folder. Returns the JSON path (input of
    :func:`mmr1.imagegen.extract.extract_tokens`). Extra columns ``shape`` and ``color`` are kept.
    """
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, sample in enumerate(make_shapes(n, seed=seed, size=size, **options)):
        rel = f"images/{i:06d}.png"
        sample["image"].save(out_dir / rel)
        rows.append({"image_path": rel, "caption": sample["caption"], "shape": sample["shape"], "color": sample["color"]})
    meta = out_dir / meta_name
    tmp = meta.with_name(f".{meta.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(rows, indent=1))
    os.replace(tmp, meta)
    return meta


# ---------------------------------------------------------------------------------------------
# rule-based shape classifier
# ---------------------------------------------------------------------------------------------
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
