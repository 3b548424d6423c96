"""Image rewards from learned scorers: CLIP score, PickScore, LAION aesthetic, HPSv2.

Each is a class: the trainer constructs it once with its ``reward_kwargs`` (loading the weights,
putting them on the process's device) and calls the instance on each batch:

    reward_kwargs:
      clip_score: {model: /models/clip-vit-large-patch14, batch_size: 32}

``instance(completions, *, generated_images, prompts=None, caption=None, **columns)`` returns one
float per generated image (``None`` for a missing image). The text compared with the image is the
``caption`` column when present, else the prompt text with markers such as ``<|t2i|>`` removed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

_MARKER = re.compile(r"<\|[^|<>]*\|>")


# ---------------------------------------------------------------------------------------------
# shared helpers
# ---------------------------------------------------------------------------------------------
def default_device(device=None) -> torch.device:
    """``device`` if given; else this process's GPU (``LOCAL_RANK`` under accelerate/torchrun) or the CPU."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", torch.cuda.current_device())))
    return torch.device("cpu")


_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
           "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def _dtype(name, reward):
    if name is None or isinstance(name, torch.dtype):
        return name or torch.float32
    try:
        return _DTYPES[str(name).lower()]
    except KeyError:
        raise ValueError(f"{reward}: unknown dtype {name!r} (option `dtype`); use one of {sorted(_DTYPES)}") from None


def _require_path(value, option, reward, what, example):
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError(
            f"the {reward!r} reward needs {what}: set it in the config as "
            f"reward_kwargs: {{{reward}: {{{option}: {example}}}}}"
        )
    return str(value)


def _text_of(prompt) -> str:
    if prompt is None:
        return ""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, dict):
        return _text_of(prompt.get("content", prompt.get("text", "")))
    if isinstance(prompt, (list, tuple)):
        return " ".join(_text_of(p) for p in prompt if not (isinstance(p, dict) and p.get("role") == "system"))
    return str(prompt)


def texts_for(n, prompts=None, caption=None) -> list[str]:
    """The text each image is compared with: the ``caption`` column, else the prompt without markers."""
    out = []
    for i in range(n):
        text = None
        if caption is not None and i < len(caption) and caption[i] is not None:
            text = caption[i]
            if isinstance(text, dict):  # short / long captions
                text = text.get("long") or text.get("short") or ""
            elif isinstance(text, (list, tuple)):
                text = text[-1] if text else ""
        elif prompts is not None and i < len(prompts):
            text = _text_of(prompts[i])
        out.append(" ".join(_MARKER.sub(" ", text or "").split()))
    return out


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


def load_clip(model, processor, reward, device, dtype):
    """Load a transformers ``CLIPModel`` and ``CLIPProcessor``; errors name the option at fault."""
    from transformers import CLIPModel, CLIPProcessor

    for option, value in (("model", model), ("processor", processor)):
        p = Path(value).expanduser()
        looks_local = value.startswith((".", "/", "~")) or value.count("/") != 1 or p.exists()
        if looks_local and not p.exists():
            raise ValueError(
                f"the {reward!r} reward: {option} path {value!r} does not exist (option `{option}` in "
                f"reward_kwargs.{reward}); pass a folder saved with CLIPModel/CLIPProcessor.save_pretrained"
            )
    try:
        clip = CLIPModel.from_pretrained(str(Path(model).expanduser()) if Path(model).expanduser().exists() else model)
    except Exception as exc:  # noqa: BLE001 - re-raised with the option named
        raise ValueError(f"the {reward!r} reward could not load a CLIP model from {model!r} (option `model`): {type(exc).__name__}: {exc}") from exc
    try:
        proc = CLIPProcessor.from_pretrained(str(Path(processor).expanduser()) if Path(processor).expanduser().exists() else processor)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(
            f"the {reward!r} reward could not load a CLIP processor from {processor!r} (option `processor`, "
            f"defaults to `model`): {type(exc).__name__}: {exc}"
        ) from exc
    clip = clip.to(device=device, dtype=dtype).eval()
    clip.requires_grad_(False)
    return clip, proc


class _ClipReward:
    """Shared machinery: batched, normalised CLIP image and text embeddings."""

    reward_name = "clip"
    example = "/path/to/clip-vit-large-patch14"

    def __init__(self, model=None, processor=None, batch_size: int = 32, device=None, dtype=None, scale: float = 1.0):
        model = _require_path(model, "model", self.reward_name, "a CLIP model (transformers CLIPModel folder)", self.example)
        processor = str(processor) if processor else model
        self.device = default_device(device)
        self.dtype = _dtype(dtype, self.reward_name)
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise ValueError(f"{self.reward_name}: batch_size must be >= 1 (option `batch_size`)")
        self.scale = float(scale)
        self.model, self.processor = load_clip(model, processor, self.reward_name, self.device, self.dtype)

    @torch.no_grad()
    def image_embeddings(self, images) -> torch.Tensor:
        chunks = []
        for start in range(0, len(images), self.batch_size):
            batch = [im.convert("RGB") for im in images[start : start + self.batch_size]]
            pixels = self.processor(images=batch, return_tensors="pt")["pixel_values"]
            feats = _features(self.model.get_image_features(pixel_values=pixels.to(self.device, self.dtype)))
            chunks.append(torch.nn.functional.normalize(feats.float(), dim=-1))
        return torch.cat(chunks)

    @torch.no_grad()
    def text_embeddings(self, texts) -> torch.Tensor:
        tokenizer = self.processor.tokenizer
        max_len = getattr(self.model.config.text_config, "max_position_embeddings", 77)
        chunks = []
        for start in range(0, len(texts), self.batch_size):
            enc = tokenizer(list(texts[start : start + self.batch_size]), padding=True, truncation=True,
                            max_length=max_len, return_tensors="pt")
            feats = _features(self.model.get_text_features(input_ids=enc["input_ids"].to(self.device),
                                                           attention_mask=enc["attention_mask"].to(self.device)))
            chunks.append(torch.nn.functional.normalize(feats.float(), dim=-1))
        return torch.cat(chunks)

    def _pair_scores(self, images, texts) -> torch.Tensor:
        return (self.image_embeddings(images) * self.text_embeddings(texts)).sum(-1)

    def __call__(self, completions, *, generated_images=None, prompts=None, caption=None, **kwargs):
        if generated_images is None:
            raise ValueError(f"the {self.reward_name!r} reward scores images: it needs generated_images (text-to-image jobs)")
        n = len(completions)
        texts = texts_for(n, prompts=prompts, caption=caption)
        keep = [i for i in range(n) if i < len(generated_images) and generated_images[i] is not None]
        out: list[float | None] = [None] * n
        if keep:
            scores = self._pair_scores([generated_images[i] for i in keep], [texts[i] for i in keep])
            for i, s in zip(keep, scores.tolist()):
                out[i] = s * self.scale
        return out


class ClipScore(_ClipReward):
    """CLIP score: cosine similarity of the image and caption CLIP embeddings (times ``scale``, 1).

    Options: ``model`` (required: a transformers CLIPModel folder or hub id, e.g.
    openai/clip-vit-large-patch14), ``processor`` (defaults to ``model``), ``batch_size`` (32),
    ``device`` (this process's GPU, else CPU), ``dtype`` (float32), ``scale`` (1.0; 2.5 with a
    clamp at 0 gives Hessel et al.'s CLIPScore / 100).
    """

    reward_name = "clip_score"


class PickScore(_ClipReward):
    """PickScore: ``logit_scale.exp() * cosine`` with the PickScore_v1 CLIP-H fine-tune (about 18-24).

    Options as clip_score; the published setup is ``model: yuvalkirstain/PickScore_v1`` (a local
    copy) with ``processor: laion/CLIP-ViT-H-14-laion2B-s32B-b79K``. ``scale`` multiplies the
    result (Flow-GRPO uses 1/26).
    """

    reward_name = "pickscore"
    example = "/path/to/PickScore_v1"

    def _pair_scores(self, images, texts):
        return self.model.logit_scale.exp().float().cpu() * super()._pair_scores(images, texts).cpu()


def load_linear_head(path, reward="aesthetic"):
    """Load a LAION aesthetic head: a ``Linear(d, 1)`` (v1, ``weight``/``bias``) or the v2 MLP
    (``layers.N.weight``, applied in order without activations, as published). Returns a callable."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ValueError(
            f"the {reward!r} reward: head weights {str(path)!r} do not exist (option `head`); pass the "
            f"LAION aesthetic predictor file, e.g. sa_0_4_vit_l_14_linear.pth"
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"the {reward!r} reward could not read head weights {str(path)!r}: {type(exc).__name__}: {exc}") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"the {reward!r} reward: {str(path)!r} is not a state dict of a linear head")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    prefixes = sorted({k[: -len("weight")] for k in state if k.endswith("weight")},
                      key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"[.]", p) if t])
    if not prefixes:
        raise ValueError(f"the {reward!r} reward: {str(path)!r} holds no linear layer weights (keys: {sorted(state)[:6]})")
    layers = []
    for prefix in prefixes:
        w = state[prefix + "weight"].float()
        b = state.get(prefix + "bias")
        layers.append((w, None if b is None else b.float()))

    def head(x: torch.Tensor) -> torch.Tensor:
        for w, b in layers:
            x = torch.nn.functional.linear(x, w.to(x.device), None if b is None else b.to(x.device))
        return x

    head.in_features = layers[0][0].shape[1]
    return head


class Aesthetic(_ClipReward):
    """LAION aesthetic score (about 1-10) from a linear head on normalised CLIP ViT-L/14 image embeddings.

    Options: ``model`` (required: CLIP ViT-L/14, e.g. openai/clip-vit-large-patch14), ``head``
    (required: the LAION head weights, v1 ``sa_0_4_vit_l_14_linear.pth`` or the v2 MLP
    ``sac+logos+ava1-l14-linearMSE.pth``), ``batch_size``, ``device``, ``dtype``, ``scale`` (1.0).
    The prompt is not used.
    """

    reward_name = "aesthetic"

    def __init__(self, model=None, head=None, processor=None, batch_size: int = 32, device=None, dtype=None, scale: float = 1.0):
        head = _require_path(head, "head", self.reward_name, "the LAION aesthetic head weights", "/path/to/sa_0_4_vit_l_14_linear.pth")
        self.head = load_linear_head(head, self.reward_name)
        super().__init__(model=model, processor=processor, batch_size=batch_size, device=device, dtype=dtype, scale=scale)
        dim = self.model.config.projection_dim
        if self.head.in_features != dim:
            raise ValueError(
                f"the 'aesthetic' reward: head {head!r} expects {self.head.in_features}-d embeddings but the CLIP "
                f"model gives {dim}-d ones: use the CLIP model the head was trained on (ViT-L/14 for LAION's)"
            )

    def _pair_scores(self, images, texts):
        return self.head(self.image_embeddings(images)).reshape(-1).cpu()

    def __call__(self, completions, *, generated_images=None, prompts=None, caption=None, **kwargs):
        return super().__call__(completions, generated_images=generated_images, prompts=None, caption=None)


class HPS:
    """HPSv2 / v2.1 human preference score: cosine of open_clip ViT-H-14 embeddings with HPS weights.

    Options: ``checkpoint`` (required: HPS_v2_compressed.pt or HPS_v2.1_compressed.pt),
    ``arch`` (ViT-H-14), ``batch_size`` (32), ``device``, ``scale`` (1.0). Needs open_clip
    (``pip install 'mmr1[imagegen]'``, GPU machines: it pulls torchvision).
    """

    reward_name = "hps"

    def __init__(self, checkpoint=None, arch: str = "ViT-H-14", batch_size: int = 32, device=None, scale: float = 1.0):
        checkpoint = _require_path(checkpoint, "checkpoint", self.reward_name, "the HPSv2 weights", "/path/to/HPS_v2.1_compressed.pt")
        try:
            import open_clip
        except Exception as exc:  # noqa: BLE001 - ImportError, or torchvision failing inside it
            raise ImportError(
                f"the 'hps' reward needs open_clip, which is not importable here ({type(exc).__name__}: {exc}); "
                f"install the imagegen extra: pip install 'mmr1[imagegen]' (open_clip_torch)"
            ) from exc
        if not Path(checkpoint).expanduser().is_file():
            raise ValueError(f"the 'hps' reward: checkpoint {checkpoint!r} does not exist (option `checkpoint`)")
        self.device = default_device(device)
        self.batch_size = int(batch_size)
        self.scale = float(scale)
        model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=None, device="cpu")
        state = torch.load(str(Path(checkpoint).expanduser()), map_location="cpu", weights_only=False)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        state = {k.removeprefix("module."): v for k, v in state.items()}
        model.load_state_dict(state)
        self.model = model.to(self.device).eval()
        self.model.requires_grad_(False)
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(arch)

    @torch.no_grad()
    def __call__(self, completions, *, generated_images=None, prompts=None, caption=None, **kwargs):
        if generated_images is None:
            raise ValueError("the 'hps' reward scores images: it needs generated_images (text-to-image jobs)")
        n = len(completions)
        texts = texts_for(n, prompts=prompts, caption=caption)
        keep = [i for i in range(n) if i < len(generated_images) and generated_images[i] is not None]
        out: list[float | None] = [None] * n
        for start in range(0, len(keep), self.batch_size):
            idx = keep[start : start + self.batch_size]
            pixels = torch.stack([self.preprocess(generated_images[i].convert("RGB")) for i in idx]).to(self.device)
            tokens = self.tokenizer([texts[i] for i in idx]).to(self.device)
            img = torch.nn.functional.normalize(self.model.encode_image(pixels).float(), dim=-1)
            txt = torch.nn.functional.normalize(self.model.encode_text(tokens).float(), dim=-1)
            for i, s in zip(idx, (img * txt).sum(-1).tolist()):
                out[i] = s * self.scale
        return out
