"""Calling reward plugins: keyword arguments per DESIGN.md, every failure contained per call and counted.

A reward call fails when it raises (any exception, ``SystemExit`` included; ``KeyboardInterrupt``
still stops the run), runs past its deadline, or returns something unusable (wrong length, not
numbers). A failed call, and a non-finite value, count as "no opinion" (NaN) and in
``rewards/NAME/failures``; the run goes on.

The deadline (``reward_timeout``): each call runs in a worker thread and the runner stops waiting
after that many seconds. Python cannot kill a thread, so a hung call keeps its thread (a daemon,
which does not block exit); until it returns, further calls of that reward fail at once instead
of piling up threads. A reward with its own deadline (``accuracy``: per sample, in worker
processes that can be killed) keeps it; the runner's deadline bounds the whole call on top.
"""

from __future__ import annotations

import difflib
import inspect
import logging
import math
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field

from mmr1.registry import RegistryError, did_you_mean

log = logging.getLogger("mmr1.rewards")

DEFAULT_TIMEOUT_S = 120.0
#: Keyword arguments every reward call receives besides the dataset columns.
PASSED_COLUMNS = ("completions", "prompts", "images", "completion_ids")


class RewardError(ValueError):
    """A reward returned something unusable (wrong length, wrong type)."""


class RewardTimeout(RuntimeError):
    """A reward call ran past ``reward_timeout``."""


class RewardOptionError(RegistryError):
    """A reward option does not fit the reward's signature, or would replace a column."""


@dataclass
class RewardFunction:
    name: str
    fn: object
    options: dict = field(default_factory=dict)

    def __call__(self, completions, **kwargs):
        shadowed = sorted(set(self.options) & set(kwargs))
        if shadowed:
            raise RewardOptionError(_shadow_message(self.name, shadowed[0]))
        return self.fn(completions, **kwargs, **self.options)


def _shadow_message(name: str, option: str) -> str:
    return (f"reward_kwargs: option {option!r} of reward {name!r} has the name of a column passed to the "
            f"reward; options never replace columns: rename the column in the data, or drop the option")


def _typo_of(option: str, named: list[str]) -> bool:
    """A near-certain misspelling of a named option (``timout`` for ``timeout``)."""
    return bool(difflib.get_close_matches(option, named, n=1, cutoff=0.8))


def _option_problems(name: str, obj, options: dict, columns) -> list[str]:
    """Options checked against the signature (``__init__`` for a class) and the columns passed."""
    is_class = inspect.isclass(obj)
    try:
        params = inspect.signature(obj).parameters
    except (TypeError, ValueError):      # a builtin or C callable: nothing to check against
        return []
    kinds = {p.kind for p in params.values()}
    named = [n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if not is_class:
        named = named[1:]                # the completions
    takes_kwargs = inspect.Parameter.VAR_KEYWORD in kinds
    problems = []
    for option in options:
        where = f"reward_kwargs: reward {name!r} option {option!r}"
        if not is_class and (option in PASSED_COLUMNS or option in columns):
            problems.append(_shadow_message(name, option))
        elif option not in named and not takes_kwargs:
            problems.append(f"{where} is not an option of this reward (options: {', '.join(named) or 'none'})."
                            f"{did_you_mean(option, named)}")
        elif option not in named and _typo_of(option, named):
            problems.append(f"{where} is not one of its named options ({', '.join(named)})."
                            f"{did_you_mean(option, named)}")
    return problems


def build_rewards(names: list[str], reward_kwargs: dict | None = None, columns=()) -> list[RewardFunction]:
    """Resolve reward names through the registry; classes are instantiated once with their options.

    Every option is checked first (all problems in one RewardOptionError): it must be a parameter of
    the reward, or, for a reward taking ``**kwargs``, not a near-miss of one; and it may not have the
    name of a column the reward receives (``columns``: the dataset's, plus those every call gets).
    """
    from mmr1.plugins import get_reward

    reward_kwargs = reward_kwargs or {}
    resolved = [(name, get_reward(name), dict(reward_kwargs.get(name) or {})) for name in names]
    problems = [p for name, obj, options in resolved for p in _option_problems(name, obj, options, set(columns))]
    if problems:
        raise RewardOptionError("\n".join(problems))
    built = []
    for name, obj, options in resolved:
        if inspect.isclass(obj):
            try:
                built.append(RewardFunction(name, obj(**options)))
            except TypeError as exc:
                raise RegistryError(f"reward {name!r} rejected its reward_kwargs {options}: {exc}") from exc
        else:
            built.append(RewardFunction(name, obj, options))
    return built


def check_option_columns(rewards: list[RewardFunction], columns) -> None:
    """Raise RewardOptionError if an option of a reward has the name of a dataset column."""
    problems = [_shadow_message(r.name, o) for r in rewards for o in r.options if o in set(columns)]
    if problems:
        raise RewardOptionError("\n".join(problems))


def dataset_columns(rows) -> set[str]:
    """The column names rewards receive from these rows (a dataset, or one rollout's rows)."""
    return {k for row in rows for k in row if k not in ("image", "_source")}


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


def _thread_state():
    """The calling thread's torch state a reward may rely on (grad mode, current CUDA device)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return lambda: None
    grad = torch.is_grad_enabled()
    device = torch.cuda.current_device() if torch.cuda.is_available() and torch.cuda.is_initialized() else None

    def apply():
        torch.set_grad_enabled(grad)
        if device is not None:
            torch.cuda.set_device(device)

    return apply


class RewardRunner:
    """Calls every reward on a batch; returns an (N, R) table with NaN for None or a failed call.

    ``timeout``: seconds per call (None or 0: call on this thread, no deadline). After a call,
    ``last_all_failed`` says whether every reward failed on every completion (nothing to learn from).
    """

    def __init__(self, rewards: list[RewardFunction], timeout: float | None = DEFAULT_TIMEOUT_S):
        self.rewards = rewards
        self.timeout = timeout or None
        self.failures: Counter = Counter()
        self.last_all_failed = False
        self._warned: set[tuple[str, str]] = set()
        self._hung: dict[str, threading.Thread] = {}

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.rewards]

    def __call__(self, completions: list[str], **columns) -> list[list[float]]:
        n = len(completions)
        table = [[math.nan] * len(self.rewards) for _ in range(n)]
        failed_cells = 0
        for j, reward in enumerate(self.rewards):
            values, failed = self._score(reward, completions, columns)
            failed_cells += failed
            for i, v in enumerate(values):
                table[i][j] = math.nan if v is None else v
        self.last_all_failed = n > 0 and failed_cells == n * len(self.rewards)
        return table

    def _score(self, reward: RewardFunction, completions, columns) -> tuple[list, int]:
        """(values, None for no opinion; how many completions this call failed on)."""
        n = len(completions)
        try:
            values = self._check(reward.name, self._invoke(reward, completions, columns), n)
        except (KeyboardInterrupt, RewardOptionError):
            raise
        except BaseException as exc:  # noqa: BLE001 - SystemExit too: contained per call, counted, logged
            self._fail(reward.name, type(exc).__name__, f"{type(exc).__name__}: {exc}")
            return [None] * n, n
        bad = [i for i, v in enumerate(values) if v is not None and not math.isfinite(v)]
        if bad:
            self._fail(reward.name, "nonfinite", f"returned {len(bad)} non-finite value(s) "
                                                 f"(first {values[bad[0]]!r} for completion {bad[0]})")
            values = [None if v is not None and not math.isfinite(v) else v for v in values]
        return values, len(bad)

    def _invoke(self, reward: RewardFunction, completions, columns):
        if self.timeout is None:
            return reward(completions, **columns)
        earlier = self._hung.get(reward.name)
        if earlier is not None and earlier.is_alive():
            raise RewardTimeout(f"an earlier call is still running past the {self.timeout:g} s reward_timeout")
        box, restore = {}, _thread_state()

        def run():
            restore()
            try:
                box["value"] = reward(completions, **columns)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                box["error"] = exc

        worker = threading.Thread(target=run, name=f"mmr1-reward-{reward.name}", daemon=True)
        worker.start()
        worker.join(self.timeout)
        if worker.is_alive():
            self._hung[reward.name] = worker
            raise RewardTimeout(f"the call ran past reward_timeout ({self.timeout:g} s); its thread is left "
                                f"running (it cannot be killed) and further calls fail until it returns")
        if "error" in box:
            raise box["error"]
        return box["value"]

    def _fail(self, name: str, kind: str, detail: str) -> None:
        self.failures[name] += 1
        if (name, kind) not in self._warned:
            self._warned.add((name, kind))
            log.warning("reward %r %s (this call counts as 'no opinion'; failures are counted in "
                        "rewards/%s/failures)", name, detail if kind == "nonfinite" else f"failed: {detail}", name)

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
        try:
            return [None if v is None else float(v) for v in values]
        except (TypeError, ValueError) as exc:
            raise RewardError(f"reward {name!r} returned a value that is not a number: {exc}") from None
