"""Calling reward plugins: keyword arguments per DESIGN.md, errors contained per call and counted."""

from __future__ import annotations

import inspect
import logging
import math
from collections import Counter
from dataclasses import dataclass, field

from mmr1.registry import RegistryError

log = logging.getLogger("mmr1.rewards")


class RewardError(ValueError):
    """A reward returned something unusable (wrong length, wrong type)."""


@dataclass
class RewardFunction:
    name: str
    fn: object
    options: dict = field(default_factory=dict)

    def __call__(self, completions, **kwargs):
        return self.fn(completions, **{**kwargs, **self.options})


def build_rewards(names: list[str], reward_kwargs: dict | None = None) -> list[RewardFunction]:
    """Resolve reward names through the registry; classes are instantiated once with their options."""
    from mmr1.plugins import get_reward

    reward_kwargs = reward_kwargs or {}
    built = []
    for name in names:
        obj = get_reward(name)
        options = dict(reward_kwargs.get(name) or {})
        if inspect.isclass(obj):
            try:
                built.append(RewardFunction(name, obj(**options)))
            except TypeError as exc:
                raise RegistryError(f"reward {name!r} rejected its reward_kwargs {options}: {exc}") from exc
        else:
            built.append(RewardFunction(name, obj, options))
    return built


def from_trl(fn):
    """Adapt a reward written for trl's GRPOTrainer: ``fn(prompts, completions, **kwargs)``.

    trl passes conversational completions as ``[{"role": "assistant", "content": text}]`` lists when the
    dataset is conversational; mmr1 passes plain strings, which is what trl passes for standard
    (non-conversational) datasets, so most trl rewards work unchanged through this wrapper.
    """

    def wrapped(completions, prompts=None, **kwargs):
        return fn(prompts=prompts, completions=completions, **kwargs)

    wrapped.__name__ = getattr(fn, "__name__", "trl_reward")
    wrapped.__doc__ = fn.__doc__
    return wrapped


class RewardRunner:
    """Calls every reward on a batch; returns an (N, R) table with NaN for None or a failed call."""

    def __init__(self, rewards: list[RewardFunction]):
        self.rewards = rewards
        self.failures: Counter = Counter()
        self._warned: set[str] = set()

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.rewards]

    def __call__(self, completions: list[str], **columns) -> list[list[float]]:
        table = [[math.nan] * len(self.rewards) for _ in completions]
        for j, reward in enumerate(self.rewards):
            try:
                values = reward(completions, **columns)
                values = self._check(reward.name, values, len(completions))
            except RewardError:
                raise
            except Exception as exc:  # noqa: BLE001 - contained per call, counted, logged
                self.failures[reward.name] += 1
                if reward.name not in self._warned:
                    self._warned.add(reward.name)
                    log.warning("reward %r raised %s: %s (this call counts as 'no opinion'; failures are "
                                "counted in rewards/%s/failures)", reward.name, type(exc).__name__, exc, reward.name)
                continue
            for i, v in enumerate(values):
                table[i][j] = math.nan if v is None else float(v)
        return table

    @staticmethod
    def _check(name, values, n):
        if values is None or isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
            raise RewardError(f"reward {name!r} must return a list of {n} floats or None, got {type(values).__name__}")
        values = list(values)
        if len(values) != n:
            raise RewardError(f"reward {name!r} returned {len(values)} values for {n} completions")
        for v in values:
            if v is not None and not isinstance(v, (int, float)) and not hasattr(v, "item"):
                raise RewardError(f"reward {name!r} returned {v!r} ({type(v).__name__}); expected float or None")
        return [None if v is None else float(v) for v in values]
