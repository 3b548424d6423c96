"""Generations-per-device batching (MMR1's mini-batch, trl's semantics).

``per_device_train_batch_size`` counts completions. One rollout serves ``steps_per_generation``
micro-steps on every process; its completions are laid out prompt-major (prompt 0's G completions,
then prompt 1's, ...), and micro-step ``s`` of process ``r`` takes block ``s * num_processes + r``.
A prompt's group may therefore span processes and micro-steps; advantages are computed over the
gathered global batch, so the layout does not change the result.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


class BatchConfigError(ValueError):
    """Batch settings that cannot work; the message spells out the arithmetic."""


@dataclass(frozen=True)
class BatchPlan:
    num_processes: int
    per_device: int
    gradient_accumulation_steps: int
    steps_per_generation: int
    num_generations: int
    num_iterations: int

    @property
    def completions_per_rollout(self) -> int:
        return self.num_processes * self.per_device * self.steps_per_generation

    @property
    def prompts_per_rollout(self) -> int:
        return self.completions_per_rollout // self.num_generations

    @property
    def optimizer_steps_per_rollout(self) -> int:
        return self.steps_per_generation * self.num_iterations // self.gradient_accumulation_steps

    def local_indices(self, rank: int, micro_step: int) -> range:
        """Global completion indices (within a rollout) handled by ``rank`` at ``micro_step``."""
        block = micro_step * self.num_processes + rank
        return range(block * self.per_device, (block + 1) * self.per_device)

    def rank_indices(self, rank: int) -> list[int]:
        """All completions ``rank`` generates and trains on in one rollout, micro-step by micro-step."""
        return [i for s in range(self.steps_per_generation) for i in self.local_indices(rank, s)]


def plan_batches(num_processes: int, per_device_train_batch_size: int, num_generations: int,
                 gradient_accumulation_steps: int = 1, steps_per_generation: int | None = None,
                 num_iterations: int = 1) -> BatchPlan:
    """Check the batch arithmetic and return the plan; refuse impossible settings with the numbers."""
    spg = steps_per_generation or gradient_accumulation_steps
    plan = BatchPlan(num_processes, per_device_train_batch_size, gradient_accumulation_steps, spg,
                     num_generations, num_iterations)
    total = plan.completions_per_rollout
    if total % num_generations:
        fits = [b for b in range(1, 4 * num_generations + 1) if (num_processes * b * spg) % num_generations == 0]
        raise BatchConfigError(
            f"num_processes ({num_processes}) x per_device_train_batch_size ({per_device_train_batch_size}) x "
            f"steps_per_generation ({spg}) = {total} completions per rollout, which is not divisible by "
            f"num_generations ({num_generations}): every prompt needs all its {num_generations} completions in "
            f"one rollout. With {num_processes} process(es), per_device_train_batch_size could be "
            f"{', '.join(map(str, fits[:4]))}; or change num_generations or steps_per_generation.")
    if spg % gradient_accumulation_steps:
        raise BatchConfigError(
            f"steps_per_generation ({spg}) must be a multiple of gradient_accumulation_steps "
            f"({gradient_accumulation_steps}) so that optimizer steps align with rollouts")
    return plan


class PromptSampler:
    """Seeded epoch-wise shuffling over row indices; its state is a single count (for resume)."""

    def __init__(self, num_rows: int, seed: int):
        if num_rows < 1:
            raise ValueError("the training set is empty")
        self.num_rows, self.seed = num_rows, seed
        self.consumed = 0
        self._epoch, self._order = -1, []

    def _order_for(self, epoch: int) -> list[int]:
        if epoch != self._epoch:
            order = list(range(self.num_rows))
            random.Random(self.seed * 100_003 + epoch).shuffle(order)
            self._epoch, self._order = epoch, order
        return self._order

    def take(self, k: int) -> list[int]:
        out = []
        for _ in range(k):
            epoch, pos = divmod(self.consumed, self.num_rows)
            out.append(self._order_for(epoch)[pos])
            self.consumed += 1
        return out

    @property
    def epoch(self) -> float:
        return self.consumed / self.num_rows
