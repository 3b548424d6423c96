"""Sampling image tokens from a text-to-image causal LM, with classifier-free guidance.

:func:`generate_image_tokens` decodes exactly ``num_tokens`` visual tokens per prompt with the
model's KV cache (one prefill, then one token per step). The logits are restricted to the visual
token range, so every sample is a full ``h x w`` grid (SimpleAR crashed when a completion stopped
early). With ``cfg != 1`` the conditional and unconditional prompts run in one batched forward and
the next-token distribution is::

    cfg * (logp_cond - logp_uncond) + logp_uncond        (log-softmaxed over the visual tokens)

then temperature, top-k and top-p apply. Two log-probs come back per token:

- ``logp_policy``: log-prob of the sampled code under the *conditional* model at temperature 1,
  normalised over the visual tokens only (no CFG, no temperature, no top-k/p). This is what
  GRPO's ratio needs; compute the training-side one with :func:`visual_logprobs` so both match.
- ``logp_sample``: log-prob under the distribution actually sampled from (after CFG, temperature,
  top-k, top-p); 0 for greedy decoding.
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import NamedTuple

import torch
from PIL import Image

from mmr1.imagegen.sequence import t2i_prompt_ids, uncond_prompt_ids
from mmr1.imagegen.vocab import T2IVocab

__all__ = [
    "ImageTokens",
    "cfg_logits",
    "filter_logits",
    "visual_logprobs",
    "generate_image_tokens",
    "codes_to_images",
    "make_grid",
    "save_grid",
]


class ImageTokens(NamedTuple):
    """Result of :func:`generate_image_tokens` (unpacks as ``codes, logp_policy, logp_sample``)."""

    codes: torch.Tensor  # (B, num_tokens) int64, 0..codebook_size-1
    logp_policy: torch.Tensor  # (B, num_tokens) float32
    logp_sample: torch.Tensor  # (B, num_tokens) float32

    def token_ids(self, vocab: T2IVocab) -> torch.Tensor:
        return self.codes + vocab.first_visual_id


def cfg_logits(logp_cond: torch.Tensor, logp_uncond: torch.Tensor, cfg: float) -> torch.Tensor:
    """Classifier-free guidance on log-softmaxed logits: ``cfg * (logp_cond - logp_uncond) + logp_uncond``.

    ``cfg = 1`` returns ``logp_cond``; ``cfg = 0`` the unconditional distribution.
    """
    return cfg * (logp_cond - logp_uncond) + logp_uncond


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Set logits outside the top-k and outside the top-p nucleus to -inf (at least one kept)."""
    if top_k is not None and 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, int(top_k), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and 0 < top_p < 1:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = torch.softmax(sorted_logits, dim=-1)
        # drop a token when the tokens ranked before it already hold top_p of the mass
        drop_sorted = (probs.cumsum(-1) - probs) >= top_p
        drop_sorted[..., 0] = False
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
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


def _model_device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _keep_kwarg(model) -> str | None:
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return None
    for name in ("logits_to_keep", "num_logits_to_keep"):
        if name in params:
            return name
    return None


def _left_pad(rows: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    longest = max(len(r) for r in rows)
    ids = torch.full((len(rows), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), longest), dtype=torch.long)
    for i, r in enumerate(rows):
        if not r:
            raise ValueError(f"prompt {i} is empty")
        ids[i, longest - len(r) :] = torch.tensor(r, dtype=torch.long)
        mask[i, longest - len(r) :] = 1
    return ids.to(device), mask.to(device)


def _expand_cache(cache, repeats: int):
    """Repeat every row of a KV cache ``repeats`` times (row i -> rows i*r .. i*r+r-1)."""
    if hasattr(cache, "batch_repeat_interleave"):
        cache.batch_repeat_interleave(repeats)
        return cache
    if isinstance(cache, (tuple, list)):  # legacy tuple-of-tuples cache
        return tuple(tuple(t.repeat_interleave(repeats, dim=0) for t in layer) for layer in cache)
    raise TypeError(f"cannot expand a {type(cache).__name__} KV cache; use num_generations=1 and repeat the prompts")


def _sample(probs: torch.Tensor, generator) -> torch.Tensor:
    if generator is not None and generator.device.type != probs.device.type:
        # e.g. a CPU generator (reproducible across machines) with the model on a GPU
        return torch.multinomial(probs.to(generator.device), 1, generator=generator).squeeze(-1).to(probs.device)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def _generate_chunk(model, vocab, cond, uncond, num_tokens, cfg, temperature, top_k, top_p, generator, pad_id,
                    num_generations=1):
    device = _model_device(model)
    guided = cfg != 1.0
    g = int(num_generations)
    rows = cond + (uncond if guided else [])
    b = len(cond)
    input_ids, mask = _left_pad(rows, pad_id, device)
    position_ids = (mask.cumsum(-1) - 1).clamp_min(0)
    keep = _keep_kwarg(model)
    extra = {keep: 1} if keep else {}
    out = model(input_ids=input_ids, attention_mask=mask, position_ids=position_ids, use_cache=True, **extra)
    cache = out.past_key_values
    logits = out.logits[:, -1, vocab.visual_slice].float()
    if g > 1:
        # prefill once per prompt, then copy the cache for the group: rows stay [cond..., uncond...]
        cache = _expand_cache(cache, g)
        logits = logits.repeat_interleave(g, dim=0)
        mask = mask.repeat_interleave(g, dim=0)
        position_ids = position_ids.repeat_interleave(g, dim=0)
        b *= g
    codes = torch.empty((b, num_tokens), dtype=torch.long, device=device)
    logp_policy = torch.empty((b, num_tokens), dtype=torch.float32, device=device)
    logp_sample = torch.empty((b, num_tokens), dtype=torch.float32, device=device)
    last_pos = position_ids[:, -1:]
    for t in range(num_tokens):
        logp = torch.log_softmax(logits, dim=-1)
        logp_cond = logp[:b]
        scores = cfg_logits(logp_cond, logp[b:], cfg) if guided else logp_cond
        if temperature == 0:
            code = scores.argmax(-1)
            lp_sample = torch.zeros(b, device=device)
        else:
            scores = filter_logits(scores / temperature, top_k, top_p)
            logp_s = torch.log_softmax(scores, dim=-1)
            code = _sample(logp_s.exp(), generator)
            lp_sample = logp_s.gather(-1, code[:, None]).squeeze(-1)
        codes[:, t] = code
        logp_policy[:, t] = logp_cond.gather(-1, code[:, None]).squeeze(-1)
        logp_sample[:, t] = lp_sample
        if t == num_tokens - 1:
            break
        next_ids = (code + vocab.first_visual_id)[:, None]
        if guided:
            next_ids = torch.cat([next_ids, next_ids])
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
        last_pos = last_pos + 1
        out = model(input_ids=next_ids, attention_mask=mask, position_ids=last_pos, past_key_values=cache, use_cache=True)
        cache = out.past_key_values
        logits = out.logits[:, -1, vocab.visual_slice].float()
    return codes.cpu(), logp_policy.cpu(), logp_sample.cpu()


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
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
    prompt_prefix: str = "A photo of ",
    max_text_tokens: int | None = None,
    num_generations: int = 1,
) -> ImageTokens:
    """Sample ``num_tokens`` (= h * w) image codes for every prompt.

    ``vocab``: a :class:`T2IVocab`, or the model's tokenizer (the vocabulary is then read from its
    tokens and it doubles as ``tokenizer``). ``prompts``: captions (strings, wrapped as
    ``<|t2i|>{prompt_prefix}{caption}<|soi|>``; needs the tokenizer) or complete prompts as lists of
    token ids. ``cfg``: guidance scale, 1 = none (SimpleAR samples with 6). ``negative_prompt``:
    text of the unconditional branch, default the ``<|t2i_uncond|>`` prompt of training.
    ``temperature`` 0 = greedy. ``top_k`` / ``top_p`` filter the guided distribution.
    ``generator`` makes sampling reproducible. ``batch_size``: prompts per forward (the CFG forward
    has twice as many rows); default all at once. ``num_generations`` G: samples per prompt; each
    prompt is encoded once and its KV cache copied G times (a GRPO group); output rows are
    prompt-major (prompt 0's G samples, then prompt 1's, ...).

    Returns :class:`ImageTokens` ``(codes, logp_policy, logp_sample)``, each (B * G, num_tokens), on
    the CPU. Codes are always in ``0 .. codebook_size - 1``.
    """
    if not isinstance(vocab, T2IVocab):
        tokenizer = tokenizer or vocab
        vocab = T2IVocab.from_tokenizer(vocab)
    num_tokens = int(num_tokens)
    if num_tokens < 1:
        raise ValueError("num_tokens must be >= 1 (h * w of the code grid)")
    if int(num_generations) < 1:
        raise ValueError("num_generations must be >= 1")
    if temperature < 0:
        raise ValueError("temperature must be >= 0 (0 = greedy)")
    prompts = list(prompts)
    if not prompts:
        raise ValueError("no prompts")
    cond = []
    for i, p in enumerate(prompts):
        if isinstance(p, str):
            if tokenizer is None:
                raise ValueError("text prompts need the tokenizer (tokenizer=...)")
            cond.append(t2i_prompt_ids(p, vocab, tokenizer, prompt_prefix, max_text_tokens))
        else:
            ids = [int(x) for x in (p.tolist() if torch.is_tensor(p) else p)]
            if not ids:
                raise ValueError(f"prompt {i} is empty")
            cond.append(ids)
    uncond_one = uncond_prompt_ids(vocab, tokenizer, negative_prompt, max_text_tokens)
    pad_id = getattr(tokenizer, "pad_token_id", None) if tokenizer is not None else None
    pad_id = vocab.t2i_id if pad_id is None else int(pad_id)
    step = int(batch_size) if batch_size else len(cond)
    was_training = model.training
    model.eval()
    try:
        parts = [
            _generate_chunk(model, vocab, cond[s : s + step], [uncond_one] * len(cond[s : s + step]), num_tokens,
                            float(cfg), float(temperature), top_k, top_p, generator, pad_id, num_generations)
            for s in range(0, len(cond), step)
        ]
    finally:
        model.train(was_training)
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
