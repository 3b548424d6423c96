"""Image loading: lazy, RGB, with errors that name the file."""

from __future__ import annotations

from pathlib import Path

from PIL import Image


class ImageLoadError(ValueError):
    pass


class ImagePath(str):
    """An image path that was not found at load time; ``looked`` holds the other places tried (for the message)."""

    def __new__(cls, path, looked=()):
        self = super().__new__(cls, str(path))
        self.looked = tuple(map(str, looked))
        return self

    def __reduce__(self):
        return ImagePath, (str(self), self.looked)


def load_image(ref) -> Image.Image:
    """A PIL RGB image from a path, a PIL image, or a ``{"bytes": ...}`` / ``{"path": ...}`` dict (HF datasets)."""
    if isinstance(ref, Image.Image):
        return to_rgb(ref)
    if isinstance(ref, dict):
        if ref.get("bytes"):
            import io

            return _open(io.BytesIO(ref["bytes"]), "<bytes>")
        if not ref.get("path"):
            raise ImageLoadError(f"image must be a path, or a mapping with 'bytes' or 'path'; got a mapping with "
                                 f"keys {sorted(map(str, ref))}")
        ref = ref.get("path")
    if not isinstance(ref, (str, Path)):
        raise ImageLoadError(f"image must be a path or an image, got {type(ref).__name__}")
    path = Path(ref)
    if path.is_dir():
        raise ImageLoadError(f"image path is a folder, not an image file: {path}")
    if not path.is_file():
        looked = getattr(ref, "looked", ())
        raise ImageLoadError(f"image file not found: {path}" + (
            f" (also looked for {', '.join(looked)}; set dataset_kwargs: {{image_root: FOLDER}} for images kept "
            f"elsewhere)" if looked else ""))
    return _open(path, str(path))


def _open(fp, label: str) -> Image.Image:
    try:
        with Image.open(fp) as img:
            img.load()
            return to_rgb(img)
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for corrupt files
        raise ImageLoadError(f"cannot read image {label}: {type(exc).__name__}: {exc}") from None


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB, with 16-bit and 32-bit grey rescaled to 8 bits (``convert`` would clip them to white)."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        import numpy as np

        values = np.asarray(img, dtype=np.float64)
        if img.mode.startswith("I;16"):
            top = 65535.0
        elif img.mode == "F":
            top = 1.0 if values.size and values.max() <= 1.0 else 255.0
        else:                               # 32-bit integers: 16-bit data unless the values say otherwise
            peak = float(values.max()) if values.size else 0.0
            top = 255.0 if peak <= 255 else 65535.0 if peak <= 65535 else peak
        grey = np.clip(np.rint(values / top * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    return img.convert("RGB")


def load_images(refs) -> list[Image.Image]:
    return [load_image(r) for r in refs]
