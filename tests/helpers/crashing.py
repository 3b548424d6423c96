"""Stop a GRPO training run part-way through, as a crash or a kill would (tests only)."""

import pytest


class Crash(Exception):
    """Raised in place of a rollout."""


def train_until_crash(trainer, monkeypatch, after_step: int) -> None:
    """``trainer.train()``, crashing in the first rollout after step ``after_step`` (what was saved stays)."""
    rollout = trainer.rollout

    def crash_after_step():
        if trainer.global_step == after_step:
            raise Crash
        return rollout()

    monkeypatch.setattr(trainer, "rollout", crash_after_step)
    with pytest.raises(Crash):
        trainer.train()
