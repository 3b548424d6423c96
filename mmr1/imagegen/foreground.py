"""Foreground / background split of a small image: which pixels differ from the border colour."""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["split_foreground", "foreground_mask"]


def split_foreground(image: Image.Image, threshold: int = 48, max_side: int = 64):
    """``(pixels, mask, background)``: the RGB array (int16), the boolean mask of pixels that differ
    from the background by more than ``threshold`` in some channel, and the background colour (the
    median border colour). Images larger than ``max_side`` are box-downsampled first.
    """
    image = image.convert("RGB")
    if max(image.size) > max_side:
        scale = max_side / max(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BOX)
    a = np.asarray(image, dtype=np.int16)
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    background = np.median(border, axis=0)
    return a, np.abs(a - background).max(axis=-1) > threshold, background


def foreground_mask(image: Image.Image, threshold: int = 48, max_side: int = 64) -> np.ndarray:
    """Boolean mask of pixels that differ from the background (see :func:`split_foreground`)."""
    return split_foreground(image, threshold, max_side)[1]
