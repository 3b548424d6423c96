"""Sampling image tokens from a text-to-image causal LM, with classifier-free guidance.

There is one decoder. :func:`decode_image_tokens` runs :func:`mmr1.rollout.hf.decode_shared_prefix`
(each prompt prefilled once, its KV cache indexed out to its completions, one token per step) with
an :class:`ImageTokenSampler` as the step. Training rollouts (the ``t2i`` backend),
:func:`generate_image_tokens`, ``mmr1 generate`` and the demo's held-out figures all decode through
it, so the same prompts, seeds and settings give the same codes everywhere.

The step restricts the logits to the visual token range, so every sample is a full ``h x w`` grid
(SimpleAR crashed when a completion stopped early). With ``cfg != 1`` each completion also has an
unconditional row, and the next-token distribution is::

    cfg * (logp_cond - logp_uncond) + logp_uncond        (log-softmaxed over the visual tokens)

then temperature, top-k and top-p apply (:func:`mmr1.rollout.sampling.sample_tokens`, one random
stream per completion). Two log-probs can come back per token:

- ``logp_policy``: log-prob of the sampled code under the *conditional* model at temperature 1,
  normalised over the visual tokens only (no CFG, no temperature, no top-k/p). This is what
  GRPO's ratio needs; compute the training-side one with :func:`visual_logprobs` so both match.
- ``logp_sample``: log-prob under the distribution actually sampled from (after CFG, temperature,
  top-k, top-p); 0 for greedy decoding.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import torch
from PIL import Image

from mmr1.imagegen.sequence import t2i_prompt_ids, uncond_prompt_ids
from mmr1.imagegen.vocab import T2IVocab
from mmr1.models.base import ModelAdapter, PromptBatch
from mmr1.rollout.hf import decode_shared_prefix
from mmr1.rollout.sampling import (
    apply_repetition_penalty,
    completion_seed,
    filter_logits,
    make_generators,
    sample_tokens,
)

__all__ = [
    "ImageTokens",
    "ImageTokenSampler",
    "cfg_logits",
    "mask_non_visual",
    "visual_logprobs",
    "decode_image_tokens",
    "generate_image_tokens",
    "codes_to_images",
    "make_grid",
    "save_grid",
]


class ImageTokens(NamedTuple):
    """Sampled codes (unpacks as ``codes, logp_policy, logp_sample``; log-probs None when not recorded)."""

    codes: torch.Tensor  # (B, num_tokens) int64, 0..codebook_size-1
    logp_policy: torch.Tensor | None  # (B, num_tokens) float32
    logp_sample: torch.Tensor | None  # (B, num_tokens) float32

    def token_ids(self, vocab: T2IVocab) -> torch.Tensor:
        return self.codes + vocab.first_visual_id

    def cpu(self) -> ImageTokens:
        return ImageTokens(*(None if x is None else x.cpu() for x in self))


def cfg_logits(logp_cond: torch.Tensor, logp_uncond: torch.Tensor, cfg: float) -> torch.Tensor:
    """Classifier-free guidance on log-softmaxed logits: ``cfg * (logp_cond - logp_uncond) + logp_uncond``.

    ``cfg = 1`` returns ``logp_cond``; ``cfg = 0`` the unconditional distribution.
    """
    return cfg * (logp_cond - logp_uncond) + logp_uncond


def mask_non_visual(logits: torch.Tensor, vocab: T2IVocab) -> torch.Tensor:
    """Set every non-visual logit of ``logits`` (..., V) to ``-inf``, in place; returns ``logits``."""
    if logits.shape[-1] < vocab.end_visual_id:
        raise ValueError(f"the model has {logits.shape[-1]} output logits but the visual tokens end at id "
                         f"{vocab.end_visual_id - 1}: the model and its t2i.json do not match")
    logits[..., : vocab.first_visual_id] = float("-inf")
    logits[..., vocab.end_visual_id:] = float("-inf")
    return logits


def visual_logprobs(logits: torch.Tensor, target_ids: torch.Tensor, vocab: T2IVocab, temperature: float = 1.0) -> torch.Tensor:
    """Log-probs of visual ``target_ids`` under ``logits`` (..., V) restricted to the visual tokens.

    The training-side twin of ``logp_policy``: pass the logits that predict each target (already
    shifted) and the target token ids; returns a tensor of ``target_ids``' shape.
    """
    vis = logits[..., vocab.visual_slice].float()
    if temperature != 1.0:
        vis = vis / temperature
    logp = torch.log_softmax(vis, dim=-1)
    codes = (target_ids - vocab.first_visual_id).clamp(0, vocab.codebook_size - 1)
    return logp.gather(-1, codes.unsqueeze(-1)).squeeze(-1)


def _gather(logp: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return logp.gather(-1, index[:, None]).squeeze(-1)


class ImageTokenSampler:
    """The image-token sampling step: ``next_token(logits, t)`` of ``decode_shared_prefix``.

    ``seeds``: one per completion, each its own random stream (Gumbel-max through
    :func:`~mmr1.rollout.sampling.sample_tokens`), so a completion's codes do not depend on the
    other rows. ``cfg == 1``: the rows are the completions; every non-visual logit is set to
    ``-inf`` and the token is drawn over the whole vocabulary. ``cfg != 1``: the rows are the
    completions' conditional rows then their unconditional rows, and the code is drawn from
    :func:`cfg_logits` of the two visual log-softmaxes. ``temperature`` 0 is greedy.
    ``logits_hook(logits, t)`` edits the raw logits first; ``repetition_penalty`` applies to
    unguided sampling only. ``record_logps`` keeps ``logp_policy`` and ``logp_sample``.
    """

    def __init__(self, vocab: T2IVocab, seeds, device, *, cfg: float = 1.0, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float = 1.0, repetition_penalty: float = 1.0,
                 logits_hook=None, record_logps: bool = False):
        self.vocab = vocab
        self.n = len(seeds)
        self.generators = make_generators(list(seeds), device)
        self.cfg = float(cfg)
        self.guided = self.cfg != 1.0
        self.temperature, self.top_k, self.top_p = float(temperature), top_k, float(top_p)
        self.repetition_penalty = float(repetition_penalty)
        self.logits_hook = logits_hook
        self.record_logps = record_logps
        self.codes: list[torch.Tensor] = []
        self.logp_policy: list[torch.Tensor] = []
        self.logp_sample: list[torch.Tensor] = []

    def __call__(self, logits: torch.Tensor, t: int):
        if self.logits_hook is not None:
            logits = self.logits_hook(logits, t)
        scores, cond, offset = self._guided(logits) if self.guided else self._unguided(logits)
        choice = sample_tokens(scores, self.generators, self.temperature, self.top_k, self.top_p)
        code = choice - offset
        self.codes.append(code)
        if self.record_logps:
            self._record(scores, cond, choice, code)
        token = code + self.vocab.first_visual_id
        return (token.repeat(2) if self.guided else token), False   # cond and uncond rows get the same token

    def _unguided(self, logits):
        """Full-vocabulary scores with the non-visual logits at -inf (the choice is a token id)."""
        logits = mask_non_visual(logits, self.vocab)
        cond = logits[:, self.vocab.visual_slice]
        if self.repetition_penalty != 1.0 and self.codes:
            previous = torch.stack(self.codes, 1) + self.vocab.first_visual_id
            logits = apply_repetition_penalty(logits, previous, self.repetition_penalty)
        return logits, cond, self.vocab.first_visual_id

    def _guided(self, logits):
        """Visual-token CFG scores of the conditional rows (the choice is a code)."""
        logp = torch.log_softmax(logits[:, self.vocab.visual_slice].float(), dim=-1)
        return cfg_logits(logp[: self.n], logp[self.n :], self.cfg), logp[: self.n], 0

    def _record(self, scores, cond, choice, code):
        self.logp_policy.append(_gather(torch.log_softmax(cond.float(), dim=-1), code))
        if self.temperature <= 0:
            self.logp_sample.append(torch.zeros_like(self.logp_policy[-1]))
            return
        sampled = filter_logits(scores.float() / self.temperature, self.top_k, self.top_p)
        self.logp_sample.append(_gather(torch.log_softmax(sampled, dim=-1), choice))

    def result(self) -> ImageTokens:
        """The codes drawn so far (N, t), and the log-probs when recorded."""
        stack = lambda xs: torch.stack(xs, 1) if xs else None  # noqa: E731
        return ImageTokens(torch.stack(self.codes, 1), stack(self.logp_policy), stack(self.logp_sample))


def with_uncond_prompt(prompts: PromptBatch, prompt_index: torch.Tensor, uncond_ids: list[int],
                       pad_id: int) -> tuple[PromptBatch, torch.Tensor]:
    """``prompts`` plus one unconditional prompt (last), and an unconditional row per completion after theirs."""
    device = prompts.input_ids.device
    p, width = prompts.input_ids.shape
    width = max(width, len(uncond_ids))
    ids = torch.full((p + 1, width), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((p + 1, width), dtype=torch.long, device=device)
    ids[:p, width - prompts.input_ids.shape[1]:] = prompts.input_ids
    mask[:p, width - prompts.input_ids.shape[1]:] = prompts.attention_mask
    ids[p, width - len(uncond_ids):] = torch.tensor(uncond_ids, dtype=torch.long, device=device)
    mask[p, width - len(uncond_ids):] = 1
    both = PromptBatch(ids, mask, (mask.cumsum(-1) - 1).clamp(min=0), mask.sum(-1), {})
    return both, torch.cat([prompt_index, torch.full_like(prompt_index, p)])


def decode_image_tokens(model, adapter, prompts: PromptBatch, prompt_index: torch.Tensor, num_tokens: int,
                        sampler: ImageTokenSampler, uncond_ids: list[int] | None = None,
                        pad_id: int = 0) -> ImageTokens:
    """Decode ``num_tokens`` image codes for every completion (``prompt_index[n]`` is its prompt).

    ``adapter`` provides ``prompt_forward`` and ``completion_positions`` (any model adapter).
    With guidance the unconditional prompt ``uncond_ids`` is prefilled once beside the prompts
    (left-padded with ``pad_id``). Returns the sampler's :class:`ImageTokens`, on the model's device.
    """
    if sampler.n != prompt_index.shape[0]:
        raise ValueError(f"{sampler.n} seeds for {prompt_index.shape[0]} completions")
    if sampler.guided:
        if uncond_ids is None:
            raise ValueError("guided decoding (cfg != 1) needs the unconditional prompt's ids")
        prompts, prompt_index = with_uncond_prompt(prompts, prompt_index, uncond_ids, pad_id)
    decode_shared_prefix(model, adapter, prompts, prompt_index, num_tokens, sampler)
    return sampler.result()


class _CausalLM:
    """The two adapter methods decoding needs, for a bare causal LM."""

    prompt_forward = ModelAdapter.prompt_forward
    completion_positions = ModelAdapter.completion_positions


def _model_device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _prompt_batch(rows: list[list[int]], pad_id: int, device) -> PromptBatch:
    """Left-padded prompts with positions counted from each prompt's first token."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
        mask[i, width - len(r):] = 1
    ids, mask = ids.to(device), mask.to(device)
    return PromptBatch(ids, mask, (mask.cumsum(-1) - 1).clamp(min=0), mask.sum(-1), {})


def _prompt_rows(prompts, vocab, tokenizer, prompt_prefix, max_text_tokens) -> list[list[int]]:
    rows = []
    for i, p in enumerate(prompts):
        if isinstance(p, str):
            if tokenizer is None:
                raise ValueError("text prompts need the tokenizer (tokenizer=...)")
            rows.append(t2i_prompt_ids(p, vocab, tokenizer, prompt_prefix, max_text_tokens))
        else:
            ids = [int(x) for x in (p.tolist() if torch.is_tensor(p) else p)]
            if not ids:
                raise ValueError(f"prompt {i} is empty")
            rows.append(ids)
    return rows


def _check_settings(num_tokens, num_generations, temperature, top_p) -> None:
    if num_tokens < 1:
        raise ValueError("num_tokens must be >= 1 (h * w of the code grid)")
    if num_generations < 1:
        raise ValueError("num_generations must be >= 1")
    if temperature < 0:
        raise ValueError("temperature must be >= 0 (0 = greedy)")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")


def generate_image_tokens(
    model,
    vocab,
    prompts,
    num_tokens: int,
    *,
    tokenizer=None,
    cfg: float = 1.0,
    negative_prompt: str | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    prompt_prefix: str = "A photo of ",
    max_text_tokens: int | None = None,
    num_generations: int = 1,
) -> ImageTokens:
    """Sample ``num_tokens`` (= h * w) image codes for every prompt, through :func:`decode_image_tokens`.

    ``vocab``: a :class:`T2IVocab`, or the model's tokenizer (the vocabulary is then read from its
    tokens and it doubles as ``tokenizer``). ``prompts``: captions (strings, wrapped as
    ``<|t2i|>{prompt_prefix}{caption}<|soi|>``; needs the tokenizer) or complete prompts as lists of
    token ids. ``cfg``: guidance scale, 1 = none (SimpleAR samples with 6). ``negative_prompt``:
    text of the unconditional branch, default the ``<|t2i_uncond|>`` prompt of training.
    ``temperature`` 0 = greedy. ``top_k`` / ``top_p`` filter the guided distribution.
    ``num_generations`` G: samples per prompt, each prompt prefilled once (a GRPO group); output
    rows are prompt-major (prompt 0's G samples, then prompt 1's, ...). ``seed``: output row ``i``
    draws from its own stream seeded ``completion_seed(seed, 0, i)``, as a training rollout's
    completion does, so a row's codes depend on neither ``batch_size`` (prompts per forward,
    default all) nor the other prompts.

    Returns :class:`ImageTokens` ``(codes, logp_policy, logp_sample)``, each (B * G, num_tokens), on
    the CPU. Codes are always in ``0 .. codebook_size - 1``.
    """
    if not isinstance(vocab, T2IVocab):
        tokenizer = tokenizer or vocab
        vocab = T2IVocab.from_tokenizer(vocab)
    num_tokens, g = int(num_tokens), int(num_generations)
    top_p = 1.0 if top_p is None else float(top_p)
    _check_settings(num_tokens, g, temperature, top_p)
    rows = _prompt_rows(list(prompts), vocab, tokenizer, prompt_prefix, max_text_tokens)
    if not rows:
        raise ValueError("no prompts")
    uncond = uncond_prompt_ids(vocab, tokenizer, negative_prompt, max_text_tokens)
    pad_id = getattr(tokenizer, "pad_token_id", None) if tokenizer is not None else None
    pad_id = vocab.t2i_id if pad_id is None else int(pad_id)
    device = _model_device(model)
    step = int(batch_size) if batch_size else len(rows)
    parts = []
    for s in range(0, len(rows), step):
        chunk = rows[s : s + step]
        seeds = [completion_seed(seed, 0, i) for i in range(s * g, (s + len(chunk)) * g)]
        sampler = ImageTokenSampler(vocab, seeds, device, cfg=cfg, temperature=temperature, top_k=top_k,
                                    top_p=top_p, record_logps=True)
        index = torch.arange(len(chunk), device=device).repeat_interleave(g)
        out = decode_image_tokens(model, _CausalLM(), _prompt_batch(chunk, pad_id, device), index, num_tokens,
                                  sampler, uncond, pad_id)
        parts.append(out.cpu())
    return ImageTokens(*(torch.cat(x) for x in zip(*parts)))


def codes_to_images(codes, image_tokenizer, grid: tuple[int, int] | None = None) -> list[Image.Image]:
    """Decode flat codes (B, h*w) with an image tokenizer; ``grid=(h, w)``, default square."""
    codes = torch.as_tensor(codes).long()
    if codes.dim() == 1:
        codes = codes[None]
    if codes.dim() == 2:
        n = codes.shape[1]
        if grid is None:
            side = math.isqrt(n)
            if side * side != n:
                raise ValueError(f"{n} codes per image is not a square grid: pass grid=(h, w)")
            grid = (side, side)
        codes = codes.reshape(codes.shape[0], *grid)
    return image_tokenizer.decode(codes)


def make_grid(images, nrow: int | None = None, pad: int = 2, background=(255, 255, 255)) -> Image.Image:
    """Tile images (same size) into one image, ``nrow`` per row (default about square)."""
    if not images:
        raise ValueError("no images for a grid")
    w, h = images[0].size
    n = len(images)
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    grid = Image.new("RGB", (nrow * w + (nrow + 1) * pad, rows * h + (rows + 1) * pad), tuple(background))
    for i, image in enumerate(images):
        r, c = divmod(i, nrow)
        grid.paste(image.convert("RGB").resize((w, h)), (pad + c * (w + pad), pad + r * (h + pad)))
    return grid


def save_grid(images, path, nrow: int | None = None, pad: int = 2, scale: int = 1) -> Path:
    """Write every image as a PNG and a grid of them; returns the grid's path.

    ``path`` a folder: ``0000.png, 0001.png, ...`` and ``grid.png`` inside it. ``path`` ending in
    ``.png`` / ``.jpg``: the grid there and the images beside it as ``<stem>_0000.png``, ...
    ``scale`` enlarges the grid (nearest neighbour; 32 px images are hard to see).
    """
    path = Path(path)
    if path.suffix.lower() in (".png", ".jpg", ".jpeg"):
        folder, grid_path, name = path.parent, path, lambda i: f"{path.stem}_{i:04d}.png"
    else:
        folder, grid_path, name = path, path / "grid.png", lambda i: f"{i:04d}.png"
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        image.save(folder / name(i))
    grid = make_grid(images, nrow=nrow, pad=pad)
    if scale != 1:
        grid = grid.resize((grid.width * scale, grid.height * scale), Image.NEAREST)
    grid.save(grid_path)
    return grid_path
