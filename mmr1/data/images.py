"""Image loading: lazy, RGB, with errors that name the file."""

from __future__ import annotations

from pathlib import Path

from PIL import Image


class ImageLoadError(ValueError):
    pass


def load_image(ref) -> Image.Image:
    """A PIL RGB image from a path, a PIL image, or a ``{"bytes": ...}`` / ``{"path": ...}`` dict (HF datasets)."""
    if isinstance(ref, Image.Image):
        return ref.convert("RGB")
    if isinstance(ref, dict):
        if ref.get("bytes"):
            import io

            return _open(io.BytesIO(ref["bytes"]), "<bytes>")
        ref = ref.get("path")
    if not isinstance(ref, (str, Path)):
        raise ImageLoadError(f"image must be a path or an image, got {type(ref).__name__}")
    path = Path(ref)
    if not path.is_file():
        raise ImageLoadError(f"image file not found: {path}")
    return _open(path, str(path))


def _open(fp, label: str) -> Image.Image:
    try:
        with Image.open(fp) as img:
            img.load()
            return img.convert("RGB")
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for corrupt files
        raise ImageLoadError(f"cannot read image {label}: {type(exc).__name__}: {exc}") from None


def load_images(refs) -> list[Image.Image]:
    return [load_image(r) for r in refs]
