"""Training sequences for text-to-image pretraining / SFT (SimpleAR layout).

Conditional example::

    <|t2i|> {prompt_prefix}{caption} <|soi|> <|v_c1|> ... <|v_cN|> <|eoi|>

Unconditional example (classifier-free-guidance dropout, probability ``p_drop_cond``): the task
marker stays and the whole text (prefix and caption) is replaced by the ``<|t2i_uncond|>`` token::

    <|t2i|> <|t2i_uncond|> <|soi|> <|v_c1|> ... <|v_cN|> <|eoi|>

At sampling time the same unconditional prompt is the default "negative" branch of CFG
(:func:`uncond_prompt_ids`). Labels are ``-100`` on the whole prompt (up to and including
``<|soi|>``) and equal to the input ids on the visual tokens and ``<|eoi|>``; the model shifts them
internally, as every transformers causal LM does.

The text is tokenised on its own (``add_special_tokens=False``) and the markers and visual tokens
are inserted as ids, so a caption can never merge with a marker.
"""

from __future__ import annotations

import random

import torch

from mmr1.imagegen.vocab import T2IVocab

__all__ = [
    "IGNORE_INDEX",
    "pick_caption",
    "t2i_prompt_ids",
    "uncond_prompt_ids",
    "check_length_budget",
    "build_t2i_example",
    "pad_t2i_batch",
]

IGNORE_INDEX = -100
SHORT_KEYS = ("short", "short_caption", "caption_short")
LONG_KEYS = ("long", "long_caption", "caption_long", "caption")


def pick_caption(caption, sample_short: bool = True, p_short: float = 0.5, rng=None) -> str:
    """One caption string from a caption entry.

    ``caption`` is a string, a dict with short and long entries (``{"short": ..., "long": ...}``;
    also ``short_caption`` / ``long_caption``), or a list ``[short, long]``. With both present,
    ``sample_short`` picks the short one with probability ``p_short`` (else the long one);
    ``sample_short=False`` always takes the long one.
    """
    if isinstance(caption, str):
        return caption
    short = long = None
    if isinstance(caption, dict):
        short = next((caption[k] for k in SHORT_KEYS if caption.get(k)), None)
        long = next((caption[k] for k in LONG_KEYS if caption.get(k)), None)
    elif isinstance(caption, (list, tuple)):
        items = [c for c in caption if isinstance(c, str) and c]
        if items:
            short, long = items[0], items[-1]
    if short is None and long is None:
        raise ValueError(f"caption entry {caption!r} has no caption text (expected a string, {{short, long}} or [short, long])")
    if short is None or long is None:
        return short or long
    if sample_short and (rng or random).random() < p_short:
        return short
    return long


def _vocab(vocab, tokenizer) -> T2IVocab:
    if isinstance(vocab, T2IVocab):
        return vocab
    return T2IVocab.from_tokenizer(tokenizer if vocab is None else vocab)


def t2i_prompt_ids(caption: str, vocab: T2IVocab, tokenizer, prompt_prefix: str = "A photo of ", max_text_tokens: int | None = None) -> list[int]:
    """``<|t2i|>`` + tokens of ``prompt_prefix + caption`` (cut to ``max_text_tokens``) + ``<|soi|>``."""
    text = tokenizer(prompt_prefix + caption, add_special_tokens=False)["input_ids"]
    if max_text_tokens is not None:
        text = text[: int(max_text_tokens)]
    return [vocab.t2i_id, *text, vocab.soi_id]


def uncond_prompt_ids(vocab: T2IVocab, tokenizer=None, negative_prompt: str | None = None, max_text_tokens: int | None = None) -> list[int]:
    """The unconditional prompt: ``<|t2i|><|t2i_uncond|><|soi|>``, or ``<|t2i|>`` + negative prompt + ``<|soi|>``."""
    if negative_prompt is None:
        return [vocab.t2i_id, vocab.uncond_id, vocab.soi_id]
    if tokenizer is None:
        raise ValueError("a negative prompt needs the tokenizer")
    return t2i_prompt_ids(negative_prompt, vocab, tokenizer, prompt_prefix="", max_text_tokens=max_text_tokens)


def check_length_budget(num_visual: int, max_text_tokens: int, model_max_length: int | None) -> None:
    """Error unless ``3 markers + max_text_tokens + num_visual <= model_max_length``."""
    if model_max_length is None or model_max_length >= 10**8:  # transformers' "no limit" sentinel
        return
    need = num_visual + max_text_tokens + 3
    if need > model_max_length:
        raise ValueError(
            f"model_max_length {model_max_length} is too small: {num_visual} visual tokens + a text budget of "
            f"{max_text_tokens} tokens (max_text_tokens) + 3 markers need {need}. Raise model_max_length to at "
            f"least {need} (SimpleAR: visual tokens + 512, i.e. 1536 at 512 px and 4608 at 1024 px with a 16x "
            f"tokenizer) or lower max_text_tokens."
        )


def build_t2i_example(
    caption,
    codes,
    vocab,
    tokenizer,
    prompt_prefix: str = "A photo of ",
    p_drop_cond: float = 0.1,
    rng=None,
    max_text_tokens: int = 512,
    model_max_length: int | None = None,
    sample_short: bool = True,
    p_short: float = 0.5,
    add_eoi: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One training sequence ``(input_ids, labels)`` (1-D LongTensors of equal length); see the module doc.

    ``caption``: string or short/long entry (:func:`pick_caption`). ``codes``: the image codes,
    any shape (``(h, w)``, SimpleAR's ``(1, 1, h, w)``, flat), read row-major. ``vocab``: a
    :class:`T2IVocab` (or None to derive it from the tokenizer). ``rng``: anything with
    ``.random()`` (``random.Random``, ``numpy.random.Generator``); the module's ``random`` when None.
    ``max_text_tokens`` caps prefix + caption tokens; ``model_max_length`` (default: the
    tokenizer's) must hold ``3 + max_text_tokens + number of codes``, else ValueError.
    """
    vocab = _vocab(vocab, tokenizer)
    rng = rng or random
    codes = torch.as_tensor(codes).reshape(-1).long()
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= vocab.codebook_size):
        raise ValueError(f"image codes out of range 0..{vocab.codebook_size - 1}: min {int(codes.min())}, max {int(codes.max())}")
    if model_max_length is None:
        model_max_length = getattr(tokenizer, "model_max_length", None)
    check_length_budget(codes.numel(), max_text_tokens, model_max_length)
    if p_drop_cond > 0 and rng.random() < p_drop_cond:
        prompt = uncond_prompt_ids(vocab)
    else:
        text = pick_caption(caption, sample_short=sample_short, p_short=p_short, rng=rng)
        prompt = t2i_prompt_ids(text, vocab, tokenizer, prompt_prefix, max_text_tokens)
    target = (codes + vocab.first_visual_id).tolist() + ([vocab.eoi_id] if add_eoi else [])
    input_ids = torch.tensor(prompt + target, dtype=torch.long)
    labels = torch.tensor([IGNORE_INDEX] * len(prompt) + target, dtype=torch.long)
    return input_ids, labels


def pad_t2i_batch(examples, pad_token_id: int, padding_side: str = "right") -> dict[str, torch.Tensor]:
    """Pad ``[(input_ids, labels), ...]`` into ``input_ids``, ``attention_mask``, ``labels`` (labels padded with -100)."""
    if not examples:
        raise ValueError("no examples to pad")
    longest = max(len(ids) for ids, _ in examples)
    b = len(examples)
    input_ids = torch.full((b, longest), int(pad_token_id), dtype=torch.long)
    labels = torch.full((b, longest), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((b, longest), dtype=torch.long)
    for i, (ids, lab) in enumerate(examples):
        n = len(ids)
        sl = slice(longest - n, longest) if padding_side == "left" else slice(0, n)
        input_ids[i, sl] = ids
        labels[i, sl] = lab
        mask[i, sl] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}
