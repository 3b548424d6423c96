"""CLIP-style image/text encoders behind the learned image rewards, from transformers or open_clip.

Both give the same three things: normalised image embeddings, normalised text embeddings and the
model's ``logit_scale``, computed in batches on the reward's device with gradients off.

- :class:`TransformersClip`: a ``CLIPModel`` + ``CLIPProcessor`` folder (or hub id);
- :class:`OpenClip`: an open_clip architecture (a built-in name such as ``ViT-H-14``, a JSON
  architecture file, or ``local-dir:/folder``) with a local weights file, loaded through
  ``open_clip.create_model_and_transforms(arch, pretrained=<file>)``.

:func:`build_encoder` picks one from a reward's options and names the option at fault on errors.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
           "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
_OPEN_CLIP_PRECISION = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


def default_device(device=None) -> torch.device:
    """``device`` if given; else this process's GPU (``LOCAL_RANK`` under accelerate/torchrun) or the CPU."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", torch.cuda.current_device())))
    return torch.device("cpu")


def parse_dtype(name, reward: str) -> torch.dtype:
    """``float32`` / ``fp16`` / ``bf16`` ... (or a ``torch.dtype``; ``None`` is float32)."""
    if name is None or isinstance(name, torch.dtype):
        return name or torch.float32
    try:
        return _DTYPES[str(name).lower()]
    except KeyError:
        raise ValueError(f"{reward}: unknown dtype {name!r} (option `dtype`); use one of {sorted(_DTYPES)}") from None


def require_option(value, option: str, reward: str, what: str, example: str) -> str:
    """``value`` as a string, or a ValueError showing the config line that sets it."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError(
            f"the {reward!r} reward needs {what}: set it in the config as "
            f"reward_kwargs: {{{reward}: {{{option}: {example}}}}}"
        )
    return str(value)


def _features(output) -> torch.Tensor:
    """``get_*_features`` returns a tensor (transformers 4) or an output whose pooler_output is projected (5)."""
    if isinstance(output, torch.Tensor):
        return output
    pooled = getattr(output, "pooler_output", None)
    if pooled is None:
        pooled = output[0] if isinstance(output, (tuple, list)) else None
    if pooled is None:
        raise TypeError(f"cannot read features from {type(output).__name__}")
    return pooled


def _batched(items, size):
    for start in range(0, len(items), size):
        yield items[start : start + size]


class _Encoder:
    """Batching shared by the backends: subclasses set ``model``, ``batch_size`` and encode one batch."""

    model: torch.nn.Module
    batch_size: int

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale.detach().float().cpu()

    @torch.no_grad()
    def image_embeddings(self, images) -> torch.Tensor:
        """L2-normalised float32 embeddings on the CPU, one row per PIL image."""
        return torch.cat([self._encode_images([im.convert("RGB") for im in batch]).float().cpu()
                          for batch in _batched(images, self.batch_size)])

    @torch.no_grad()
    def text_embeddings(self, texts) -> torch.Tensor:
        """L2-normalised float32 embeddings on the CPU, one row per text."""
        return torch.cat([self._encode_texts(batch).float().cpu() for batch in _batched(list(texts), self.batch_size)])

    def _encode_images(self, images) -> torch.Tensor:
        raise NotImplementedError

    def _encode_texts(self, texts) -> torch.Tensor:
        raise NotImplementedError


class TransformersClip(_Encoder):
    """A transformers ``CLIPModel`` and its ``CLIPProcessor``; errors name the option at fault."""

    def __init__(self, model: str, processor: str | None, reward: str, device, dtype, batch_size: int):
        from transformers import CLIPModel, CLIPProcessor

        processor = str(processor) if processor else model
        for option, value in (("model", model), ("processor", processor)):
            p = Path(value).expanduser()
            looks_local = value.startswith((".", "/", "~")) or value.count("/") != 1 or p.exists()
            if looks_local and not p.exists():
                raise ValueError(
                    f"the {reward!r} reward: {option} path {value!r} does not exist (option `{option}` in "
                    f"reward_kwargs.{reward}); pass a folder saved with CLIPModel/CLIPProcessor.save_pretrained"
                )

        def resolved(value):
            p = Path(value).expanduser()
            return str(p) if p.exists() else value

        try:
            clip = CLIPModel.from_pretrained(resolved(model))
        except Exception as exc:  # noqa: BLE001 - re-raised with the option named
            raise ValueError(f"the {reward!r} reward could not load a CLIP model from {model!r} (option `model`): "
                             f"{type(exc).__name__}: {exc}") from exc
        try:
            self.processor = CLIPProcessor.from_pretrained(resolved(processor))
        except Exception as exc:  # noqa: BLE001
            raise ValueError(
                f"the {reward!r} reward could not load a CLIP processor from {processor!r} (option `processor`, "
                f"defaults to `model`): {type(exc).__name__}: {exc}"
            ) from exc
        self.device, self.dtype, self.batch_size = device, dtype, batch_size
        self.model = clip.to(device=device, dtype=dtype).eval()
        self.model.requires_grad_(False)
        self.embed_dim = int(self.model.config.projection_dim)

    def _encode_images(self, images):
        pixels = self.processor(images=images, return_tensors="pt")["pixel_values"]
        feats = _features(self.model.get_image_features(pixel_values=pixels.to(self.device, self.dtype)))
        return torch.nn.functional.normalize(feats.float(), dim=-1)

    def _encode_texts(self, texts):
        max_len = getattr(self.model.config.text_config, "max_position_embeddings", 77)
        enc = self.processor.tokenizer(texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        feats = _features(self.model.get_text_features(input_ids=enc["input_ids"].to(self.device),
                                                       attention_mask=enc["attention_mask"].to(self.device)))
        return torch.nn.functional.normalize(feats.float(), dim=-1)


def import_open_clip(reward: str):
    """``open_clip``, or an ImportError that says how to install it."""
    try:
        import open_clip
    except Exception as exc:  # noqa: BLE001 - ImportError, or torchvision failing inside it
        raise ImportError(
            f"the {reward!r} reward needs open_clip, which is not importable here ({type(exc).__name__}: {exc}); "
            f"install the imagegen extra: pip install 'mmr1[imagegen]' (open_clip_torch, with a torchvision "
            f"that matches your torch)"
        ) from exc
    return open_clip


def resolve_open_clip_arch(arch: str, reward: str) -> str:
    """An open_clip model name: built-in names and ``local-dir:`` pass through; a ``.json`` file is registered."""
    open_clip = import_open_clip(reward)
    if arch.startswith(("local-dir:", "hf-hub:")):
        return arch
    path = Path(arch).expanduser()
    if arch.endswith(".json") or path.is_file():
        if not path.is_file():
            raise ValueError(f"the {reward!r} reward: architecture file {arch!r} does not exist (option `arch`)")
        open_clip.add_model_config(path)  # registered under the file's stem
        return path.stem
    if arch not in open_clip.list_models():
        raise ValueError(
            f"the {reward!r} reward: {arch!r} is not an open_clip architecture (option `arch`); use a name from "
            f"open_clip.list_models() such as ViT-H-14, a JSON architecture file, or local-dir:/folder"
        )
    return arch


def _open_clip_embed_dim(model, open_clip, name: str) -> int | None:
    """The joint embedding size: the vision tower's output, else the architecture's ``embed_dim``."""
    dim = getattr(getattr(model, "visual", None), "output_dim", None)
    if dim is None:
        cfg = open_clip.get_model_config(name) if not name.startswith(("local-dir:", "hf-hub:")) else None
        dim = (cfg or {}).get("embed_dim")
    return int(dim) if dim is not None else None


class OpenClip(_Encoder):
    """An open_clip model built from ``arch`` with weights from the local file ``checkpoint``."""

    def __init__(self, arch: str, checkpoint: str, reward: str, device, dtype, batch_size: int,
                 weights_only: bool = True):
        open_clip = import_open_clip(reward)
        name = resolve_open_clip_arch(arch, reward)
        if not name.startswith("local-dir:") and not Path(checkpoint).expanduser().is_file():
            raise ValueError(f"the {reward!r} reward: checkpoint {checkpoint!r} does not exist (option `checkpoint`)")
        pretrained = None if name.startswith("local-dir:") else str(Path(checkpoint).expanduser())
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                name, pretrained=pretrained, precision=_OPEN_CLIP_PRECISION[dtype], device=device,
                weights_only=bool(weights_only))
        except Exception as exc:  # noqa: BLE001 - re-raised with the options named
            hint = ("; for a trusted checkpoint that holds more than tensors, set weights_only: false"
                    if weights_only and "weights_only" in str(exc) else "")
            raise ValueError(f"the {reward!r} reward could not load open_clip {arch!r} (option `arch`) with weights "
                             f"{checkpoint!r} (option `checkpoint`): {type(exc).__name__}: {exc}{hint}") from exc
        self.device, self.dtype, self.batch_size = device, dtype, batch_size
        self.model = model.eval()
        self.model.requires_grad_(False)
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(name)
        self.embed_dim = _open_clip_embed_dim(self.model, open_clip, name)

    def _encode_images(self, images):
        pixels = torch.stack([self.preprocess(im) for im in images]).to(self.device, self.dtype)
        return self.model.encode_image(pixels, normalize=True)

    def _encode_texts(self, texts):
        return self.model.encode_text(self.tokenizer(texts).to(self.device), normalize=True)


def build_encoder(reward: str, *, model=None, processor=None, arch=None, checkpoint=None, device=None, dtype=None,
                  batch_size: int = 32, weights_only: bool = True, example: str = "/path/to/clip-vit-large-patch14"):
    """A :class:`TransformersClip` (option ``model``) or an :class:`OpenClip` (options ``arch`` + ``checkpoint``)."""
    batch_size = int(batch_size)
    if batch_size < 1:
        raise ValueError(f"{reward}: batch_size must be >= 1 (option `batch_size`)")
    device, dtype = default_device(device), parse_dtype(dtype, reward)
    if arch is not None:
        if model is not None:
            raise ValueError(f"the {reward!r} reward: give either `model` (a transformers CLIP folder) or `arch` + "
                             f"`checkpoint` (open_clip), not both")
        arch = str(arch)
        if not arch.startswith("local-dir:"):
            checkpoint = require_option(checkpoint, "checkpoint", reward, f"open_clip weights for {arch}",
                                        "/path/to/open_clip_pytorch_model.bin")
        return OpenClip(arch, str(checkpoint), reward, device, dtype, batch_size, weights_only=weights_only)
    model = require_option(model, "model", reward, "a CLIP model (transformers CLIPModel folder, or `arch` + "
                           "`checkpoint` for open_clip)", example)
    return TransformersClip(model, processor, reward, device, dtype, batch_size)
