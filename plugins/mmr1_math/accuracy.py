"""The math accuracy reward: math-verify with a deadline that works on any thread."""

from __future__ import annotations

import logging
import math
import os
import threading
from collections import OrderedDict

from mmr1_math import _pool
from mmr1_math.answers import (
    as_text,
    final_answer,
    is_prose,
    normalize,
    plain_number,
    solution_text,
    strip_units,
)

logger = logging.getLogger("mmr1_math")

DEFAULT_TIMEOUT_S = 5.0
DEFAULT_MEMORY_MB = 4096
#: With no ``<answer>`` block and no ``\boxed{}``, only this many trailing characters of the
#: completion are searched for the final answer (the answer is at the end; a 100 KB ramble is not
#: worth parsing in full).
WHOLE_COMPLETION_TAIL = 2000
#: Answers longer than this (after extraction) are compared as strings only.
MAX_ANSWER_CHARS = 4000
_POISON_SIZE = 4096

_stats_lock = threading.Lock()
_STATS = {
    "samples": 0,  # completions scored by accuracy
    "fast_path": 0,  # decided by string / plain-number comparison, without math-verify
    "verified": 0,  # distinct (solution, answer) pairs sent to math-verify
    "timeouts": 0,  # samples scored 0 because math-verify ran past the deadline
    "crashes": 0,  # samples scored 0 because the worker died (e.g. out of memory)
    "errors": 0,  # math-verify raised (scored 0, not a timeout)
}
_warned: set[str] = set()
_poison: OrderedDict = OrderedDict()  # (gold, pred) pairs that timed out before: not retried


def stats() -> dict:
    """A copy of the accuracy reward's counters (``timeouts``, ``crashes``, ``fast_path``, ...)."""
    with _stats_lock:
        return dict(_STATS)


def timeouts() -> int:
    """How many samples the accuracy reward scored 0 because math-verify ran past the deadline."""
    with _stats_lock:
        return _STATS["timeouts"]


def reset_stats() -> None:
    """Zero the counters and forget which pairs timed out (tests, benchmarks)."""
    with _stats_lock:
        for key in _STATS:
            _STATS[key] = 0
        _poison.clear()
        _warned.clear()


def _count(key: str, n: int = 1) -> None:
    with _stats_lock:
        _STATS[key] += n


def _warn_once(key: str, message: str) -> None:
    with _stats_lock:
        if key in _warned:
            return
        _warned.add(key)
    logger.warning(message)


def _has_delimiters(text: str) -> bool:
    return "$" in text or "\\(" in text or "\\[" in text or "\\boxed" in text


def _mode(text: str) -> str:
    """``raw``: math-verify finds the math itself (prose, own delimiters, or a plain number, which
    its number regex reads without the slower LaTeX grammar); ``wrap``: a bare formula."""
    if _has_delimiters(text) or is_prose(text) or plain_number(text) is not None:
        return "raw"
    return "wrap"


def _nothing_to_parse(text: str, mode: str) -> bool:
    """True if math-verify cannot extract anything from ``text`` as given: in ``raw`` mode it needs
    a digit (its number / expression regexes) or a LaTeX delimiter or command."""
    return mode == "raw" and "$" not in text and "\\" not in text and not any(c.isdigit() for c in text)


def _fast(pred: str, gold: str) -> float | None:
    """1.0 / 0.0 when string or plain-number comparison settles it, else None."""
    p_norm, g_norm = normalize(pred), normalize(gold)
    if p_norm == g_norm:
        return 1.0
    if not p_norm:
        return 0.0
    p_bare, g_bare = strip_units(pred), strip_units(gold)
    if normalize(p_bare) == normalize(g_bare):
        return 1.0
    a, b = plain_number(p_bare), plain_number(g_bare)
    if a is not None and b is not None:
        if a == b:
            return 1.0
        if a == a.to_integral_value() and b == b.to_integral_value():
            return 0.0  # two different integers: nothing for math-verify to find
    return None


def _inline(tasks: list[dict], timeout: float) -> list[tuple[str, dict]]:
    """Score in this process: math-verify's SIGALRM timeout on the main thread, none elsewhere."""
    from mmr1_math import _mv_worker

    on_main = threading.current_thread() is threading.main_thread()
    seconds = max(1, math.ceil(timeout)) if on_main else None
    return [(_pool.OK, _mv_worker.score_task(t, timeout=seconds)) for t in tasks]


def accuracy_reward(
    completions,
    solution=None,
    timeout: float = DEFAULT_TIMEOUT_S,
    workers: int | None = None,
    memory_mb: int = DEFAULT_MEMORY_MB,
    **kwargs,
):
    """1.0 if the final answer (last ``<answer>`` block, else last balanced ``\\boxed{}``, else the completion's last 2,000 characters) equals the ``solution`` column, by math-verify ``parse`` + ``verify`` or by normalised string / plain-number match, else 0.0 (also when math-verify times out); None where the solution is missing. Reads ``solution``; range {0, 1}.

    The final answer is the last ``<answer>...</answer>`` block, else the last balanced
    ``\\boxed{...}``, else the completion itself (its last 2,000 characters). The solution may be a
    string (``<answer>`` tags removed), an int or a float. Equal after normalisation (case,
    whitespace, ``$``/``\\boxed``/``\\text`` wrappers, a trailing period, trailing units as in
    ``5 cm``) or as plain numbers scores 1 at once; otherwise math-verify ``parse`` + ``verify``
    decides (``\\frac{1}{2}`` = ``0.5``, ``2\\sqrt{2}`` = ``\\sqrt{8}``, ``x=3`` = ``3``, sets,
    intervals, percentages). math-verify runs in a worker process with a per-sample deadline
    (option ``timeout``, default 5 s): a sample past it scores 0 and is counted in
    ``mmr1_math.timeouts()``. Options: ``timeout`` (s), ``workers`` (processes, default
    min(2, CPUs)), ``memory_mb`` (worker address-space limit, default 4096, 0 = none).
    """
    n = len(completions)
    try:
        timeout = float(timeout)
    except (TypeError, ValueError):
        raise ValueError(f"accuracy: option timeout must be a number of seconds, got {timeout!r}") from None
    if not timeout > 0:
        raise ValueError(f"accuracy: option timeout must be > 0 seconds, got {timeout!r}")
    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    solutions = _per_sample(solution, n)
    rewards: list[float | None] = [None] * n
    pending: dict[tuple, list[int]] = {}
    fast = 0
    for i, (completion, sol) in enumerate(zip(completions, solutions)):
        gold = solution_text(sol)
        if gold is None or not gold.strip():
            continue
        text = as_text(completion)
        pred, source = final_answer(text)
        if source == "whole":
            pred = pred[-WHOLE_COMPLETION_TAIL:]
        decided = _fast(pred, gold)
        if decided is not None:
            rewards[i] = decided
            fast += 1
            continue
        if len(pred) > MAX_ANSWER_CHARS or len(gold) > MAX_ANSWER_CHARS:
            rewards[i] = 0.0  # string comparison above already failed
            fast += 1
            continue
        p_bare, g_bare = strip_units(pred), strip_units(gold)
        key = (g_bare, _mode(g_bare), p_bare, "raw" if source == "whole" else _mode(p_bare))
        if _nothing_to_parse(key[0], key[1]) or _nothing_to_parse(key[2], key[3]):
            rewards[i] = 0.0  # e.g. two different words: string comparison already said no
            fast += 1
            continue
        pending.setdefault(key, []).append(i)

    _count("samples", n)
    _count("fast_path", fast)
    if pending:
        _verify_pending(pending, rewards, timeout, int(workers), int(memory_mb))
    return rewards


def _verify_pending(pending, rewards, timeout, workers, memory_mb) -> None:
    tasks, owners = [], []
    for key, idxs in pending.items():
        with _stats_lock:
            poisoned = key in _poison
        if poisoned:  # timed out before: do not spend another deadline on it
            for i in idxs:
                rewards[i] = 0.0
            _count("timeouts", len(idxs))
            continue
        g, gm, p, pm = key
        tasks.append({"i": len(tasks), "g": g, "gm": gm, "p": p, "pm": pm})
        owners.append((key, idxs))
    if not tasks:
        return
    _count("verified", len(tasks))
    try:
        results = _pool.get_pool().run(tasks, timeout, workers=workers, memory_mb=memory_mb)
    except _pool.WorkerStartError as exc:
        _warn_once(
            "inline",
            f"accuracy: {exc}; scoring in this process instead, where math-verify can only time out "
            f"on the main thread.",
        )
        results = _inline(tasks, timeout)
    for (key, idxs), (status, reply) in zip(owners, results):
        if status == _pool.OK:
            value = 1.0 if reply.get("ok") else 0.0
            if "error" in reply:
                _count("errors", len(idxs))
        else:
            value = 0.0
            if status == _pool.TIMEOUT:
                _count("timeouts", len(idxs))
                with _stats_lock:
                    _poison[key] = True
                    if len(_poison) > _POISON_SIZE:
                        _poison.popitem(last=False)
                _warn_once(
                    "timeout",
                    f"accuracy: math-verify ran past the {timeout:g} s deadline on solution "
                    f"{key[0][:80]!r} vs answer {key[2][:80]!r}; scored 0. Further timeouts are counted "
                    f"in mmr1_math.timeouts() without a warning.",
                )
            else:
                _count("crashes", len(idxs))
                _warn_once(
                    "crash",
                    f"accuracy: the math-verify worker died on solution {key[0][:80]!r} vs answer "
                    f"{key[2][:80]!r} (out of memory?); scored 0 and restarted it.",
                )
        for i in idxs:
            rewards[i] = value


def _per_sample(column, n: int) -> list:
    if column is None:
        return [None] * n
    if isinstance(column, (str, bytes, int, float)):
        return [column] * n
    column = list(column)
    if len(column) != n:
        raise ValueError(f"accuracy: got {n} completions but {len(column)} solutions")
    return column
