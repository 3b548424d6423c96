"""The math accuracy reward: math-verify with a deadline that works on any thread."""

from __future__ import annotations

import logging
import math
import os
import re
import threading
from collections import OrderedDict

from mmr1_math import _pool
from mmr1_math.answers import (
    MATH_WORDS,
    MAX_HEDGE_TEXT,
    after_answer_cue,
    alternative_differs,
    as_text,
    final_answer,
    is_prose,
    list_run_start,
    normalize,
    plain_number,
    solution_text,
    split_alternatives,
    strip_units,
)

logger = logging.getLogger("mmr1_math")

DEFAULT_TIMEOUT_S = 5.0
#: The default per-call budget (option ``budget``): max(this, ``timeout``) seconds for the whole call.
#: Four default per-sample deadlines: with two workers, eight samples can each run their full 5 s
#: (plus restarts) before the rest go unscored; an ordinary batch takes well under a second, and
#: 20 s is a sixth of the trainer's default ``reward_timeout`` (120 s), which stays the backstop.
DEFAULT_BUDGET_S = 20.0
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
    "hedged": 0,  # scored 0: the answer offered several distinct values for a one-value solution
    "over_budget": 0,  # left unscored (None): the call's budget ran out before math-verify got to them
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


# -- hedging ---------------------------------------------------------------------------------------
_SEVERAL = re.compile(r"\\(?:pm|mp|cup|cap|lor|land)(?![A-Za-z])|[±∓∪]|(?<![A-Za-z\\])(?i:and|or)(?![A-Za-z])")
_SPLIT_AND = re.compile(r"(?<![A-Za-z\\])(?i:and)(?![A-Za-z])")
_NEGATED = re.compile(r"^\s*(?:(?i:not|rather\s+than|instead\s+of|isn't|is\s+not)(?![A-Za-z])|≠|\\neq?(?![A-Za-z]))")
_APPROX = re.compile(
    r"\\approx(?![A-Za-z])|≈|(?<![A-Za-z])(?i:approximately|approx|roughly|about|around|circa)(?![A-Za-z])"
)
_PROSE = re.compile(r"(?<![A-Za-z\\])(?:[A-Za-z]{2,}|(?i:i\.e|e\.g)\.?)(?![A-Za-z])")
_VALUE = re.compile(r"\$[^$]{1,200}\$|(?<![\w.])[-+−]?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?")


def _one_valued(gold: str) -> bool:
    """True if the solution is one value (a number, an expression), not a tuple, a set, an interval,
    a list or an "x = 1 or x = 2": only then can an answer with several values be a hedge."""
    g = strip_units(gold)
    if plain_number(g) is not None:
        return True
    return len(split_alternatives(g)) == 1 and not _SEVERAL.search(g)


def _value_key(part: str) -> str | None:
    """The value a piece of an answer states, as a comparable string, or None if it states none
    (prose, a negated value "not 3", an approximation "about 2.83")."""
    if _NEGATED.match(part):
        return None
    m = _APPROX.search(part)
    if m:
        part = part[: m.start()]  # "2\sqrt{2} \approx 2.83": the exact value is the answer
    part = part[part.rfind("=") + 1 :]  # "3 + 4 = 7", "x = 7": the value after the last "="
    part = _PROSE.sub(lambda w: w.group(0) if w.group(0).lower() in MATH_WORDS else " ", part)
    if not any(c.isdigit() or c in "\\π∞√" for c in part):
        return None
    bare = normalize(strip_units(part.replace("$", " ")))
    number = plain_number(bare)
    if number is not None:
        return str(number.normalize())
    return "".join(bare.split())


def _hedged(pred: str, source: str, text: str, gold: str) -> bool:
    """True if the final answer offers several distinct values while the solution is one value.

    The answer is cut at its alternative markers (top-level ``,`` / ``;``, "or", "maybe", "and", ...;
    see :func:`mmr1_math.answers.split_alternatives`), and each piece's value is read (after its last
    ``=``, prose, units, a negated "not 3" and an approximation "≈ 2.83" left out): two distinct
    values are a hedge. In a completion without ``<answer>`` / ``\\boxed{}`` this applies to the text
    after the last "answer is" / "answer:"; with no such phrase the reasoning may hold many numbers,
    and only a list of distinct values ending the completion, joined by punctuation or "or" / "maybe"
    alone ("It is 7, or maybe 3"), is a hedge. A block or box offered as an alternative to the final
    one (``\\boxed{7} or \\boxed{3}``) is a hedge too."""
    if not _one_valued(gold):
        return False
    if alternative_differs(text, source, pred, _value_key):
        return True
    region = pred[-MAX_HEDGE_TEXT:]
    if source == "whole":
        tail = after_answer_cue(region)
        if tail is None:
            found = list(_VALUE.finditer(region))
            run = found[list_run_start(region, [m.span() for m in found]) :]
            return len({key for m in run if (key := _value_key(m.group(0))) is not None}) > 1
        region = tail
    keys = {
        key
        for part in split_alternatives(region)
        for piece in _SPLIT_AND.split(part)
        if (key := _value_key(piece)) is not None
    }
    return len(keys) > 1


def _inline(tasks: list[dict], timeout: float, deadline: float | None = None) -> list[tuple[str, dict]]:
    """Score in this process: math-verify's SIGALRM timeout on the main thread, none elsewhere.
    Tasks not started by ``deadline`` are reported as ``budget``."""
    from mmr1_math import _mv_worker

    on_main = threading.current_thread() is threading.main_thread()
    out = []
    for t in tasks:
        left = None if deadline is None else deadline - _pool._clock()
        if left is not None and left < _pool.MIN_SLICE_S:
            out.append((_pool.BUDGET, {}))
            continue
        limit = timeout if left is None else min(timeout, left)
        seconds = max(1, math.ceil(limit)) if on_main else None
        out.append((_pool.OK, _mv_worker.score_task(t, timeout=seconds)))
    return out


def accuracy_reward(
    completions,
    solution=None,
    timeout: float = DEFAULT_TIMEOUT_S,
    workers: int | None = None,
    memory_mb: int = DEFAULT_MEMORY_MB,
    budget: float | None = None,
    mmr1_compat: bool = False,
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
    ``mmr1_math.timeouts()``. The whole call has a budget (option ``budget``, default
    max(20 s, ``timeout``)): samples math-verify has not scored when it runs out are "no opinion"
    (None) and counted in ``stats()["over_budget"]``. An answer offering several distinct values for a
    one-value solution ("It is 7, or maybe 3") scores 0 (``stats()["hedged"]``). Options: ``timeout``
    (s), ``budget`` (s per call, at least ``timeout``; 0 = none), ``workers`` (processes, default
    min(2, CPUs)), ``memory_mb`` (worker address-space limit, default 4096, 0 = none).

    ``mmr1_compat: true`` scores as MMR1's ``r1v_acc``: 1.0 when the first ``<answer>`` contents (else
    the whole completion, stripped) equal the solution's exactly, else
    ``verify(parse(completion), parse(solution))`` on the *whole* completion, in MMR1's argument order,
    with no normalisation and no hedging check; math-verify still runs in the killable workers under the
    same deadlines (a timeout scores 0, as MMR1's caught timeout did).
    """
    n = len(completions)
    try:
        timeout = float(timeout)
    except (TypeError, ValueError):
        raise ValueError(f"accuracy: option timeout must be a number of seconds, got {timeout!r}") from None
    if not timeout > 0:
        raise ValueError(f"accuracy: option timeout must be > 0 seconds, got {timeout!r}")
    deadline = _deadline(budget, timeout)
    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    solutions = _per_sample(solution, n)
    rewards: list[float | None] = [None] * n
    pending: dict[tuple, list[int]] = {}
    fast = hedged = 0
    compat = _flag(mmr1_compat)
    for i, (completion, sol) in enumerate(zip(completions, solutions)):
        gold = solution_text(sol)
        if gold is None or not gold.strip():
            continue
        text = as_text(completion)
        if compat:
            decided, key = _mmr1_r1v_acc(text, sol)
            if decided is not None:
                rewards[i] = decided
                fast += 1
            else:
                pending.setdefault(key, []).append(i)
            continue
        pred, source = final_answer(text)
        if source == "whole":
            pred = pred[-WHOLE_COMPLETION_TAIL:]
        if len(pred) <= MAX_ANSWER_CHARS and _hedged(pred, source, text, gold):
            rewards[i] = 0.0  # several distinct values offered: no single answer to score
            hedged += 1
            continue
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
    _count("hedged", hedged)
    if pending:
        _verify_pending(pending, rewards, timeout, int(workers), int(memory_mb), deadline)
    return rewards


_FIRST_ANSWER = re.compile(r"<answer>(.*?)</answer>")   # MMR1's pattern: first block, no DOTALL
MMR1_SIDES = "mmr1"   # gold mode of a task with MMR1's sides: the completion as gold (the worker reads it raw)


def _flag(value) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueError(f"accuracy: option mmr1_compat must be true or false, got {value!r}")


def _mmr1_r1v_acc(text: str, solution) -> tuple[float | None, tuple | None]:
    """MMR1's ``r1v_acc``: 1.0 when the first ``<answer>`` contents match exactly; otherwise (None, the
    math-verify task key) for ``verify(parse(completion), parse(solution))`` on the whole completion. MMR1
    passes the completion as math-verify's *gold* argument, and ``verify`` is not symmetric (``x \\leq 3``
    against ``(-\\infty, 3]``), so the task's sides are swapped (the worker verifies gold=g against
    target=p); mode ``"mmr1"`` (parsed as ``"raw"``) marks them."""
    gold_text = str(solution)
    sol = _FIRST_ANSWER.search(gold_text)
    got = _FIRST_ANSWER.search(text)
    if (got.group(1).strip() if got else text.strip()) == (sol.group(1).strip() if sol else gold_text.strip()):
        return 1.0, None
    if _nothing_to_parse(gold_text, "raw") or _nothing_to_parse(text, "raw"):
        return 0.0, None
    return None, (text, MMR1_SIDES, gold_text, "raw")


def _deadline(budget, timeout: float) -> float | None:
    """The :func:`mmr1_math._pool._clock` time by which the call ends (None: no budget)."""
    if budget is None:
        budget = max(DEFAULT_BUDGET_S, timeout)
    try:
        budget = float(budget)
    except (TypeError, ValueError):
        raise ValueError(f"accuracy: option budget must be a number of seconds, got {budget!r}") from None
    if budget == 0:
        return None
    if not budget >= timeout:  # also NaN and negative values
        raise ValueError(
            f"accuracy: option budget ({budget!r} s per call) must be at least timeout ({timeout:g} s per "
            f"sample), or 0 for no budget"
        )
    return _pool._clock() + budget


def _verify_pending(pending, rewards, timeout, workers, memory_mb, deadline=None) -> None:
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
        results = _pool.get_pool().run(tasks, timeout, workers=workers, memory_mb=memory_mb, deadline=deadline)
    except _pool.WorkerStartError as exc:
        _warn_once(
            "inline",
            f"accuracy: {exc}; scoring in this process instead, where math-verify can only time out "
            f"on the main thread.",
        )
        results = _inline(tasks, timeout, deadline)
    for (key, idxs), (status, reply) in zip(owners, results):
        gold, pred = (key[2], key[0]) if key[1] == MMR1_SIDES else (key[0], key[2])
        if status == _pool.BUDGET:  # not scored in time: no opinion, and not remembered as a timeout
            _count("over_budget", len(idxs))
            _warn_once(
                "budget",
                f"accuracy: the call's budget ran out with {sum(s == _pool.BUDGET for s, _ in results)} of "
                f"{len(results)} distinct answers not scored by math-verify; they count as no opinion "
                f"(None). Further cases are counted in mmr1_math.stats()['over_budget'] without a warning.",
            )
            for i in idxs:
                rewards[i] = None
            continue
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
                    f"{gold[:80]!r} vs answer {pred[:80]!r}; scored 0. Further timeouts are counted "
                    f"in mmr1_math.timeouts() without a warning.",
                )
            else:
                _count("crashes", len(idxs))
                _warn_once(
                    "crash",
                    f"accuracy: the math-verify worker died on solution {gold[:80]!r} vs answer "
                    f"{pred[:80]!r} (out of memory?); scored 0 and restarted it.",
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
