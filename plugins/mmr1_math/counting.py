"""The counting reward."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from mmr1_math.answers import (
    MAX_HEDGE_TEXT,
    after_answer_cue,
    alternative_differs,
    as_text,
    final_answer,
    list_run_start,
    solution_text,
)

_UNITS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen".split()
    )
}
_UNITS.update({"none": 0, "nil": 0, "a dozen": 12, "dozen": 12})
_TENS = {w: 10 * (i + 2) for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())}
_SCALES = {"hundred": 100, "thousand": 1000}

_DIGITS = re.compile(r"(?<![\w.])[-+]?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?")
_TOKENS = re.compile(r"[a-z]+", re.IGNORECASE)


def _words_value(tokens: list[str]) -> int | None:
    """Value of a run of number words (``twenty one``, ``one hundred and five``), or None."""
    total, current, seen = 0, 0, False
    for tok in tokens:
        if tok == "and" and seen:
            continue
        if tok in _UNITS:
            current += _UNITS[tok]
        elif tok in _TENS:
            current += _TENS[tok]
        elif tok in _SCALES:
            current = max(current, 1) * _SCALES[tok]
            if _SCALES[tok] >= 1000:
                total, current = total + current, 0
        else:
            return None
        seen = True
    return total + current if seen else None


def _kind(tok: str) -> str | None:
    if tok in _SCALES:
        return "scale"
    if tok in _TENS:
        return "tens"
    if tok in _UNITS:
        return "unit" if 0 < _UNITS[tok] < 10 else "whole"  # "twenty one", not "twelve one"
    return None


def _continues(prev: str, tok: str, gap: str) -> bool:
    """Does ``tok`` extend a run of number words ending in ``prev``? ("twenty one", "one hundred and
    five", "twenty-one"; not "one two", "four, five")."""
    if gap.strip(" \t-–") or "\n" in gap:
        return False
    if tok == "and" or prev == "and" or _kind(tok) == "scale" or _kind(prev) == "scale":
        return True
    return _kind(prev) == "tens" and _kind(tok) == "unit"


def _word_numbers(text: str) -> list[tuple[int, int, int]]:
    """``(value, start, end)`` of every run of number words in ``text`` (``twenty one``, ``a dozen``)."""
    found = []
    run: list = []  # tokens (matches) of the current run

    def close():
        while run and run[-1].group(0).lower() == "and":
            run.pop()
        if run:
            value = _words_value([m.group(0).lower() for m in run])
            if value is not None:
                found.append((value, run[0].start(), run[-1].end()))
        run.clear()

    for m in _TOKENS.finditer(text):  # case-insensitive, on the text itself: offsets stay valid
        tok = m.group(0).lower()
        if _kind(tok) is None and not (tok == "and" and run):
            close()
            continue
        if run and not _continues(run[-1].group(0).lower(), tok, text[run[-1].end() : m.start()]):
            close()
        if tok == "and" and not run:
            continue
        run.append(m)
    close()
    return found


def _last_word_number(text: str) -> int | None:
    found = _word_numbers(text)
    return found[-1][0] if found else None


def _numbers(text: str) -> list[tuple[Decimal, int, int]]:
    """``(value, start, end)`` of every number in ``text``: the digit numbers if there are any (digits
    win), else the runs of number words."""
    out = []
    for m in _DIGITS.finditer(text):
        value = _digits_value(m.group(0))
        if value is not None:
            out.append((value, m.start(), m.end()))
    if out:
        return out
    return [(Decimal(v), a, b) for v, a, b in _word_numbers(text)]


def _digits_value(token: str) -> Decimal | None:
    token = token.replace(",", "")
    try:
        value = Decimal(token)
    except InvalidOperation:
        try:
            value = Decimal(int(token))  # unicode digits
        except ValueError:
            return None
    return value if value.is_finite() else None


def hedged(region: str, source: str, completion: str) -> bool:
    """True if the final answer offers several distinct counts.

    In an ``<answer>`` block or ``\\boxed{}`` (and after "answer is" / "answer:" in a completion
    without either), the answer is one number: two distinct numbers (after the last ``=``, so that
    ``2 + 3 = 5`` is one answer) are a hedge. In a completion without tags, the reasoning may hold many
    numbers: the final number is hedged if it ends a list of distinct numbers joined only by
    punctuation or "or" / "maybe" ("1 2 3 4 5", "4, or maybe 5"). A block or box offered as an
    alternative to the final one (``<answer>4</answer> or <answer>5</answer>``) is a hedge too."""
    if alternative_differs(completion, source, region, parse_count):
        return True
    region = region[-MAX_HEDGE_TEXT:]
    strict = source != "whole"
    if not strict:
        tail = after_answer_cue(region)
        if tail is not None:
            region, strict = tail, True
    if strict:
        region = region[region.rfind("=") + 1 :]
        return len({v for v, _, _ in _numbers(region)}) > 1
    found = _numbers(region)
    run = found[list_run_start(region, [(a, b) for _, a, b in found]) :]
    return len({v for v, _, _ in run}) > 1


def parse_count(text: str) -> Decimal | None:
    """The last number in ``text``: digits (``12``, ``1,000``, ``3.0``) win over number words
    (``twelve``, ``twenty-one``, ``zero``, ``none``); None if there is neither."""
    if not isinstance(text, str):
        return None
    found = list(_DIGITS.finditer(text))
    if found:
        return _digits_value(found[-1].group(0))
    value = _last_word_number(text)
    return None if value is None else Decimal(value)


def count_reward(completions, solution=None, **kwargs):
    """1.0 if the last number in the answer (last ``<answer>`` block, else last ``\\boxed{}``, else the completion) equals the integer ``solution``, else 0.0; None where the solution is missing or has no number. Reads ``solution`` (int or text such as ``"3"``, ``"<answer> 3 </answer>"``, ``"three"``); range {0, 1}.

    The answer is the last ``<answer>`` block, else the last ``\\boxed{}``, else the completion (its
    last 2,000 characters). Digits win over number words; words cover zero to ninety-nine, hundreds,
    thousands, "a dozen" and "none" (= 0). ``3.0`` counts as 3, ``3.5`` as no match.
    """
    n = len(completions)
    if solution is None or isinstance(solution, (str, int, float)):
        solution = [solution] * n
    solution = list(solution)
    if len(solution) != n:
        raise ValueError(f"count: got {n} completions but {len(solution)} solutions")
    rewards: list[float | None] = []
    for completion, sol in zip(completions, solution):
        gold_text = solution_text(sol)
        gold = parse_count(gold_text) if gold_text is not None else None
        if gold is None:
            rewards.append(None)
            continue
        text = as_text(completion)
        region, source = final_answer(text)
        if source == "whole":
            region = region[-2000:]
        pred = parse_count(region[-4000:])
        if pred is not None and pred == gold and hedged(region, source, text):
            pred = None  # several distinct counts offered: no single answer to score
        rewards.append(1.0 if pred is not None and pred == gold else 0.0)
    return rewards
