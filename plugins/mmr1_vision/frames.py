"""Coordinate frames of boxes: which image, and which scale, the numbers of a box refer to.

``original``   pixels of the image file (``absolute`` is accepted as a synonym);
``resized``    pixels of the image as the model saw it (Qwen2.5-VL: after the pixel-budget resize);
``qwen1000``   0-1000 of the image's width and height (Qwen2-VL);
``normalized`` 0-1 of the image's width and height.

A resize stretches the whole image (no crop, no padding), so a frame differs from another only by
one scale per axis. Boxes in two different frames are both brought to ``normalized`` before they are
compared; IoU does not change under a common per-axis scale.
"""

from __future__ import annotations

from mmr1_vision.parsing import column

FRAMES = ("original", "resized", "qwen1000", "normalized")
SYNONYMS = {"absolute": "original"}
#: The reward columns the trainer passes for image models (see ``ModelAdapter.reward_columns``).
SEEN_SIZES, MODEL_FRAME = "seen_image_sizes", "box_frame"


class FrameError(ValueError):
    """A box cannot be converted: the sample lacks the image size its frame needs."""


def check_frame(option: str, value, reward: str) -> str:
    """The canonical name of a frame option value; ValueError naming the option otherwise."""
    frame = SYNONYMS.get(value, value)
    if frame not in FRAMES:
        choices = ", ".join(FRAMES + tuple(SYNONYMS))
        raise ValueError(f"{reward}: option {option}={value!r} is not one of {choices}")
    return frame


def first_size(value) -> tuple[float, float] | None:
    """``(width, height)`` of a sample's first image: a PIL image, a ``(w, h)`` pair, or a list of either."""
    if isinstance(value, (list, tuple)) and value and not isinstance(value[0], (int, float)):
        value = value[0]
    size = getattr(value, "size", value)
    if isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(v, (int, float)) for v in size):
        return float(size[0]), float(size[1])
    return None


def _divisor(frame: str, image, seen, reward: str, option: str) -> tuple[float, float]:
    if frame == "qwen1000":
        return 1000.0, 1000.0
    if frame == "normalized":
        return 1.0, 1.0
    size = first_size(image if frame == "original" else seen)
    if size is None or size[0] <= 0 or size[1] <= 0:
        needs = ("the image file's size (a PIL image in 'images')" if frame == "original" else
                 f"the size of the image as the model saw it (the '{SEEN_SIZES}' column, which the trainer passes "
                 f"for image models)")
        raise FrameError(f"{reward}: {option}={frame!r} differs from the other box's frame, and converting it needs "
                         f"{needs}, which this sample lacks; give both in the same frame, or pass it")
    return size


def to_common(box, frame: str, other: str, image, seen, reward: str, option: str):
    """``box`` (x1, y1, x2, y2) in ``frame``, made comparable with a box in ``other``: unchanged when the two
    frames agree, else scaled to ``normalized``."""
    if box is None or frame == other:
        return box
    sx, sy = _divisor(frame, image, seen, reward, option)
    return (box[0] / sx, box[1] / sy, box[2] / sx, box[3] / sy)


def resolve_frames(box_format, solution_format, box_frame, reward: str) -> tuple[str, str]:
    """The prediction's frame (``box_format``, else the model's ``box_frame`` column, else ``original``) and the
    solution's (``solution_format``, default ``original``)."""
    model = box_frame if isinstance(box_frame, str) else None
    return (check_frame("box_format", box_format if box_format is not None else model or "original", reward),
            check_frame("solution_format", solution_format, reward))


def sample_columns(n: int, images, seen, frames, reward: str):
    """Per-sample ``(image, seen size, model frame)`` triples from the ``images`` / ``seen_image_sizes`` /
    ``box_frame`` columns (each may be absent)."""
    imgs = column(images, n, "images", reward) if images is not None else [None] * n
    sizes = column(seen, n, SEEN_SIZES, reward) if seen is not None else [None] * n
    model = column(frames, n, MODEL_FRAME, reward) if frames is not None else [None] * n
    return list(zip(imgs, sizes, model))
