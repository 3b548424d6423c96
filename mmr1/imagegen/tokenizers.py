"""Image tokenizer protocol and built-in tokenizers.

An image tokenizer turns RGB images into a grid of integer codes and back:

- ``encode(images: list[PIL.Image]) -> LongTensor (B, h, w)``
- ``decode(codes: LongTensor (B, h, w)) -> list[PIL.Image]``
- attributes ``codebook_size`` (codes are ``0 .. codebook_size - 1``) and ``downsample``
  (pixels per code along each side: an ``H x W`` image gives ``H/downsample x W/downsample`` codes)
- ``load(path, **options)`` (classmethod) and, where meaningful, ``save(path)``.

Built-ins (registered through the ``register_image_tokenizers`` hook):

``vq``
    :class:`VQTokenizer`: a small k-means codebook over non-overlapping ``patch x patch`` RGB
    patches, trained on your own images (``VQTokenizer.train``). Meant for small synthetic data
    (the CPU text-to-image demo); saved as a folder with ``codebook.pt`` and ``config.json``.
``cosmos``
    :class:`CosmosTokenizer`: NVIDIA's Cosmos discrete tokenizer (e.g. DV8x16x16, 16x spatial
    compression, 64,000 codes) as published: TorchScript ``encoder.jit`` / ``decoder.jit`` in a
    local folder.

Use :func:`load_image_tokenizer` with a spec such as ``"cosmos:/path/to/Cosmos-Tokenizer-DI16x16"``
or ``"vq:runs/vq"`` (or a bare folder, recognised by its files).
"""

from __future__ import annotations

import inspect
import json
import os
import warnings
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from PIL import Image

from mmr1.hookspecs import hookimpl

__all__ = [
    "ImageTokenizer",
    "ImageTokenizerError",
    "VQTokenizer",
    "CosmosTokenizer",
    "load_image_tokenizer",
    "load_image_tokenizer_for",
    "image_grid_size",
    "images_to_tensor",
    "tensor_to_images",
]


class ImageTokenizerError(Exception):
    """An image tokenizer could not be loaded or was given unusable input."""


@runtime_checkable
class ImageTokenizer(Protocol):
    """What every image tokenizer provides (see the module docstring)."""

    codebook_size: int
    downsample: int

    def encode(self, images: list[Image.Image]) -> torch.Tensor:  # (B, h, w) int64
        ...

    def decode(self, codes: torch.Tensor) -> list[Image.Image]:
        ...

    @classmethod
    def load(cls, path, **options) -> "ImageTokenizer":
        ...


# ---------------------------------------------------------------------------------------------
# pixel helpers
# ---------------------------------------------------------------------------------------------
def images_to_tensor(images, value_range=(0.0, 1.0)) -> torch.Tensor:
    """PIL images (all the same size) -> float32 tensor (B, 3, H, W) in ``value_range``."""
    if isinstance(images, Image.Image):
        images = [images]
    if not images:
        raise ImageTokenizerError("no images to encode")
    arrays = []
    size = None
    for i, image in enumerate(images):
        if not isinstance(image, Image.Image):
            raise ImageTokenizerError(f"image {i} is a {type(image).__name__}, expected a PIL image")
        if size is None:
            size = image.size
        elif image.size != size:
            raise ImageTokenizerError(
                f"images in one batch must have the same size: image 0 is {size[0]}x{size[1]}, "
                f"image {i} is {image.size[0]}x{image.size[1]} (resize or crop them first)"
            )
        arrays.append(np.asarray(image.convert("RGB"), dtype=np.float32))
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) / 255.0
    lo, hi = value_range
    return x * (hi - lo) + lo


def tensor_to_images(x: torch.Tensor, value_range=(0.0, 1.0)) -> list[Image.Image]:
    """Float tensor (B, 3, H, W) in ``value_range`` -> PIL RGB images (values clamped)."""
    lo, hi = value_range
    x = ((x.detach().float().cpu() - lo) / (hi - lo)).clamp(0, 1)
    arr = (x * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return [Image.fromarray(a, "RGB") for a in arr]


def _as_codes(codes) -> torch.Tensor:
    codes = torch.as_tensor(codes)
    if codes.dim() == 2:
        codes = codes.unsqueeze(0)
    if codes.dim() == 4 and codes.shape[1] == 1:  # SimpleAR's (B, 1, h, w)
        codes = codes[:, 0]
    if codes.dim() != 3:
        raise ImageTokenizerError(f"codes must have shape (B, h, w), got {tuple(codes.shape)}")
    return codes.long()


def _write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# k-means VQ
# ---------------------------------------------------------------------------------------------
def _kmeans_pp_init(x: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: each new centre drawn with probability proportional to squared distance."""
    n = x.shape[0]
    first = torch.randint(n, (1,), generator=gen).item()
    centres = [x[first]]
    d2 = ((x - x[first]) ** 2).sum(1)
    for _ in range(1, k):
        cum = torch.cumsum(d2.double(), 0)
        total = cum[-1].item()
        if total <= 0:  # fewer distinct points than k: repeat points (their clusters stay empty)
            idx = torch.randint(n, (1,), generator=gen).item()
        else:
            u = torch.rand(1, generator=gen, dtype=torch.float64) * total
            idx = min(int(torch.searchsorted(cum, u, right=True).item()), n - 1)
        centres.append(x[idx])
        d2 = torch.minimum(d2, ((x - x[idx]) ** 2).sum(1))
    return torch.stack(centres)


def _nearest(x: torch.Tensor, centres: torch.Tensor, chunk: int = 65536) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of and squared distance to the nearest centre for every row of x."""
    c2 = (centres**2).sum(1)
    idx, dist = [], []
    for start in range(0, x.shape[0], chunk):
        xb = x[start : start + chunk]
        d = (xb**2).sum(1, keepdim=True) - 2 * xb @ centres.T + c2
        m, i = d.min(1)
        idx.append(i)
        dist.append(m.clamp_min(0))
    return torch.cat(idx), torch.cat(dist)


class VQTokenizer:
    """k-means vector quantiser over non-overlapping ``patch x patch`` RGB patches.

    Each code is a ``patch x patch x 3`` pixel patch (the codebook stores them as rows of
    ``3 * patch * patch`` values in [0, 1]). ``downsample == patch``. Train with
    :meth:`train`; save/load a folder with ``codebook.pt`` and ``config.json``.
    """

    kind = "vq"

    def __init__(self, codebook: torch.Tensor, patch: int = 4):
        codebook = torch.as_tensor(codebook, dtype=torch.float32)
        if codebook.dim() != 2 or codebook.shape[1] != 3 * patch * patch:
            raise ImageTokenizerError(
                f"VQ codebook must have shape (codebook_size, 3*patch*patch={3 * patch * patch}), "
                f"got {tuple(codebook.shape)}"
            )
        self.codebook = codebook
        self.patch = int(patch)

    @property
    def codebook_size(self) -> int:
        return int(self.codebook.shape[0])

    @property
    def downsample(self) -> int:
        return self.patch

    # -- patches ---------------------------------------------------------------------------------
    def _patches(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        b, c, h, w = x.shape
        p = self.patch
        if h % p or w % p:
            raise ImageTokenizerError(
                f"image size {w}x{h} is not a multiple of the VQ patch size {p}: resize the images "
                f"(e.g. extract_tokens(..., resolution=...)) or train a tokenizer with another patch"
            )
        x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(b, (h // p) * (w // p), c * p * p), h // p, w // p

    @classmethod
    def train(
        cls,
        images,
        codebook_size: int = 128,
        patch: int = 4,
        iters: int = 25,
        seed: int = 0,
        max_init_points: int = 50_000,
        tol: float = 1e-6,
    ) -> "VQTokenizer":
        """Fit a codebook with k-means (k-means++ seeding) on every patch of ``images``.

        ``images``: PIL images (any sizes that are multiples of ``patch``). Deterministic given
        ``seed``. k-means++ seeding matters: on synthetic images white patches dominate, and a
        uniform random init spends most codes on white. Empty clusters are re-seeded with the
        points farthest from their centre. ``max_init_points`` caps the points the seeding looks
        at (a seeded random subset); Lloyd iterations use every patch.
        """
        if codebook_size < 1:
            raise ImageTokenizerError("codebook_size must be >= 1")
        tmp = cls(torch.zeros(1, 3 * patch * patch), patch=patch)
        groups: dict[tuple, list] = {}
        for image in images:
            groups.setdefault(image.size, []).append(image)
        if not groups:
            raise ImageTokenizerError("VQTokenizer.train needs at least one image")
        x = torch.cat([tmp._patches(images_to_tensor(g))[0].reshape(-1, 3 * patch * patch) for g in groups.values()])
        gen = torch.Generator().manual_seed(int(seed))
        init_pool = x
        if x.shape[0] > max_init_points:
            init_pool = x[torch.randperm(x.shape[0], generator=gen)[:max_init_points]]
        centres = _kmeans_pp_init(init_pool, codebook_size, gen)
        prev = None
        for _ in range(int(iters)):
            assign, dist = _nearest(x, centres)
            counts = torch.bincount(assign, minlength=codebook_size)
            sums = torch.zeros_like(centres).index_add_(0, assign, x)
            new = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], centres)
            empty = (counts == 0).nonzero().flatten()
            if len(empty):
                far = torch.argsort(dist, descending=True)[: len(empty)]
                new[empty[: len(far)]] = x[far]
            centres = new
            inertia = dist.mean().item()
            if prev is not None and abs(prev - inertia) <= tol * max(prev, 1e-12) and not len(empty):
                break
            prev = inertia
        return cls(centres, patch=patch)

    # -- protocol ---------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, images) -> torch.Tensor:
        x = images_to_tensor(images)
        patches, h, w = self._patches(x)
        b = patches.shape[0]
        idx, _ = _nearest(patches.reshape(-1, patches.shape[-1]), self.codebook)
        return idx.reshape(b, h, w)

    @torch.no_grad()
    def decode(self, codes) -> list[Image.Image]:
        codes = _as_codes(codes)
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise ImageTokenizerError(
                f"codes out of range for a VQ codebook of {self.codebook_size}: "
                f"min {codes.min().item()}, max {codes.max().item()}"
            )
        b, h, w = codes.shape
        p = self.patch
        x = self.codebook[codes.reshape(-1)].reshape(b, h, w, 3, p, p)
        x = x.permute(0, 3, 1, 4, 2, 5).reshape(b, 3, h * p, w * p)
        return tensor_to_images(x)

    def save(self, path) -> Path:
        """Write ``codebook.pt`` and ``config.json`` into folder ``path`` (created; files replaced atomically)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tmp = path / f".codebook.pt.tmp{os.getpid()}"
        torch.save(self.codebook.clone(), tmp)
        os.replace(tmp, path / "codebook.pt")
        _write_json_atomic(
            path / "config.json",
            {"type": "vq", "codebook_size": self.codebook_size, "patch": self.patch, "downsample": self.patch},
        )
        return path

    @classmethod
    def load(cls, path, **options) -> "VQTokenizer":
        path = Path(path)
        if options:
            raise ImageTokenizerError(
                f"the vq image tokenizer takes no options (got {sorted(options)}); its settings are in {path / 'config.json'}"
            )
        for name in ("codebook.pt", "config.json"):
            if not (path / name).is_file():
                raise ImageTokenizerError(
                    f"vq image tokenizer folder {str(path)!r} has no {name}: train one with "
                    f"VQTokenizer.train(images).save({str(path)!r})"
                )
        config = json.loads((path / "config.json").read_text())
        codebook = torch.load(path / "codebook.pt", map_location="cpu", weights_only=True)
        tok = cls(codebook, patch=int(config.get("patch", 4)))
        if int(config.get("codebook_size", tok.codebook_size)) != tok.codebook_size:
            raise ImageTokenizerError(
                f"{path / 'config.json'} says codebook_size {config['codebook_size']} but codebook.pt has {tok.codebook_size} rows"
            )
        return tok

    def __repr__(self) -> str:
        return f"VQTokenizer(codebook_size={self.codebook_size}, patch={self.patch})"


# ---------------------------------------------------------------------------------------------
# Cosmos (TorchScript)
# ---------------------------------------------------------------------------------------------
_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
}


def _dtype(value) -> torch.dtype:
    if isinstance(value, torch.dtype):
        return value
    try:
        return _DTYPES[str(value).lower()]
    except KeyError:
        raise ImageTokenizerError(f"unknown dtype {value!r}; use one of {sorted(_DTYPES)}") from None


class CosmosTokenizer:
    """NVIDIA Cosmos discrete image tokenizer loaded from its published TorchScript files.

    ``path`` is a local folder with ``encoder.jit`` and ``decoder.jit`` (as downloaded from the
    ``nvidia/Cosmos-Tokenizer-DI16x16`` / ``DI8x8`` model repos, or SimpleAR's DV8x16x16). The
    encoder takes a float tensor (B, 3, H, W) in [-1, 1] and returns a tuple whose first element
    is the integer indices (B, h, w); the decoder takes indices (B, h, w) and returns images
    (B, 3, H, W) in [-1, 1].

    Options: ``downsample`` (16), ``codebook_size`` (64000), ``device`` ("cpu"; "cuda" or
    ``accelerator.device`` on a GPU), ``dtype`` ("float32"; the published checkpoints run in
    "bfloat16" on GPUs). Image sides must be multiples of ``downsample``.
    """

    kind = "cosmos"

    def __init__(self, encoder, decoder, downsample: int = 16, codebook_size: int = 64000, device="cpu", dtype="float32"):
        self.encoder = encoder
        self.decoder = decoder
        self.downsample = int(downsample)
        self.codebook_size = int(codebook_size)
        self.device = torch.device(device)
        self.dtype = _dtype(dtype)

    @classmethod
    def load(cls, path, downsample: int = 16, codebook_size: int = 64000, device="cpu", dtype="float32") -> "CosmosTokenizer":
        path = Path(path)
        if not path.is_dir():
            raise ImageTokenizerError(
                f"cosmos image tokenizer folder {str(path)!r} does not exist: pass the local folder "
                f"holding encoder.jit and decoder.jit (e.g. a download of nvidia/Cosmos-Tokenizer-DI16x16)"
            )
        modules = {}
        for name in ("encoder.jit", "decoder.jit"):
            file = path / name
            if not file.is_file():
                raise ImageTokenizerError(
                    f"cosmos image tokenizer folder {str(path)!r} has no {name}: it needs both "
                    f"encoder.jit and decoder.jit (the TorchScript files of the published Cosmos tokenizer)"
                )
            try:
                with warnings.catch_warnings():  # the published files are TorchScript; no choice
                    warnings.filterwarnings("ignore", category=DeprecationWarning)
                    module = torch.jit.load(str(file), map_location=torch.device(device))
            except Exception as exc:  # noqa: BLE001 - re-raised with the file named
                raise ImageTokenizerError(f"could not load TorchScript file {str(file)!r}: {type(exc).__name__}: {exc}") from exc
            module.eval()
            modules[name] = module
        tok = cls(modules["encoder.jit"], modules["decoder.jit"], downsample, codebook_size, device, dtype)
        # the published files may hold bfloat16 weights: run both halves in the dtype asked for
        tok.encoder.to(tok.dtype)
        tok.decoder.to(tok.dtype)
        return tok

    @torch.no_grad()
    def encode(self, images) -> torch.Tensor:
        x = images_to_tensor(images, value_range=(-1.0, 1.0))
        h, w = x.shape[-2:]
        if h % self.downsample or w % self.downsample:
            raise ImageTokenizerError(
                f"image size {w}x{h} is not a multiple of the Cosmos tokenizer's downsample {self.downsample}"
            )
        out = self.encoder(x.to(self.device, self.dtype))
        indices = out[0] if isinstance(out, (tuple, list)) else out
        return _as_codes(indices).cpu()

    @torch.no_grad()
    def decode(self, codes) -> list[Image.Image]:
        codes = _as_codes(codes).to(self.device)
        out = self.decoder(codes)
        if isinstance(out, (tuple, list)):
            out = out[0]
        return tensor_to_images(out.float(), value_range=(-1.0, 1.0))

    def __repr__(self) -> str:
        return f"CosmosTokenizer(codebook_size={self.codebook_size}, downsample={self.downsample}, device={self.device})"


# ---------------------------------------------------------------------------------------------
# lookup
# ---------------------------------------------------------------------------------------------
def _guess_kind(path: Path) -> str | None:
    if (path / "encoder.jit").is_file() or (path / "decoder.jit").is_file():
        return "cosmos"
    config = path / "config.json"
    if config.is_file():
        try:
            kind = json.loads(config.read_text()).get("type")
        except (ValueError, AttributeError):
            kind = None
        if isinstance(kind, str):
            return kind
    if (path / "codebook.pt").is_file():
        return "vq"
    return None


def load_image_tokenizer(spec: str, **options):
    """Load an image tokenizer from ``"NAME:PATH"`` (e.g. ``"cosmos:/models/cosmos-di16x16"``).

    A bare folder is recognised by its files (``encoder.jit`` -> cosmos, ``config.json`` with a
    ``type`` or ``codebook.pt`` -> vq). ``NAME`` is looked up among every registered image
    tokenizer (plugins included); ``options`` go to its ``load``.
    """
    from mmr1.plugins import get_image_tokenizer, list_image_tokenizers

    spec = str(spec)
    name, sep, path = spec.partition(":")
    if sep and name in list_image_tokenizers():
        return get_image_tokenizer(name).load(path, **options)
    if sep and len(name) > 1 and not Path(spec).exists():
        # "NAME:PATH" with an unknown NAME (a one-letter NAME may be a Windows drive)
        get_image_tokenizer(name)  # raises RegistryError with did-you-mean
    path = Path(spec)
    if not path.exists():
        raise ImageTokenizerError(
            f"image tokenizer {spec!r}: no such folder. Use NAME:PATH with NAME one of "
            f"{', '.join(list_image_tokenizers())} (e.g. cosmos:/path/to/Cosmos-Tokenizer-DI16x16)"
        )
    kind = _guess_kind(path)
    if kind is None:
        raise ImageTokenizerError(
            f"cannot tell which image tokenizer folder {str(path)!r} holds; write it as NAME:PATH "
            f"with NAME one of {', '.join(list_image_tokenizers())}"
        )
    return get_image_tokenizer(kind).load(path, **options)


def load_image_tokenizer_for(spec: str, device=None):
    """Load an image tokenizer, passing ``device`` only to tokenizers whose ``load`` takes one."""
    options = {}
    if device is not None:
        try:
            from mmr1.plugins import get_image_tokenizer

            name = spec.partition(":")[0] if ":" in spec else None
            params = inspect.signature(get_image_tokenizer(name).load).parameters if name else {}
        except Exception:  # noqa: BLE001 - a bare folder spec: no options
            params = {}
        if "device" in params:
            options["device"] = str(device)
    return load_image_tokenizer(spec, **options)


def image_grid_size(resolution: int, downsample: int) -> tuple[int, int]:
    """(h, w) of the code grid of a ``resolution`` px square image; a clear error if it does not divide."""
    resolution, downsample = int(resolution), int(downsample)
    if resolution <= 0 or resolution % downsample:
        raise ValueError(f"image_resolution {resolution} is not a positive multiple of the image tokenizer's "
                         f"downsample factor {downsample} (try {max(1, round(resolution / downsample)) * downsample})")
    side = resolution // downsample
    return side, side


@hookimpl
def register_image_tokenizers(register):
    register("vq", VQTokenizer, description="k-means VQ over RGB patches, trained on your own images (CPU demo).")
    register("cosmos", CosmosTokenizer, description="NVIDIA Cosmos discrete tokenizer (TorchScript encoder.jit / decoder.jit).")
