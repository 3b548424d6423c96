"""Image rewards from learned scorers: CLIP score, PickScore, LAION aesthetic, HPSv2.

Each is a class: the trainer constructs it once with its ``reward_kwargs`` (loading the weights,
putting them on the process's device) and calls the instance on each batch:

    reward_kwargs:
      clip_score: {model: /models/clip-vit-large-patch14, batch_size: 32}          # transformers CLIP
      hps: {checkpoint: /models/HPS_v2.1_compressed.pt}                            # open_clip ViT-H-14

``instance(completions, *, generated_images, prompts=None, caption=None, **columns)`` returns one
float per generated image (``None`` for a missing image). The text compared with the image is the
``caption`` column when present, else the prompt text with markers such as ``<|t2i|>`` removed.
The encoders (transformers ``CLIPModel`` or open_clip) live in :mod:`mmr1_imagegen.encoders`.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from mmr1_imagegen.encoders import build_encoder, require_option
from mmr1_imagegen.text import texts_for

class _ClipReward:
    """Shared machinery: batched, normalised image and text embeddings from a CLIP-style encoder.

    The encoder is a transformers CLIP (option ``model``, with ``processor``) or an open_clip model
    (options ``arch`` + ``checkpoint``); ``batch_size``, ``device``, ``dtype`` and ``scale`` apply
    to both. ``weights_only: false`` lets a trusted open_clip checkpoint hold more than tensors.
    """

    reward_name = "clip"
    example = "/path/to/clip-vit-large-patch14"

    def __init__(self, model=None, processor=None, batch_size: int = 32, device=None, dtype=None, scale: float = 1.0,
                 arch=None, checkpoint=None, weights_only: bool = True):
        self.scale = float(scale)
        self.encoder = build_encoder(self.reward_name, model=model, processor=processor, arch=arch,
                                     checkpoint=checkpoint, device=device, dtype=dtype, batch_size=batch_size,
                                     weights_only=weights_only, example=self.example)

    def image_embeddings(self, images) -> torch.Tensor:
        return self.encoder.image_embeddings(images)

    def text_embeddings(self, texts) -> torch.Tensor:
        return self.encoder.text_embeddings(texts)

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

    Options: ``model`` (a transformers CLIPModel folder or hub id, e.g. openai/clip-vit-large-patch14)
    with ``processor`` (defaults to ``model``); or, for open_clip, ``arch`` (e.g. ViT-L-14, a JSON
    architecture file, or local-dir:/folder) with ``checkpoint`` (its local weights file). Also
    ``batch_size`` (32), ``device`` (this process's GPU, else CPU), ``dtype`` (float32), ``scale``
    (1.0; 2.5 with a clamp at 0 gives Hessel et al.'s CLIPScore / 100).
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
        return self.encoder.logit_scale.exp() * super()._pair_scores(images, texts)


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

    Options: ``model`` (CLIP ViT-L/14, e.g. openai/clip-vit-large-patch14; or open_clip ``arch:
    ViT-L-14`` + ``checkpoint``), ``head`` (required: the LAION head weights, v1
    ``sa_0_4_vit_l_14_linear.pth`` or the v2 MLP ``sac+logos+ava1-l14-linearMSE.pth``),
    ``batch_size``, ``device``, ``dtype``, ``scale`` (1.0).
    The prompt is not used.
    """

    reward_name = "aesthetic"

    def __init__(self, model=None, head=None, processor=None, batch_size: int = 32, device=None, dtype=None,
                 scale: float = 1.0, arch=None, checkpoint=None, weights_only: bool = True):
        head = require_option(head, "head", self.reward_name, "the LAION aesthetic head weights", "/path/to/sa_0_4_vit_l_14_linear.pth")
        self.head = load_linear_head(head, self.reward_name)
        super().__init__(model=model, processor=processor, batch_size=batch_size, device=device, dtype=dtype,
                         scale=scale, arch=arch, checkpoint=checkpoint, weights_only=weights_only)
        dim = self.encoder.embed_dim
        if dim is not None and self.head.in_features != dim:
            raise ValueError(
                f"the 'aesthetic' reward: head {head!r} expects {self.head.in_features}-d embeddings but the CLIP "
                f"model gives {dim}-d ones: use the CLIP model the head was trained on (ViT-L/14 for LAION's)"
            )

    def _pair_scores(self, images, texts):
        return self.head(self.image_embeddings(images)).reshape(-1).cpu()

    def __call__(self, completions, *, generated_images=None, prompts=None, caption=None, **kwargs):
        return super().__call__(completions, generated_images=generated_images, prompts=None, caption=None)


class HPS(_ClipReward):
    """HPSv2 / v2.1 human preference score: cosine of open_clip ViT-H-14 embeddings with HPS weights.

    Options: ``checkpoint`` (required: HPS_v2_compressed.pt or HPS_v2.1_compressed.pt), ``arch``
    (ViT-H-14), ``batch_size`` (32), ``device``, ``dtype`` (float32), ``scale`` (1.0),
    ``weights_only`` (true). The score is what the hpsv2 package computes: the diagonal of
    ``image_features @ text_features.T`` with both normalised, no logit scale. Needs open_clip
    (``pip install 'mmr1[imagegen]'``, with a torchvision that matches your torch).
    """

    reward_name = "hps"

    def __init__(self, checkpoint=None, arch: str = "ViT-H-14", batch_size: int = 32, device=None, dtype=None,
                 scale: float = 1.0, weights_only: bool = True):
        checkpoint = require_option(checkpoint, "checkpoint", self.reward_name, "the HPSv2 weights",
                                    "/path/to/HPS_v2.1_compressed.pt")
        super().__init__(arch=arch, checkpoint=checkpoint, batch_size=batch_size, device=device, dtype=dtype,
                         scale=scale, weights_only=weights_only)
