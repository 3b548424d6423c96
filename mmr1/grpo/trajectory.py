"""What one rollout hands to the update: this process's completions, typed."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch


@dataclass
class Trajectory:
    """This process's completions of one rollout, in the order the micro-steps consume them.

    ``prompts`` holds each unique prompt once (the adapter's encoded batch); completion ``n`` answers
    ``prompts[prompt_index[n]]``. Log-probs are per completion token at the rollout's temperature;
    ``old_logp`` is there when the update needs the sampling policy's (several passes or several
    optimizer steps per rollout), ``ref_logp`` when a KL term needs the reference model's.
    """

    prompts: object                    # the adapter's PromptBatch
    prompt_index: torch.Tensor         # (N,)
    completion_ids: torch.Tensor       # (N, T), right-padded
    completion_mask: torch.Tensor      # (N, T), the tokens the loss counts
    advantages: torch.Tensor           # (N,)
    temperature: float
    old_logp: torch.Tensor | None = None   # (N, T)
    ref_logp: torch.Tensor | None = None   # (N, T)

    def __len__(self) -> int:
        return self.completion_ids.shape[0]

    def micro(self, rows: slice) -> Trajectory:
        """The completions in ``rows`` (the prompt batch stays whole: ``prompt_index`` points into it)."""
        def cut(t):
            return None if t is None else t[rows]

        return replace(self, prompt_index=self.prompt_index[rows], completion_ids=self.completion_ids[rows],
                       completion_mask=self.completion_mask[rows], advantages=self.advantages[rows],
                       old_logp=cut(self.old_logp), ref_logp=cut(self.ref_logp))
