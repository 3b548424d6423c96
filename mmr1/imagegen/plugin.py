"""Built-in text-to-image plugin: the ``t2i`` model adapter, rollout backend and data loaders.

- model adapter ``t2i`` (:class:`T2IAdapter`): a causal LM prepared by
  :func:`mmr1.imagegen.vocab.prepare_t2i` (a folder with ``t2i.json``). The prompt of a row is
  ``<|t2i|>`` + ``prompt_prefix`` + caption + ``<|soi|>`` (SimpleAR's GRPO prompt); completions
  are image tokens and every training log-prob is normalised over the visual tokens only.
- rollout backend ``t2i`` (:class:`T2IRollout`): writes exactly ``(image_resolution /
  downsample)^2`` visual tokens per completion (optionally with classifier-free guidance), decodes
  them with the image tokenizer and hands the images to the rewards as ``generated_images``.
- dataset loaders ``captions`` (GRPO prompts) and ``t2i_meta`` (extracted tokens for SFT), see
  :mod:`mmr1.imagegen.data`.

Configuration: the trainer passes its :class:`~mmr1.config.TrainConfig` to the backend
(``backend_cls(adapter, accelerator, config=config)``) and calls ``adapter.configure(config)`` when
an adapter has that method. Keys used: ``prompt_prefix``, ``max_prompt_length``,
``image_tokenizer`` (default: the spec recorded in ``t2i.json``), ``image_resolution``,
``rollout_cfg_scale``, ``negative_prompt``.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from pathlib import Path

import torch

from mmr1.hookspecs import hookimpl
from mmr1.models.base import ModelAdapter, PromptBatch
from mmr1.rollout.base import Rollout, SamplingParams
from mmr1.rollout.hf import HFRollout, decode_shared_prefix, gathered_for_generation
from mmr1.rollout.sampling import make_generators, sample_tokens

__all__ = ["T2IProcessor", "T2IAdapter", "T2IRollout", "load_image_tokenizer_for", "image_grid_size"]

log = logging.getLogger("mmr1.imagegen")

DEFAULT_PROMPT_PREFIX = "A photo of "


class T2IProcessor:
    """The tokenizer plus the text-to-image vocabulary of a prepared model folder.

    ``save_pretrained`` writes both (tokenizer files and ``t2i.json``), so checkpoints and the
    final folder of a GRPO run stay loadable text-to-image folders. Attribute access falls through
    to the tokenizer.
    """

    def __init__(self, tokenizer, vocab):
        self.tokenizer = tokenizer
        self.vocab = vocab

    def save_pretrained(self, path, **kwargs):
        out = self.tokenizer.save_pretrained(path, **kwargs)
        self.vocab.save(path)
        return out

    def __call__(self, *args, **kwargs):
        return self.tokenizer(*args, **kwargs)

    def __len__(self):
        return len(self.tokenizer)

    def __getattr__(self, name):
        if name in ("tokenizer", "vocab"):  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.tokenizer, name)


def load_t2i_vocab(path, tokenizer=None):
    """``t2i.json`` of ``path``, else the vocabulary read from the tokenizer's tokens (a clear error if neither)."""
    from mmr1.imagegen.vocab import T2I_JSON, T2IVocab, T2IVocabError

    if path is not None and (Path(path) / T2I_JSON).is_file():
        return T2IVocab.load(path)
    if tokenizer is not None:
        try:
            return T2IVocab.from_tokenizer(tokenizer)
        except T2IVocabError as exc:
            raise T2IVocabError(
                f"{str(path)!r} is not a text-to-image model: no {T2I_JSON} and {exc}. Prepare it with "
                f"`mmr1 prepare-t2i --model {path} --out DIR --codebook-size N` (mmr1.imagegen.vocab.prepare_t2i)"
            ) from None
    return T2IVocab.load(path)  # raises the explanatory error


def _flatten(content) -> str:
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content or [] if isinstance(part, dict) and part.get("type", "text") == "text")


class T2IAdapter(ModelAdapter):
    """A causal LM with an image-token vocabulary (SimpleAR); completions are image tokens.

    Prompts: ``<|t2i|>`` + ``prompt_prefix`` + caption + ``<|soi|>``, where the caption is the text
    of the last user message (the template's system prompt is ignored; a caption that already
    starts with ``prompt_prefix``, e.g. from the ``t2i`` template, gets no second one). Training
    logits are restricted to the visual tokens (every other logit is ``-inf``), so log-probs,
    ratios, KL and entropy are over image codes, exactly the distribution the ``t2i`` rollout
    samples from.
    """

    name = "t2i"
    takes_images = False
    rollout_backends = ("t2i",)     # its completions are image tokens: only the t2i backend writes them

    def __init__(self, processor, min_pixels=None, max_pixels=None):
        super().__init__(processor, min_pixels, max_pixels)
        vocab = getattr(processor, "vocab", None)
        if vocab is None:
            vocab = load_t2i_vocab(getattr(self.tokenizer, "name_or_path", None), self.tokenizer)
        self.vocab = vocab
        self.prompt_prefix = DEFAULT_PROMPT_PREFIX
        self.max_text_tokens: int | None = None
        self._mask_cache: dict = {}

    # -- configuration -----------------------------------------------------------------------
    def configure(self, config) -> None:
        """Take ``prompt_prefix`` and ``max_prompt_length`` from a TrainConfig (called by the trainer)."""
        prefix = getattr(config, "prompt_prefix", None)
        if prefix is not None:
            self.prompt_prefix = prefix
        max_prompt = getattr(config, "max_prompt_length", None)
        if max_prompt:
            if max_prompt < 3:
                raise ValueError(f"max_prompt_length {max_prompt} is too small for a text-to-image prompt "
                                 f"(<|t2i|> + text + <|soi|> need at least 3 tokens)")
            self.max_text_tokens = int(max_prompt) - 2

    # -- loading -----------------------------------------------------------------------------
    @classmethod
    def matches(cls, hf_config) -> bool:
        """``model_adapter: auto`` picks this adapter for folders holding ``t2i.json``."""
        from mmr1.imagegen.vocab import T2I_JSON

        path = getattr(hf_config, "_name_or_path", None) or getattr(hf_config, "name_or_path", None)
        return bool(path) and (Path(path) / T2I_JSON).is_file()

    @classmethod
    def load_processor(cls, path, min_pixels=None, max_pixels=None):
        from transformers import AutoTokenizer

        if Path(str(path)).exists() and not Path(str(path)).is_dir():
            raise ValueError(f"model_name_or_path {path!r} is a file; the t2i adapter needs a model folder")
        tokenizer = AutoTokenizer.from_pretrained(path)
        return T2IProcessor(tokenizer, load_t2i_vocab(path, tokenizer))

    # -- tokens ------------------------------------------------------------------------------
    @property
    def eos_token_ids(self) -> list[int]:
        """``<|eoi|>``. Never sampled in rollouts (only visual tokens are); kept so generic code has an end id."""
        return [self.vocab.eoi_id]

    def caption_of(self, messages: list[dict]) -> str:
        """The caption of one prompt: the text of its last user message (else of every non-system message)."""
        users = [m for m in messages if m.get("role") == "user"]
        if users:
            return _flatten(users[-1].get("content"))
        return " ".join(_flatten(m.get("content")) for m in messages if m.get("role") != "system")

    def prompt_ids(self, caption: str) -> list[int]:
        """Token ids of ``<|t2i|>`` + prefix + caption + ``<|soi|>``."""
        from mmr1.imagegen.sequence import t2i_prompt_ids

        prefix = self.prompt_prefix or ""
        if prefix and caption.startswith(prefix):
            prefix = ""
        return t2i_prompt_ids(caption, self.vocab, self.tokenizer, prefix, self.max_text_tokens)

    def render(self, messages: list[dict]) -> str:
        prefix = self.prompt_prefix or ""
        caption = self.caption_of(messages)
        if prefix and caption.startswith(prefix):
            prefix = ""
        return f"<|t2i|>{prefix}{caption}<|soi|>"

    def encode_prompts(self, messages: list[list[dict]], images: list[list] | None = None,
                       max_prompt_length: int | None = None) -> PromptBatch:
        if max_prompt_length is not None and self.max_text_tokens is None:
            self.max_text_tokens = max(1, int(max_prompt_length) - 2)
        rows = [self.prompt_ids(self.caption_of(m)) for m in messages]
        width = max(len(r) for r in rows)
        pad = self.pad_token_id
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
            mask[i, width - len(r):] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        return PromptBatch(input_ids, mask, positions, mask.sum(-1), {}, [self.render(m) for m in messages])

    # -- scoring -----------------------------------------------------------------------------
    def non_visual_mask(self, vocab_size: int, device) -> torch.Tensor:
        """Boolean (V,) mask, True on every token that is not an image code."""
        key = (int(vocab_size), str(device))
        mask = self._mask_cache.get(key)
        if mask is None:
            mask = torch.ones(vocab_size, dtype=torch.bool, device=device)
            mask[self.vocab.first_visual_id:self.vocab.end_visual_id] = False
            self._mask_cache[key] = mask
        return mask

    def mask_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Set every non-visual logit to ``-inf`` (in place; returns ``logits``)."""
        v = self.vocab
        if logits.shape[-1] < v.end_visual_id:
            raise ValueError(f"the model has {logits.shape[-1]} output logits but the visual tokens end at id "
                             f"{v.end_visual_id - 1}: the model and its t2i.json do not match")
        logits[..., : v.first_visual_id] = float("-inf")
        logits[..., v.end_visual_id:] = float("-inf")
        return logits

    def completion_logits(self, model, prompts: PromptBatch, prompt_index: torch.Tensor,
                          completion_ids: torch.Tensor, completion_mask: torch.Tensor,
                          shared_prefix: bool = True) -> torch.Tensor:
        """The base logits with every non-visual logit at ``-inf`` (log-probs over image codes only)."""
        logits = super().completion_logits(model, prompts, prompt_index, completion_ids, completion_mask,
                                           shared_prefix=shared_prefix)
        return self.mask_logits(logits)


# ---------------------------------------------------------------------------------------------
# image tokenizer helpers
# ---------------------------------------------------------------------------------------------
def load_image_tokenizer_for(spec: str, device=None):
    """Load an image tokenizer, passing ``device`` only to tokenizers whose ``load`` takes one."""
    from mmr1.imagegen.tokenizers import load_image_tokenizer

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


class T2IRollout(HFRollout):
    """Image-token rollouts: exactly ``h * w`` visual tokens per completion, decoded to images.

    Without guidance (``rollout_cfg_scale: 1``) it is the ``hf`` backend (each prompt prefilled
    once, per-completion seeds) with the logits restricted to the visual tokens and no end token.
    With ``rollout_cfg_scale != 1`` the conditional rows and unconditional rows (``negative_prompt``,
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
    def _visual_hook(self, user_hook=None):
        adapter = self.adapter

        def hook(logits, t):
            if user_hook is not None:
                logits = user_hook(logits, t)
            return adapter.mask_logits(logits)

        return hook

    @torch.no_grad()
    def generate(self, model, prompts, prompt_index, sampling: SamplingParams, logits_hook=None) -> Rollout:
        sampling = dataclasses.replace(sampling, max_tokens=self.num_tokens, ignore_eos=True)
        if self.cfg_scale == 1.0:
            out = super().generate(model, prompts, prompt_index, sampling, logits_hook=self._visual_hook(logits_hook))
            ids = out.completion_ids
        else:
            ids = self._generate_guided(model, prompts, prompt_index, sampling, logits_hook)
        if ids.shape[1] != self.num_tokens or not bool(self.vocab.is_visual(ids).all()):
            raise RuntimeError(f"t2i rollout produced {ids.shape[1]} tokens (expected {self.num_tokens}), or non-visual "
                               f"tokens: this is a bug")
        images = self.decode(ids)
        n = ids.shape[0]
        texts = [f"<image {self.grid[0]}x{self.grid[1]}>"] * n
        return Rollout(prompt_index, ids, torch.ones_like(ids), torch.zeros(n, dtype=torch.bool, device=ids.device),
                       texts, extras={"generated_images": images})

    def decode(self, ids: torch.Tensor) -> list:
        """Visual token ids (N, h*w) -> PIL images."""
        codes = self.vocab.id_to_code(ids.detach().cpu()).reshape(-1, *self.grid)
        images = []
        for start in range(0, codes.shape[0], self.decode_batch_size):
            images.extend(self.image_tokenizer.decode(codes[start:start + self.decode_batch_size]))
        return images

    def _generate_guided(self, model, prompts, prompt_index, sampling, logits_hook=None) -> torch.Tensor:
        """CFG decoding: conditional rows then unconditional rows, one forward per token."""
        from mmr1.imagegen.sampling import cfg_logits
        from mmr1.imagegen.sequence import uncond_prompt_ids

        adapter, vocab = self.adapter, self.vocab
        device = prompts.input_ids.device
        n = prompt_index.shape[0]
        seeds = sampling.seeds if sampling.seeds is not None else list(range(n))
        generators = make_generators(seeds, device)
        neg = uncond_prompt_ids(vocab, adapter.tokenizer, self.negative_prompt, adapter.max_text_tokens)
        p, width = prompts.input_ids.shape
        width = max(width, len(neg))
        ids = torch.full((p + 1, width), adapter.pad_token_id, dtype=torch.long, device=device)
        mask = torch.zeros((p + 1, width), dtype=torch.long, device=device)
        ids[:p, width - prompts.input_ids.shape[1]:] = prompts.input_ids
        mask[:p, width - prompts.input_ids.shape[1]:] = prompts.attention_mask
        ids[p, width - len(neg):] = torch.tensor(neg, dtype=torch.long, device=device)
        mask[p, width - len(neg):] = 1
        both = PromptBatch(ids, mask, (mask.cumsum(-1) - 1).clamp(min=0), mask.sum(-1), {})
        index = torch.cat([prompt_index, torch.full_like(prompt_index, p)])
        visual = vocab.visual_slice
        codes: list[torch.Tensor] = []

        def next_token(logits, t):
            if logits_hook is not None:
                logits = logits_hook(logits, t)
            logp = torch.log_softmax(logits[:, visual].float(), dim=-1)
            scores = cfg_logits(logp[:n], logp[n:], self.cfg_scale)
            code = sample_tokens(scores, generators, sampling.temperature, sampling.top_k, sampling.top_p)
            codes.append(code)
            return (code + vocab.first_visual_id).repeat(2), False     # the same token for cond and uncond rows

        with gathered_for_generation(model, self.accelerator):
            decode_shared_prefix(model, adapter, both, index, self.num_tokens, next_token)
        return torch.stack(codes, 1) + vocab.first_visual_id


@hookimpl
def register_models(register):
    register("t2i", T2IAdapter, description="Text-to-image causal LM with image tokens (SimpleAR; prepare_t2i folder).")


@hookimpl
def register_rollout_backends(register):
    register("t2i", T2IRollout, description="Image-token rollouts (optional CFG), decoded to images for the rewards.")


@hookimpl
def register_datasets(register):
    from mmr1.imagegen.data import load_captions, load_t2i_meta

    register("captions", load_captions, description="Caption prompts for text-to-image GRPO (.json / .jsonl / .txt).")
    register("t2i_meta", load_t2i_meta, description="Extracted image tokens for SimpleAR pretrain / SFT (meta JSON or mixture YAML).")
