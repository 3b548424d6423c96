"""Token sampling with one random stream per completion.

Each completion draws its noise from its own generator (seeded from the run seed, the step and the
completion's global index), so what a completion samples does not depend on how completions are
batched or spread over processes: one process and two give the same rollouts, and a resumed run
samples what the uninterrupted run would have.
"""

from __future__ import annotations

import torch


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float = 1.0) -> torch.Tensor:
    """Set logits outside top-k / nucleus top-p to -inf (rows independent)."""
    if top_k is not None and 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = sorted_logits.softmax(-1)
        # drop a token when the mass strictly before it already reaches top_p (keeps at least one)
        drop_sorted = (probs.cumsum(-1) - probs) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def apply_repetition_penalty(logits: torch.Tensor, previous: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL-style penalty on tokens this completion already produced (``previous``: (N, t)).

    Positive logits are divided by ``penalty``, negative ones multiplied, as in transformers; only the
    completion's own tokens count (the prompt's are not penalised).
    """
    seen = torch.gather(logits, 1, previous)
    seen = torch.where(seen > 0, seen / penalty, seen * penalty)
    return logits.scatter(1, previous, seen)


def make_generators(seeds: list[int], device) -> list[torch.Generator]:
    gens = []
    for seed in seeds:
        g = torch.Generator(device=device)
        g.manual_seed(int(seed) % (2**63 - 1))
        gens.append(g)
    return gens


def sample_tokens(logits: torch.Tensor, generators: list[torch.Generator], temperature: float = 1.0,
                  top_k: int | None = None, top_p: float = 1.0) -> torch.Tensor:
    """One token per row of ``logits`` (N, V): Gumbel-max over filtered ``logits / temperature``."""
    if temperature <= 0:
        return logits.argmax(-1)
    scores = filter_logits(logits.float() / temperature, top_k, top_p)
    vocab = scores.shape[-1]
    uniform = torch.stack([torch.rand(vocab, generator=g, device=scores.device) for g in generators])
    gumbel = -torch.log(-torch.log(uniform.clamp_(min=1e-20, max=1.0 - 1e-7)))
    return (scores + gumbel).argmax(-1)


def completion_seed(run_seed: int, step: int, index: int) -> int:
    """A seed for completion ``index`` of rollout ``step`` (stable across process layouts)."""
    return (run_seed * 1_000_003 + step) * 1_000_033 + index
