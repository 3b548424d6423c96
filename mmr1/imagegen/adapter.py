"""The ``t2i`` model adapter and its processor: a causal LM with an image-token vocabulary (SimpleAR).

:class:`T2IAdapter` wraps a causal LM prepared by :func:`mmr1.imagegen.vocab.prepare_t2i` (a folder
with ``t2i.json``). The prompt of a row is ``<|t2i|>`` + ``prompt_prefix`` + caption + ``<|soi|>``
(SimpleAR's GRPO prompt); completions are image tokens and every training log-prob is normalised
over the visual tokens only. :class:`T2IProcessor` is the tokenizer plus that vocabulary.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mmr1.models.base import ModelAdapter, PromptBatch

__all__ = ["T2IProcessor", "T2IAdapter", "load_t2i_vocab", "DEFAULT_PROMPT_PREFIX"]

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
    def mask_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Set every non-visual logit to ``-inf`` (in place; returns ``logits``), as rollouts do."""
        from mmr1.imagegen.sampling import mask_non_visual

        return mask_non_visual(logits, self.vocab)

    def completion_logits(self, model, prompts: PromptBatch, prompt_index: torch.Tensor,
                          completion_ids: torch.Tensor, completion_mask: torch.Tensor,
                          shared_prefix: bool = True) -> torch.Tensor:
        """The base logits with every non-visual logit at ``-inf`` (log-probs over image codes only)."""
        logits = super().completion_logits(model, prompts, prompt_index, completion_ids, completion_mask,
                                           shared_prefix=shared_prefix)
        return self.mask_logits(logits)
