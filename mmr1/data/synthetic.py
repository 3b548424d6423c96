"""The ``shapes`` loader: a synthetic set of coloured shapes with exact answers, deterministic by seed.

Colour questions ("What colour is the shape?") and counting questions ("How many shapes are
there?"); the rows are drawn by :func:`mmr1.fixtures.shapes.make_shapes_rows`.
"""

from __future__ import annotations

from mmr1.data.dataset import RowDataset
from mmr1.fixtures.shapes import make_shapes_rows


def load_shapes(path: str | None = None, n: int = 512, seed: int = 0, task: str = "color",
                image_size: int = 56, colors: list[str] | None = None, max_count: int = 4,
                strict: bool = True, **_) -> RowDataset:
    """The synthetic coloured-shapes set (``dataset: shapes``); ``dataset_path`` is ignored."""
    return RowDataset(make_shapes_rows(n, seed, task, image_size, colors, max_count), f"shapes(seed={seed})")
