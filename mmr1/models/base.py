"""The model adapter protocol: how one model family loads, encodes prompts and scores completions.

Scoring shares each prompt across its group: the prompt (with its images) is run once, its KV cache
is indexed out to every completion of the group, and only the completion tokens are run per
completion. The loss and gradients equal those of G separate ``prompt + completion`` rows (a test
checks this against ``shared_prefix=False``), at a fraction of the compute for long prompts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class PromptBatch:
    """Unique prompts, left-padded, ready for the model; ``extra`` holds pixel values and friends."""

    input_ids: torch.Tensor              # (P, L)
    attention_mask: torch.Tensor         # (P, L)
    position_ids: torch.Tensor | None    # (P, L), or (3, P, L) for m-rope; None = derived from the mask
    next_position: torch.Tensor          # (P,) position id of the first completion token
    extra: dict = field(default_factory=dict)   # pixel_values, image_grid_thw, ...
    texts: list[str] = field(default_factory=list)
    image_counts: list[int] = field(default_factory=list)   # images per prompt, for indexing pixel rows

    def to(self, device) -> PromptBatch:
        move = lambda t: t.to(device) if isinstance(t, torch.Tensor) else t  # noqa: E731
        return PromptBatch(move(self.input_ids), move(self.attention_mask), move(self.position_ids),
                           move(self.next_position), {k: move(v) for k, v in self.extra.items()}, self.texts, self.image_counts)

    @property
    def num_prompts(self) -> int:
        return self.input_ids.shape[0]


class ModelAdapter:
    """Base adapter for decoder-only models; subclasses override what their family does differently."""

    name = "causal_lm"
    takes_images = False
    rollout_backends: tuple[str, ...] | None = None   # backends that can write its completions (None: any)

    def __init__(self, processor, min_pixels: int | None = None, max_pixels: int | None = None):
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.min_pixels = min_pixels
        self.max_pixels = max_pixels
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    # -- loading -----------------------------------------------------------------------------
    @classmethod
    def matches(cls, hf_config) -> bool:
        return True

    @classmethod
    def load_processor(cls, path, min_pixels=None, max_pixels=None):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(path)

    #: the transformers auto class :meth:`load_model` loads through
    auto_model_class = "AutoModelForCausalLM"

    @classmethod
    def load_model(cls, path, dtype=None, attn_implementation=None):
        import transformers

        kwargs = {"dtype": dtype} if dtype is not None else {}
        if attn_implementation:
            kwargs["attn_implementation"] = attn_implementation
        return getattr(transformers, cls.auto_model_class).from_pretrained(path, **kwargs)

    @classmethod
    def parameter_part(cls, name: str) -> str:
        """Which part of the model a parameter belongs to, for ``train_parts`` / ``freeze_vision_tower``:
        ``vision`` (the vision tower), ``projector`` (vision to language) or ``language``."""
        return "language"

    # -- tokens ------------------------------------------------------------------------------
    @property
    def eos_token_ids(self) -> list[int]:
        """The tokens that end a completion: the tokenizer's end of sequence and its chat template's end of turn."""
        ids = {self.tokenizer.eos_token_id} | end_of_turn_ids(self.tokenizer)
        return sorted(i for i in ids if i is not None)

    @property
    def pad_token_id(self) -> int:
        return self.tokenizer.pad_token_id

    def render(self, messages: list[dict]) -> str:
        """The prompt text for one sample (chat template with generation prompt, or plain text)."""
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(_text_only(messages), tokenize=False,
                                                      add_generation_prompt=True)
        return "\n".join(_flatten_text(m["content"]) for m in messages)

    def encode_prompts(self, messages: list[list[dict]], images: list[list] | None = None,
                       max_prompt_length: int | None = None) -> PromptBatch:
        texts = [self.render(m) for m in messages]
        self.tokenizer.padding_side = "left"
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        input_ids, mask = enc["input_ids"], enc["attention_mask"]
        if max_prompt_length is not None and input_ids.shape[1] > max_prompt_length:
            input_ids, mask = input_ids[:, -max_prompt_length:], mask[:, -max_prompt_length:]
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        return PromptBatch(input_ids, mask, positions, mask.sum(-1), {}, texts)

    def prompt_length(self, messages: list[dict], images: list | None = None) -> int:
        """Tokens of one prompt as the model sees it (image tokens included), without a model."""
        return int(self.encode_prompts([messages], [images or []], None).attention_mask.sum())

    def configure(self, config) -> None:
        """Read the config keys this adapter cares about (e.g. t2i's ``prompt_prefix``); none by default."""

    def bind(self, model) -> None:
        """Called with the unwrapped model once it is loaded (adapters needing model state override it)."""

    # -- scoring -----------------------------------------------------------------------------
    def completion_positions(self, next_position: torch.Tensor, length: int, like: torch.Tensor | None) -> torch.Tensor:
        """Position ids (N, T) of completion tokens starting at ``next_position`` (N,)."""
        return next_position[:, None] + torch.arange(length, device=next_position.device)[None, :]

    def prompt_forward(self, model, prompts: PromptBatch, use_cache: bool = True):
        """Run the unique prompts once; returns the model output (logits of the last position, cache)."""
        return model(input_ids=prompts.input_ids, attention_mask=prompts.attention_mask,
                     position_ids=prompts.position_ids, use_cache=use_cache, logits_to_keep=1,
                     **prompts.extra)

    def completion_logits(self, model, prompts: PromptBatch, prompt_index: torch.Tensor,
                          completion_ids: torch.Tensor, completion_mask: torch.Tensor,
                          shared_prefix: bool = True) -> torch.Tensor:
        """Logits (N, T, V) predicting each completion token; ``prompt_index[n]`` is completion n's prompt."""
        used = torch.unique(prompt_index)                               # sorted
        if used.numel() < prompts.num_prompts:                           # encode only this micro-batch's prompts
            prompts = self.select(prompts, used)
            prompt_index = torch.searchsorted(used, prompt_index)
        if shared_prefix:
            return self._shared_prefix_logits(model, prompts, prompt_index, completion_ids, completion_mask)
        return self._full_row_logits(model, prompts, prompt_index, completion_ids, completion_mask)

    def _shared_prefix_logits(self, model, prompts, prompt_index, completion_ids, completion_mask):
        out = self.prompt_forward(model, prompts, use_cache=True)
        cache = out.past_key_values
        cache.reorder_cache(prompt_index)
        first = out.logits[prompt_index, -1:, :]                       # predicts completion token 0
        if completion_ids.shape[1] == 1:
            return first
        # Padding sits only after a completion's end, so every real token sees the prompt and its own past.
        attention = torch.cat([prompts.attention_mask[prompt_index], torch.ones_like(completion_ids[:, :-1])], 1)
        inputs = completion_ids[:, :-1]
        positions = self.completion_positions(prompts.next_position[prompt_index], inputs.shape[1],
                                              prompts.position_ids)
        rest = model(input_ids=inputs, attention_mask=attention, position_ids=positions,
                     past_key_values=cache, use_cache=True).logits
        return torch.cat([first, rest], dim=1)

    def _full_row_logits(self, model, prompts, prompt_index, completion_ids, completion_mask):
        """Reference path: every completion as its own ``prompt + completion`` row."""
        input_ids = torch.cat([prompts.input_ids[prompt_index], completion_ids], 1)
        attention = torch.cat([prompts.attention_mask[prompt_index], torch.ones_like(completion_ids)], 1)
        positions = self.completion_positions(prompts.next_position[prompt_index], completion_ids.shape[1],
                                              prompts.position_ids)
        prompt_positions = _index_positions(prompts.position_ids, prompt_index)
        extra = self.expand_extra(prompts, prompt_index)
        logits = model(input_ids=input_ids, attention_mask=attention,
                       position_ids=torch.cat([prompt_positions, positions], -1),
                       logits_to_keep=completion_ids.shape[1] + 1, **extra).logits
        return logits[:, :-1, :]

    def select(self, prompts: PromptBatch, keep: torch.Tensor) -> PromptBatch:
        """The prompts ``keep`` (indices, in that order), with their images."""
        rows = keep.tolist()
        return PromptBatch(prompts.input_ids[keep], prompts.attention_mask[keep],
                           None if prompts.position_ids is None else _index_positions(prompts.position_ids, keep),
                           prompts.next_position[keep], self.expand_extra(prompts, keep),
                           [prompts.texts[i] for i in rows] if prompts.texts else [],
                           [prompts.image_counts[i] for i in rows] if prompts.image_counts else [])

    @property
    def suppressed_token_ids(self) -> list[int]:
        """Tokens a rollout must never sample (e.g. image placeholders, which only the processor may place)."""
        return []

    def expand_extra(self, prompts: PromptBatch, prompt_index: torch.Tensor) -> dict:
        """Model inputs other than ids for ``prompts`` repeated as ``prompt_index`` says."""
        return {}

    # -- boxes: what grounding / detection rewards need to know --------------------------------
    #: The frame this family writes boxes in (``resized``, ``qwen1000``, ... see docs/rewards.md); None: none.
    box_frame: str | None = None

    def reward_columns(self, prompts: PromptBatch) -> dict[str, list]:
        """Reward columns per encoded prompt: ``seen_image_sizes`` (``[(width, height)]`` of each image as the
        model saw it) and ``box_frame``, for families that take images; none here."""
        return {}


_TURN_MARK = "\u2063mmr1-end-of-turn\u2063"


def end_of_turn_ids(tokenizer) -> set[int]:
    """The special token a tokenizer's chat template closes an assistant turn with (``<|im_end|>``,
    ``<|eot_id|>``, ``<end_of_turn>`` ...), found by rendering one turn; empty without a chat template."""
    if not getattr(tokenizer, "chat_template", None):
        return set()
    try:
        text = tokenizer.apply_chat_template([{"role": "user", "content": "q"},
                                              {"role": "assistant", "content": _TURN_MARK}], tokenize=False)
    except Exception:            # a template that refuses this conversation: no end-of-turn token to add
        return set()
    if not isinstance(text, str) or _TURN_MARK not in text:
        return set()
    special = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    after = tokenizer(text.split(_TURN_MARK, 1)[1], add_special_tokens=False)["input_ids"]
    return next(({i} for i in after if i in special), set())


def _index_positions(position_ids, index):
    if position_ids.dim() == 3:
        return position_ids[:, index, :]
    return position_ids[index]


def _flatten_text(content) -> str:
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if part.get("type") == "text")


def _text_only(messages):
    return [{"role": m["role"], "content": _flatten_text(m["content"])} for m in messages]
