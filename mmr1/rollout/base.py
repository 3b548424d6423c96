"""What every rollout backend takes and returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int | None = None
    max_tokens: int = 256
    repetition_penalty: float = 1.0
    ignore_eos: bool = False            # generate exactly max_tokens (benchmarks)
    seeds: list[int] | None = None      # one seed per completion: sampling is independent of batch layout


@dataclass
class Rollout:
    """Completions for a batch of unique prompts; ``prompt_index[n]`` is completion n's prompt."""

    prompt_index: torch.Tensor           # (N,)
    completion_ids: torch.Tensor         # (N, T), right-padded
    completion_mask: torch.Tensor        # (N, T), 1 up to and including the end token
    is_truncated: torch.Tensor           # (N,) bool: no end token within max_tokens
    texts: list[str] = field(default_factory=list)
    extras: dict = field(default_factory=dict)   # backend-specific outputs (e.g. generated_images)


class RolloutBackend:
    """Interface: ``generate(model, prompts, prompt_index, sampling) -> Rollout``."""

    name = "base"
    extra_columns: tuple[str, ...] = ()   # keywords its rollouts add to every reward call (``Rollout.extras``)
    adapters: tuple[str, ...] | None = None   # model adapters it can drive (None: any)

    def __init__(self, adapter, accelerator=None, **options):
        self.adapter = adapter
        self.accelerator = accelerator
        self.options = options

    def generate(self, model, prompts, prompt_index: torch.Tensor, sampling: SamplingParams) -> Rollout:
        raise NotImplementedError

    def sync_weights(self, model) -> None:
        """Push updated policy weights to the engine (no-op for in-process HF generation)."""
