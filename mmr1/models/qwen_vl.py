"""Adapters for Qwen2-VL and Qwen2.5-VL: processor, image placeholders, ``image_grid_thw``, m-rope."""

from __future__ import annotations

import inspect

import torch

from mmr1.models.base import ModelAdapter, PromptBatch


class PromptTooLongError(ValueError):
    pass


class QwenVLAdapter(ModelAdapter):
    """Qwen2-VL / Qwen2.5-VL (and checkpoints sharing their processor and m-rope positions)."""

    name = "qwen2_5_vl"
    takes_images = True
    model_types = ("qwen2_5_vl", "qwen2_vl")
    auto_model_class = "AutoModelForImageTextToText"

    @classmethod
    def matches(cls, hf_config) -> bool:
        return getattr(hf_config, "model_type", None) in cls.model_types

    @classmethod
    def parameter_part(cls, name: str) -> str:
        """``visual.*`` is the vision tower, ``visual.merger.*`` the projector into the language model."""
        if ".visual." not in f".{name}":
            return "language"
        return "projector" if ".merger." in f".{name}" else "vision"

    @classmethod
    def load_processor(cls, path, min_pixels=None, max_pixels=None):
        from mmr1.models.processors import load_processor

        return load_processor(path, min_pixels=min_pixels, max_pixels=max_pixels)

    @property
    def suppressed_token_ids(self) -> list[int]:
        """Vision placeholders and delimiters: a completion holding one would break image-feature scatter."""
        names = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")
        ids = [self.tokenizer.convert_tokens_to_ids(n) for n in names]
        return sorted({i for i in ids if isinstance(i, int) and i != self.tokenizer.unk_token_id})

    def render(self, messages: list[dict]) -> str:
        return self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def encode_prompts(self, messages, images=None, max_prompt_length=None) -> PromptBatch:
        images = images or [[] for _ in messages]
        texts = [self.render(m) for m in messages]
        flat = [img for row in images for img in row]
        self.tokenizer.padding_side = "left"
        enc = self.processor(text=texts, images=flat or None, padding=True, return_tensors="pt")
        input_ids, mask = enc["input_ids"], enc["attention_mask"]
        if max_prompt_length is not None and int(mask.sum(-1).max()) > max_prompt_length:
            longest = int(mask.sum(-1).max())
            raise PromptTooLongError(
                f"a prompt has {longest} tokens (image tokens included) but max_prompt_length is "
                f"{max_prompt_length}; raise max_prompt_length or lower max_pixels (truncating would cut "
                f"image tokens and break the image features)")
        extra = {k: enc[k] for k in ("pixel_values", "image_grid_thw") if k in enc}
        positions, next_position = self.rope_positions(input_ids, mask, extra.get("image_grid_thw"))
        return PromptBatch(input_ids, mask, positions, next_position, extra, texts, [len(r) for r in images])

    def prompt_length(self, messages, images=None) -> int:
        enc = self.processor(text=[self.render(messages)], images=list(images or []) or None, return_tensors="pt")
        return int(enc["attention_mask"].sum())

    # -- m-rope ------------------------------------------------------------------------------
    def rope_positions(self, input_ids, attention_mask, image_grid_thw):
        """3-D positions (3, P, L) of the prompts and the first completion position (P,)."""
        if image_grid_thw is None:
            pos = (attention_mask.cumsum(-1) - 1).clamp(min=0)
            return pos[None].expand(3, -1, -1).clone(), attention_mask.sum(-1)
        if self._model is None:
            raise RuntimeError("QwenVLAdapter.bind(model) must be called before encoding prompts with images")
        with torch.no_grad():
            positions = _rope_index(self._model, input_ids, attention_mask, image_grid_thw)
        masked = positions.masked_fill(attention_mask[None] == 0, -1)
        return positions, masked.amax(dim=(0, 2)) + 1

    _model = None

    def bind(self, model) -> None:
        """Remember the (unwrapped) model whose ``get_rope_index`` defines positions."""
        self._model = model

    def completion_positions(self, next_position, length, like):
        flat = super().completion_positions(next_position, length, like)
        return flat[None].expand(3, -1, -1)

    def expand_extra(self, prompts: PromptBatch, prompt_index: torch.Tensor) -> dict:
        if "pixel_values" not in prompts.extra:
            return {}
        grid = prompts.extra["image_grid_thw"]
        patches = grid.prod(-1).tolist()
        # row ranges of each prompt's images in pixel_values
        image_of_prompt, image = [], 0
        for count in prompts.image_counts:
            image_of_prompt.append(range(image, image + count))
            image += count
        bounds = [0]
        for n in patches:
            bounds.append(bounds[-1] + n)
        rows, grids = [], []
        for p in prompt_index.tolist():
            for i in image_of_prompt[p]:
                rows.append(torch.arange(bounds[i], bounds[i + 1]))
                grids.append(grid[i])
        if not rows:
            return {}
        index = torch.cat(rows).to(prompts.extra["pixel_values"].device)
        return {"pixel_values": prompts.extra["pixel_values"][index], "image_grid_thw": torch.stack(grids)}

    @property
    def box_frame(self) -> str:
        """Qwen2.5-VL writes boxes in pixels of the image as resized by the processor; Qwen2-VL in 0-1000."""
        model_type = getattr(getattr(self._model, "config", None), "model_type", None) or self.name
        return "qwen1000" if model_type == "qwen2_vl" else "resized"

    def reward_columns(self, prompts: PromptBatch) -> dict[str, list]:
        """``seen_image_sizes`` from the processor's own ``image_grid_thw`` (patches x ``patch_size`` pixels: the
        size after its pixel-budget resize) and ``box_frame``, per prompt."""
        grid = prompts.extra.get("image_grid_thw")
        patch = int(getattr(getattr(self.processor, "image_processor", None), "patch_size", 14) or 14)
        rows = [] if grid is None else [(int(w) * patch, int(h) * patch) for _, h, w in grid.tolist()]
        sizes, start = [], 0
        for count in prompts.image_counts or [0] * prompts.num_prompts:
            sizes.append(rows[start:start + count])
            start += count
        return {"seen_image_sizes": sizes, "box_frame": [self.box_frame] * prompts.num_prompts}


def _rope_index(model, input_ids, attention_mask, image_grid_thw):
    """Qwen's m-rope positions from the model's own ``get_rope_index`` (its signature varies by release)."""
    if hasattr(model, "get_base_model"):          # peft wrapper
        model = model.get_base_model()
    inner = model.model if hasattr(model.model, "get_rope_index") else model
    fn = inner.get_rope_index
    params = inspect.signature(fn).parameters
    kwargs = {"input_ids": input_ids, "image_grid_thw": image_grid_thw, "attention_mask": attention_mask}
    if "mm_token_type_ids" in params:
        kwargs["mm_token_type_ids"] = (input_ids == model.config.image_token_id).int()
    if "video_grid_thw" in params:
        kwargs["video_grid_thw"] = None
    positions, _ = fn(**kwargs)
    return positions
