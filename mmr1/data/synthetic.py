"""The ``shapes`` loader: a synthetic set of coloured shapes with exact answers, deterministic by seed.

Colour questions ("What colour is the shape?") and counting questions ("How many shapes are
there?"). Size, position and colour are jittered so held-out images are all different.
"""

from __future__ import annotations

import random

from PIL import Image, ImageDraw

from mmr1.data.dataset import RowDataset

COLORS = {
    "red": (220, 30, 30),
    "green": (30, 170, 40),
    "blue": (30, 60, 220),
    "yellow": (235, 210, 20),
    "purple": (140, 40, 170),
    "orange": (245, 130, 20),
}
SHAPES = ("circle", "square", "triangle")
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def _jitter(rgb, rng, amount=25):
    return tuple(max(0, min(255, c + rng.randint(-amount, amount))) for c in rgb)


def _draw_shape(draw, shape, box, fill):
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=fill)


def shapes_image(rng: random.Random, size: int, color: str, count: int = 1) -> Image.Image:
    """An image of ``count`` shapes of one colour on a light background."""
    bg = _jitter((245, 245, 245), rng, 10)
    img = Image.new("RGB", (size, size), bg)
    draw = ImageDraw.Draw(img)
    cells = max(1, int(count ** 0.5 + 0.999))
    cell = size // cells
    slots = rng.sample(range(cells * cells), count)
    # PIL boxes include their last pixel: keep background between shapes in neighbouring cells, or
    # two touching squares read as one shape and the count answer is wrong.
    gap = 3 if count > 1 else 0
    for slot in slots:
        cx, cy = (slot % cells) * cell, (slot // cells) * cell
        extent = rng.randint(max(4, cell // 2), max(5, cell - 2 - gap))
        x0 = cx + rng.randint(0, max(0, cell - extent - gap))
        y0 = cy + rng.randint(0, max(0, cell - extent - gap))
        _draw_shape(draw, rng.choice(SHAPES), (x0, y0, x0 + extent, y0 + extent), _jitter(COLORS[color], rng))
    return img


def make_shapes_rows(n: int, seed: int = 0, task: str = "color", image_size: int = 56,
                     colors: list[str] | None = None, max_count: int = 4) -> list[dict]:
    """``n`` rows of ``{problem, solution, image: [PIL], task}``; the same seed gives the same rows."""
    colors = list(colors or list(COLORS)[:4])
    unknown = [c for c in colors if c not in COLORS]
    if unknown:
        raise ValueError(f"shapes: unknown colours {unknown}; known: {sorted(COLORS)}")
    if task not in ("color", "count", "mixed"):
        raise ValueError(f"shapes: task must be color, count or mixed, got {task!r}")
    rows = []
    for i in range(n):
        rng = random.Random(f"{seed}-{i}")
        kind = task if task != "mixed" else rng.choice(["color", "count"])
        color = rng.choice(colors)
        size = rng.randint(int(image_size * 0.85), int(image_size * 1.15))
        if kind == "color":
            image = shapes_image(rng, size, color, 1)
            problem, solution = "What colour is the shape?", color
        else:
            count = rng.randint(1, max_count)
            image = shapes_image(rng, size, color, count)
            problem, solution = "How many shapes are there?", str(count)
        rows.append({"problem": problem, "solution": solution, "image": [image], "task": kind,
                     "_source": f"shapes(seed={seed}):{i}"})
    return rows


def load_shapes(path: str | None = None, n: int = 512, seed: int = 0, task: str = "color",
                image_size: int = 56, colors: list[str] | None = None, max_count: int = 4,
                strict: bool = True, **_) -> RowDataset:
    """The synthetic coloured-shapes set (``dataset: shapes``); ``dataset_path`` is ignored."""
    return RowDataset(make_shapes_rows(n, seed, task, image_size, colors, max_count), f"shapes(seed={seed})")
