"""The ``t2i`` rollout backend: exactly ``(image_resolution / downsample)^2`` visual tokens per completion.

Optionally with classifier-free guidance; the tokens are decoded with the image tokenizer and handed
to the rewards as ``generated_images``. The trainer passes its :class:`~mmr1.config.TrainConfig`
(``backend_cls(adapter, accelerator, config=config)``); keys used: ``image_tokenizer`` (default: the
spec recorded in ``t2i.json``), ``image_resolution``, ``rollout_cfg_scale``, ``negative_prompt``.
"""

from __future__ import annotations

import logging

import torch

from mmr1.imagegen.tokenizers import image_grid_size, load_image_tokenizer_for
from mmr1.rollout.base import Rollout, SamplingParams
from mmr1.rollout.hf import HFRollout, gathered_for_generation

__all__ = ["T2IRollout"]

log = logging.getLogger("mmr1.imagegen")


class T2IRollout(HFRollout):
    """Image-token rollouts: exactly ``h * w`` visual tokens per completion, decoded to images.

    Decoding is :func:`mmr1.imagegen.sampling.decode_image_tokens`, the decoder of
    ``generate_image_tokens`` too: each prompt prefilled once, one random stream per completion
    (``SamplingParams.seeds``), logits restricted to the visual tokens, no end token. With
    ``rollout_cfg_scale != 1`` the conditional rows and unconditional rows (``negative_prompt``,
    default SimpleAR's ``<|t2i|><|t2i_uncond|><|soi|>``) run in one batch and tokens are drawn from
    ``cfg * (logp_cond - logp_uncond) + logp_uncond``. Training log-probs are always the
    conditional policy's, so guided rollouts are off-policy (see docs/imagegen.md).
    """

    name = "t2i"
    extra_columns = ("generated_images",)
    adapters = ("t2i",)

    def __init__(self, adapter, accelerator=None, config=None, **options):
        super().__init__(adapter, accelerator, **options)
        if not hasattr(adapter, "vocab"):
            raise ValueError("rollout_backend 't2i' needs model_adapter 't2i' (a model prepared with prepare_t2i)")
        self.config = config

        def option(key, default):
            if key in options:
                return options[key]
            return getattr(config, key, default) if config is not None else default

        self.vocab = adapter.vocab
        spec = option("image_tokenizer", None) or self.vocab.image_tokenizer
        if not spec:
            raise ValueError("rollout_backend 't2i' needs an image tokenizer to decode images: set image_tokenizer "
                             "(e.g. vq:runs/vq or cosmos:/models/Cosmos-Tokenizer-DI16x16) in the config")
        device = getattr(accelerator, "device", None) if accelerator is not None else None
        self.image_tokenizer = options.get("image_tokenizer_obj") or load_image_tokenizer_for(spec, device)
        if self.image_tokenizer.codebook_size != self.vocab.codebook_size:
            raise ValueError(f"image tokenizer {spec!r} has {self.image_tokenizer.codebook_size} codes but the model's "
                             f"t2i.json has {self.vocab.codebook_size} visual tokens: use the tokenizer the model was "
                             f"prepared for")
        self.resolution = int(option("image_resolution", 256))
        self.grid = image_grid_size(self.resolution, self.image_tokenizer.downsample)
        self.num_tokens = self.grid[0] * self.grid[1]
        self.cfg_scale = float(option("rollout_cfg_scale", 1.0))
        self.negative_prompt = option("negative_prompt", None)
        self.decode_batch_size = int(options.get("decode_batch_size", 32))
        max_len = getattr(config, "max_completion_length", None) if config is not None else None
        if max_len is not None and max_len != self.num_tokens:
            level = log.warning if getattr(config, "loss_type", "") == "dr_grpo" else log.info
            level("t2i rollouts write %d image tokens (%dx%d) whatever max_completion_length says (%d)%s",
                  self.num_tokens, *self.grid, max_len,
                  "; dr_grpo normalises by max_completion_length: set it to the token count" if level is log.warning else "")

    # -- generation --------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, model, prompts, prompt_index, sampling: SamplingParams, logits_hook=None) -> Rollout:
        ids = self._sample_ids(model, prompts, prompt_index, sampling, logits_hook)
        if ids.shape[1] != self.num_tokens or not bool(self.vocab.is_visual(ids).all()):
            raise RuntimeError(f"t2i rollout produced {ids.shape[1]} tokens (expected {self.num_tokens}), or non-visual "
                               f"tokens: this is a bug")
        images = self.decode(ids)
        n = ids.shape[0]
        texts = [f"<image {self.grid[0]}x{self.grid[1]}>"] * n
        return Rollout(prompt_index, ids, torch.ones_like(ids), torch.zeros(n, dtype=torch.bool, device=ids.device),
                       texts, extras={"generated_images": images})

    def _sample_ids(self, model, prompts, prompt_index, sampling, logits_hook=None) -> torch.Tensor:
        """Visual token ids (N, h*w) of every completion, through the shared image-token decoder."""
        from mmr1.imagegen.sampling import ImageTokenSampler, decode_image_tokens
        from mmr1.imagegen.sequence import uncond_prompt_ids

        adapter = self.adapter
        n = prompt_index.shape[0]
        seeds = sampling.seeds if sampling.seeds is not None else list(range(n))
        sampler = ImageTokenSampler(self.vocab, seeds, prompts.input_ids.device, cfg=self.cfg_scale,
                                    temperature=sampling.temperature, top_k=sampling.top_k, top_p=sampling.top_p,
                                    repetition_penalty=sampling.repetition_penalty, logits_hook=logits_hook)
        uncond = None
        if sampler.guided:
            uncond = uncond_prompt_ids(self.vocab, adapter.tokenizer, self.negative_prompt, adapter.max_text_tokens)
        with gathered_for_generation(model, self.accelerator):
            out = decode_image_tokens(model, adapter, prompts, prompt_index, self.num_tokens, sampler, uncond,
                                      adapter.pad_token_id)
        return out.token_ids(self.vocab)

    def decode(self, ids: torch.Tensor) -> list:
        """Visual token ids (N, h*w) -> PIL images."""
        codes = self.vocab.id_to_code(ids.detach().cpu()).reshape(-1, *self.grid)
        images = []
        for start in range(0, codes.shape[0], self.decode_batch_size):
            images.extend(self.image_tokenizer.decode(codes[start:start + self.decode_batch_size]))
        return images
