"""The counting reward."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from mmr1_math.answers import as_text, final_answer, solution_text

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
_TOKENS = re.compile(r"[a-z]+")


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


def _last_word_number(text: str) -> int | None:
    tokens = _TOKENS.findall(text.lower().replace("a dozen", "dozen"))
    best = None
    run: list[str] = []
    for tok in tokens + [""]:
        if tok in _UNITS or tok in _TENS or tok in _SCALES or (tok == "and" and run):
            run.append(tok)
            continue
        while run and run[-1] == "and":
            run.pop()
        if run:
            value = _words_value(run)
            if value is not None:
                best = value
        run = []
    return best


def parse_count(text: str) -> Decimal | None:
    """The last number in ``text``: digits (``12``, ``1,000``, ``3.0``) win over number words
    (``twelve``, ``twenty-one``, ``zero``, ``none``); None if there is neither."""
    if not isinstance(text, str):
        return None
    found = list(_DIGITS.finditer(text))
    if found:
        token = found[-1].group(0).replace(",", "")
        try:
            value = Decimal(token)
        except InvalidOperation:
            try:
                value = Decimal(int(token))  # unicode digits
            except ValueError:
                return None
        return value if value.is_finite() else None
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
        region, source = final_answer(as_text(completion))
        if source == "whole":
            region = region[-2000:]
        pred = parse_count(region[-4000:])
        rewards.append(1.0 if pred is not None and pred == gold else 0.0)
    return rewards
