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

Async rewards (``async def``, or a class whose ``__call__`` is one) of one call run concurrently on one
event loop in one worker thread, while the other rewards run; each has the same deadline, and a
failure is contained per reward as for the others.

Besides the columns, a reward whose signature names them or takes ``**kwargs`` receives
``trainer_state`` (:class:`TrainerState`; None outside training), ``log_extra(column, values)`` and
``log_metric(name, value)`` (trl's names), and, for image models, ``seen_image_sizes`` / ``box_frame``
(see docs/rewards.md). After a call, :attr:`RewardRunner.extra` holds the logged columns and
:meth:`RewardRunner.logged_metrics` the metrics.

:func:`from_trl` and :func:`from_easyr1` adapt rewards written for trl and EasyR1; :func:`build_rewards` also takes
them by file (``trl:PATH.py:FUNCTION``, ``easyr1:PATH.py:FUNCTION``, see docs/rewards.md).
"""

from __future__ import annotations

import asyncio
import difflib
import inspect
import logging
import math
import numbers
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from mmr1.registry import RegistryError, did_you_mean

log = logging.getLogger("mmr1.rewards")

DEFAULT_TIMEOUT_S = 120.0
#: Keyword arguments every reward call receives besides the dataset columns.
PASSED_COLUMNS = ("completions", "prompts", "images", "completion_ids")
#: Keyword arguments passed only to rewards whose signature names them or takes ``**kwargs``.
OPTIONAL_KEYWORDS = ("trainer_state", "log_extra", "log_metric", "seen_image_sizes", "box_frame")
#: Seconds an async batch is waited for past ``reward_timeout`` (its own deadlines cancel it first).
ASYNC_GRACE_S = 1.0


class RewardError(ValueError):
    """A reward returned something unusable (wrong length, wrong type)."""


class RewardTimeout(RuntimeError):
    """A reward call ran past ``reward_timeout``."""


class RewardOptionError(RegistryError):
    """A reward option does not fit the reward's signature, or would replace a column."""


@dataclass(frozen=True)
class TrainerState:
    """Where training stands, under the attribute names of trl's ``TrainerState`` (a snapshot per call)."""

    global_step: int = 0                 # optimizer steps taken so far
    max_steps: int = 0                   # steps the run will take
    epoch: float = 0.0                   # passes over the data so far (fractional)
    num_train_epochs: float = 0.0
    rollout_step: int = 0                # rollouts so far (mmr1's own)
    is_world_process_zero: bool = True


@dataclass
class RewardFunction:
    """A built reward: ``name`` in logs and metrics, ``entry`` as written in ``rewards:`` (the key of its
    ``reward_kwargs``; the name itself for a registered reward)."""

    name: str
    fn: object
    options: dict = field(default_factory=dict)
    entry: str = ""

    def __post_init__(self):
        self.entry = self.entry or self.name

    def __call__(self, completions, **kwargs):
        shadowed = sorted(set(self.options) & set(kwargs))
        if shadowed:
            raise RewardOptionError(_shadow_message(self.entry, shadowed[0]))
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
        if not is_class and (option in PASSED_COLUMNS or option in OPTIONAL_KEYWORDS or option in columns):
            problems.append(_shadow_message(name, option))
        else:
            problems += _unknown_options(name, {option: None}, named, takes_kwargs)
    return problems


def _unknown_options(name: str, options: dict, named: list[str], takes_kwargs: bool) -> list[str]:
    """Options that are no parameter (without ``**kwargs``), or a near miss of one (with it)."""
    problems = []
    for option in options:
        where = f"reward_kwargs: reward {name!r} option {option!r}"
        if option not in named and not takes_kwargs:
            problems.append(f"{where} is not an option of this reward (options: {', '.join(named) or 'none'})."
                            f"{did_you_mean(option, named)}")
        elif option not in named and _typo_of(option, named):
            problems.append(f"{where} is not one of its named options ({', '.join(named)})."
                            f"{did_you_mean(option, named)}")
    return problems


def _easyr1_option_problems(name: str, wrapped, options: dict) -> list[str]:
    """EasyR1 options go to ``compute_score`` after its data parameters: unknown ones, and required ones missing."""
    try:
        params = list(inspect.signature(wrapped.easyr1_reward).parameters.values())
    except (TypeError, ValueError):
        return []
    params = params[2 if wrapped.easyr1_form == "legacy" else 1:]
    named = [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    problems = _unknown_options(name, options, named, any(p.kind is p.VAR_KEYWORD for p in params))
    required = [p.name for p in params if p.default is p.empty and p.name not in options
                and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    problems += [f"reward_kwargs: reward {name!r} needs option {option!r} (its function has no default for it); "
                 f"set reward_kwargs: {{{name!r}: {{{option}: ...}}}}" for option in required]
    return problems


def name_problems(entries) -> list[str]:
    """Entries of ``rewards:`` that would log under the same name (``rewards/NAME``), e.g. two EasyR1 files
    that both define ``compute_score``."""
    from mmr1.plugins import reward_file, reward_name

    by_name: dict[str, list[str]] = {}
    for entry in entries:
        by_name.setdefault(reward_name(entry), []).append(entry)
    problems = []
    for name, same in by_name.items():
        if len(same) > 1:
            renamable = [e for e in same if _quiet(reward_file, e) is not None] or same
            problems.append(f"rewards {' and '.join(map(repr, same))} would all log as {name!r} (rewards/{name}); "
                            f"give one a name of its own, e.g. '{renamable[-1].partition(' as ')[0]} as "
                            f"{name}_2'")
    return problems


def _quiet(fn, *args):
    try:
        return fn(*args)
    except RegistryError:
        return None


def build_rewards(names: list[str], reward_kwargs: dict | None = None, columns=(),
                  base_dir=None) -> list[RewardFunction]:
    """Resolve ``rewards:`` entries: registered names, or functions of files (``PATH.py:FUNCTION``,
    ``trl:...``, ``easyr1:...``; relative paths from ``base_dir``, then the launch folder). Classes are
    instantiated once with their options.

    Every option is checked first (all problems in one RewardOptionError): it must be a parameter of
    the reward, or, for a reward taking ``**kwargs``, not a near-miss of one; and it may not have the
    name of a column the reward receives (``columns``: the dataset's, plus those every call gets).
    Two entries that would log under one name are refused.
    """
    from mmr1.plugins import get_reward, reward_name

    reward_kwargs = reward_kwargs or {}
    clashes = name_problems(names)
    if clashes:
        raise RegistryError("\n".join(clashes))
    resolved = [(entry, get_reward(entry, base_dir), dict(reward_kwargs.get(entry) or {})) for entry in names]
    problems = [p for entry, obj, options in resolved for p in (
        _easyr1_option_problems(entry, obj, options) if hasattr(obj, "easyr1_reward")
        else _option_problems(entry, obj, options, set(columns)))]
    if problems:
        raise RewardOptionError("\n".join(problems))
    built = []
    for entry, obj, options in resolved:
        name = reward_name(entry)
        if hasattr(obj, "easyr1_reward"):       # options and the logging name are bound into the call
            obj = from_easyr1(obj.easyr1_reward, obj.easyr1_form, name=name, options=options)
            built.append(RewardFunction(name, obj, {}, entry))
        elif inspect.isclass(obj):
            try:
                built.append(RewardFunction(name, obj(**options), {}, entry))
            except TypeError as exc:
                raise RegistryError(f"reward {entry!r} rejected its reward_kwargs {options}: {exc}") from exc
        else:
            built.append(RewardFunction(name, obj, options, entry))
    return built


def check_option_columns(rewards: list[RewardFunction], columns) -> None:
    """Raise RewardOptionError if an option of a reward has the name of a dataset column."""
    problems = [_shadow_message(r.entry, o) for r in rewards for o in r.options if o in set(columns)]
    if problems:
        raise RewardOptionError("\n".join(problems))


def dataset_columns(rows) -> set[str]:
    """The column names rewards receive from these rows (a dataset, or one rollout's rows)."""
    return {k for row in rows for k in row if k not in ("image", "_source")}


def reward_columns(adapter, rows, prompts, messages, images, prompt_of, out, keys=None) -> dict:
    """The keywords of a reward call, the same in training and evaluation.

    ``rows``, ``messages``, ``images`` and the encoded ``prompts`` are per prompt; completion ``i`` (of the
    rollout output ``out``) answers prompt ``prompt_of[i]``. Each completion gets its prompt's messages,
    images and data columns (``keys``, default :func:`dataset_columns` of ``rows``), what the adapter
    derives from the encoded prompts (``seen_image_sizes``, ``box_frame``), what the backend adds
    (``out.extras``: ``generated_images``) and its own ``completion_ids``."""
    columns: dict = {"prompts": [messages[p] for p in prompt_of], "images": [images[p] for p in prompt_of]}
    for k in sorted(dataset_columns(rows) if keys is None else keys):
        columns[k] = [rows[p].get(k) for p in prompt_of]
    for k, per_prompt in adapter.reward_columns(prompts).items():
        columns[k] = [per_prompt[p] for p in prompt_of]
    columns.update(out.extras)
    columns["completion_ids"] = [ids[m.bool()].tolist() for ids, m in zip(out.completion_ids, out.completion_mask)]
    return columns


def is_async(fn) -> bool:
    """An ``async def`` reward (or a callable object whose ``__call__`` is one)."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))


def _trl_arguments(completions, prompts, kwargs) -> dict:
    """What trl passes: the row's own ``prompt`` column as ``prompts`` where present (trl passes the
    dataset's prompt), and completions as ``[{"role": "assistant", "content": text}]`` lists unless every
    prompt is a plain string (trl's conversational rule)."""
    own = kwargs.pop("prompt", None)
    kwargs.pop("completion", None)                    # trl never passes these two as columns
    if own is not None:
        own = list(own)
        prompts = own if prompts is None else [o if o is not None else p for o, p in zip(own, prompts)]
    if prompts is not None and not all(isinstance(p, str) for p in prompts):
        completions = [[{"role": "assistant", "content": c}] if isinstance(c, str) else c for c in completions]
    return {"prompts": prompts, "completions": completions, **kwargs}


def from_trl(fn):
    """Adapt a reward written for trl's GRPOTrainer: ``fn(prompts=..., completions=..., completion_ids=...,
    trainer_state=..., log_extra=..., log_metric=..., **columns)``, sync or ``async def``.

    ``prompts`` is the row's ``prompt`` column when the data has one, else mmr1's prompt messages.
    Completions are ``[{"role": "assistant", "content": text}]`` lists when the prompts are
    conversational (message lists: always, unless every row carries a string ``prompt``), plain strings
    otherwise; so ``completion[0]["content"]`` works as under trl.
    """
    if is_async(fn):
        async def wrapped(completions, prompts=None, **kwargs):
            return await fn(**_trl_arguments(completions, prompts, kwargs))
    else:
        def wrapped(completions, prompts=None, **kwargs):
            return fn(**_trl_arguments(completions, prompts, kwargs))

    wrapped.__name__ = wrapped.__qualname__ = getattr(fn, "__name__", "trl_reward")
    wrapped.__doc__ = fn.__doc__
    wrapped.trl_reward = fn
    return wrapped


#: How EasyR1 calls ``compute_score``: a list of inputs, one input, or (response, ground_truth).
EASYR1_FORMS = ("batch", "sequential", "legacy")


def _easyr1_form(fn) -> str:
    """EasyR1's calling convention, read from the signature (see :func:`from_easyr1`)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return "batch"
    required = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
    if not required:
        raise ValueError(f"cannot tell how EasyR1 calls {getattr(fn, '__name__', fn)!r}: its first parameter should "
                         f"be reward_inputs (a list of dicts), reward_input (one dict), or (predict, ground_truth)")
    first = required[0]
    note = first.annotation if isinstance(first.annotation, str) else getattr(first.annotation, "__name__", "")
    base = note.split("[")[0].split(".")[-1].lower()       # "list[dict[str, Any]]" -> "list"
    if base in ("list", "sequence") or first.name == "reward_inputs":
        return "batch"
    if base in ("dict", "mapping", "rewardinput") or first.name == "reward_input":
        return "sequential"
    return "legacy" if base == "str" or len(required) >= 2 else "batch"


def _easyr1_truth(value):
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def from_easyr1(fn, form: str | None = None, *, name: str | None = None, options: dict | None = None):
    """Adapt an EasyR1 (verl) reward function. The form is read from the signature unless given:

    - ``batch``: ``compute_score(reward_inputs: list[dict], **options) -> list[dict]`` (the first parameter
      annotated as a list or named ``reward_inputs``; also the fallback);
    - ``sequential``: ``compute_score(reward_input: dict, **options) -> dict`` (annotated as a dict or named
      ``reward_input``);
    - ``legacy``: ``compute_score(predict: str, ground_truth: str, **options) -> dict | float`` (older EasyR1:
      otherwise, the first parameter annotated ``str`` or two required positional parameters).

    Each input is ``{"response": completion, "response_length": len(completion_ids) (None without ids),
    "ground_truth": solution}`` (numbers as text). The reward is each score's ``overall``; its other numeric
    keys are logged through ``log_metric`` as ``rewards/NAME/KEY`` means (``name``: default the function's).
    ``options`` (EasyR1's ``reward_function_kwargs``) are passed to every call; :func:`build_rewards` binds
    them from ``reward_kwargs``.
    """
    form = form or _easyr1_form(fn)
    if form not in EASYR1_FORMS:
        raise ValueError(f"EasyR1 form {form!r} is none of {', '.join(EASYR1_FORMS)}")
    options = dict(options or {})
    label = name or getattr(fn, "__name__", "easyr1_reward")

    def wrapped(completions, solution=None, completion_ids=None, log_metric=None, **columns):
        n = len(completions)
        truths = [solution] * n if solution is None or isinstance(solution, (str, int, float)) else list(solution)
        ids = [None] * n if completion_ids is None else list(completion_ids)
        inputs = [{"response": c, "response_length": None if i is None else len(i), "ground_truth": _easyr1_truth(t)}
                  for c, i, t in zip(completions, ids, truths)]
        if form == "batch":
            scores = fn(inputs, **options)
        elif form == "sequential":
            scores = [fn(x, **options) for x in inputs]
        else:
            scores = [fn(x["response"], x["ground_truth"], **options) for x in inputs]
        values, parts = [], {}
        for i, score in enumerate(scores if isinstance(scores, (list, tuple)) else []):
            if not isinstance(score, dict):
                values.append(score)                  # a bare number (the oldest EasyR1 rewards)
                continue
            if "overall" not in score:
                raise RewardError(f"EasyR1 reward {label!r}: score {i} has no 'overall' key (keys: "
                                  f"{', '.join(map(str, score)) or 'none'}); return {{'overall': reward, ...}}")
            values.append(score["overall"])
            for key, v in score.items():
                if key != "overall" and isinstance(v, numbers.Real) and math.isfinite(v):
                    parts.setdefault(key, []).append(float(v))
        if log_metric is not None:
            for key, vs in parts.items():
                log_metric(f"rewards/{label}/{key}", sum(vs) / len(vs))
        return values if isinstance(scores, (list, tuple)) else scores

    wrapped.__name__ = wrapped.__qualname__ = getattr(fn, "__name__", "easyr1_reward")
    wrapped.__doc__ = fn.__doc__
    wrapped.easyr1_reward, wrapped.easyr1_form = fn, form
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


def _takes(fn) -> set[str] | None:
    """The keyword names ``fn`` accepts; None when it takes ``**kwargs`` (or cannot be inspected)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


async def _awaited(awaitable):
    return await awaitable


class _AsyncBatch:
    """The async rewards of one runner call, gathered on one event loop in one worker thread."""

    def __init__(self, calls: dict, timeout: float | None):
        self.timeout, self.results, self.jobs, self.loop = timeout, {}, list(calls), None
        self.started = time.monotonic()
        self.thread = threading.Thread(target=self._run, args=(calls, _thread_state()), name="mmr1-reward-async",
                                       daemon=True)
        self.thread.start()

    def _run(self, calls, restore) -> None:
        restore()
        self.loop = loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._all(calls))
        except BaseException as exc:  # noqa: BLE001 - the loop itself failed: every reward still waiting gets it
            for j in calls:
                self.results.setdefault(j, (False, exc))
        finally:
            loop.close()

    async def _all(self, calls) -> None:
        await asyncio.gather(*(self._one(j, make) for j, make in calls.items()))

    @staticmethod
    async def _named(j, awaitable):
        asyncio.current_task().set_name(f"mmr1-reward-{j}")   # the task that runs reward j's code
        return await awaitable

    async def _one(self, j, make) -> None:
        try:
            value = make()
            if inspect.isawaitable(value):
                value = asyncio.ensure_future(self._named(j, value))
                value = await (value if self.timeout is None else asyncio.wait_for(value, self.timeout))
            self.results[j] = (True, value)
        except asyncio.TimeoutError:
            self.results[j] = (False, RewardTimeout(f"the call ran past reward_timeout ({self.timeout:g} s) and was "
                                                    f"cancelled"))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            self.results[j] = (False, exc)

    def wait(self) -> bool:
        """Wait for the batch (at most its deadline plus a grace); True if its loop is still busy."""
        left = None if self.timeout is None else self.started + self.timeout + ASYNC_GRACE_S - time.monotonic()
        self.thread.join(None if left is None else max(0.0, left))
        return self.thread.is_alive()

    def blocking(self) -> int | None:
        """The job whose code holds the (stuck) loop, if any."""
        task = asyncio.current_task(self.loop) if self.loop is not None and not self.loop.is_closed() else None
        name = task.get_name() if task is not None else ""
        return int(name.rsplit("-", 1)[1]) if name.startswith("mmr1-reward-") else None

    def result(self, j, names):
        ok, value = self.results.get(j, (False, None))
        if ok:
            return value
        if value is not None:
            raise value
        culprit = self.blocking()
        if culprit == j:
            raise RewardTimeout(f"the call ran past reward_timeout ({self.timeout:g} s) without yielding to its "
                                f"event loop (blocking code in an async reward); its thread is left running and "
                                f"further calls fail until it returns")
        raise RewardTimeout(f"the call did not finish within reward_timeout ({self.timeout:g} s): the shared event "
                            f"loop was held by {names[culprit] if culprit is not None else 'another reward'!r}")


class RewardRunner:
    """Calls every reward on a batch; returns an (N, R) table with NaN for None or a failed call.

    ``timeout``: seconds per call (None or 0: sync rewards on this thread, no deadline). After a call,
    ``last_failed[j]`` says whether reward j failed on every completion, ``last_all_failed`` whether
    every reward did (nothing to learn from), ``extra`` holds the columns logged with ``log_extra``.
    """

    def __init__(self, rewards: list[RewardFunction], timeout: float | None = DEFAULT_TIMEOUT_S):
        self.rewards = rewards
        self.timeout = timeout or None
        self.failures: Counter = Counter()
        self.last_all_failed = False
        self.last_failed = [False] * len(rewards)
        self.extra: dict[str, list] = {}
        self._metrics: dict[tuple[str, str], list[float]] = {}
        self._warned: set[tuple[str, str]] = set()
        self._hung: dict[str, threading.Thread] = {}
        self._signatures = {id(r): _takes(r.fn) for r in rewards}

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.rewards]

    def __call__(self, completions: list[str], **columns) -> list[list[float]]:
        n = len(completions)
        columns.setdefault("trainer_state", None)
        self.extra, self._metrics = {}, {}
        table = [[math.nan] * len(self.rewards) for _ in range(n)]
        kwargs = [self._kwargs(r, columns, n) for r in self.rewards]
        batch = self._start_async(completions, kwargs)
        scored = {}
        for j, reward in enumerate(self.rewards):
            if not is_async(reward.fn):
                scored[j] = self._score(reward, n, lambda r=reward, kw=kwargs[j]: self._invoke(r, completions, kw))
        if batch is not None:
            culprit = batch.blocking() if batch.wait() else None   # the loop is stuck in this reward's code
            if culprit is not None:
                self._hung[self.rewards[culprit].name] = batch.thread
            for j in batch.jobs:
                scored[j] = self._score(self.rewards[j], n, lambda j=j: batch.result(j, self.names))
        for j in range(len(self.rewards)):
            values, failed = scored[j]
            self.last_failed[j] = n > 0 and failed == n
            for i, v in enumerate(values):
                table[i][j] = math.nan if v is None else v
        self.last_all_failed = n > 0 and all(self.last_failed)
        return table

    def logged_metrics(self, taken=()) -> dict[str, float]:
        """Mean of each ``log_metric`` name over the last call, under its own name; ``rewards/REWARD/NAME``
        when two rewards log the same name or it is one of ``taken`` (the trainer's own stats)."""
        counts = Counter(metric for _, metric in self._metrics)
        return {(metric if counts[metric] == 1 and metric not in taken else f"rewards/{name}/{metric}"):
                sum(values) / len(values) for (name, metric), values in self._metrics.items()}

    def _kwargs(self, reward: RewardFunction, columns: dict, n: int) -> dict:
        """The keywords for one reward: every column, and the optional keywords its signature takes."""
        takes = self._signatures[id(reward)] if id(reward) in self._signatures else _takes(reward.fn)
        wanted = (lambda k: True) if takes is None else (lambda k: k in takes)   # noqa: E731
        kw = {k: v for k, v in columns.items() if k not in OPTIONAL_KEYWORDS or wanted(k)}
        if wanted("log_extra"):
            kw["log_extra"] = self._log_extra(reward.name, n)
        if wanted("log_metric"):
            kw["log_metric"] = self._log_metric(reward.name)
        return kw

    def _log_extra(self, name: str, n: int):
        def log_extra(column: str, values) -> None:
            """Add ``column`` (one value per completion) to this step's completions log."""
            values = list(values)
            if len(values) != n:
                raise RewardError(f"reward {name!r}: log_extra({column!r}, ...) got {len(values)} values for {n} "
                                  f"completions")
            self.extra[str(column)] = values

        return log_extra

    def _log_metric(self, name: str):
        def log_metric(metric: str, value) -> None:
            """Log a number with this step's stats (the mean when logged more than once)."""
            self._metrics.setdefault((name, str(metric)), []).append(float(value))

        return log_metric

    def _start_async(self, completions, kwargs) -> _AsyncBatch | None:
        """Start the async rewards together; one whose earlier call still blocks its loop fails at once."""
        calls = {}
        for j, reward in enumerate(self.rewards):
            if not is_async(reward.fn):
                continue
            earlier = self._hung.get(reward.name)
            if earlier is not None and earlier.is_alive():
                calls[j] = lambda: _raise(RewardTimeout(f"an earlier call is still running past the "
                                                        f"{self.timeout:g} s reward_timeout"))
            else:
                calls[j] = lambda r=reward, kw=kwargs[j]: r(completions, **kw)
        if not calls:
            return None
        return _AsyncBatch(calls, self.timeout)

    def _score(self, reward: RewardFunction, n: int, produce) -> tuple[list, int]:
        """(values, None for no opinion; how many completions this call failed on)."""
        try:
            values = self._check(reward.name, produce(), n)
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
            return _settled(reward(completions, **columns))
        earlier = self._hung.get(reward.name)
        if earlier is not None and earlier.is_alive():
            raise RewardTimeout(f"an earlier call is still running past the {self.timeout:g} s reward_timeout")
        box, restore = {}, _thread_state()

        def run():
            restore()
            try:
                box["value"] = _settled(reward(completions, **columns))
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


def _settled(value):
    """A sync reward's result; an awaitable it returned (not declared async) is run to completion here."""
    return asyncio.run(_awaited(value)) if inspect.isawaitable(value) else value


def _raise(exc):
    raise exc
