"""Pulling the final answer out of a completion, and normalising answers for string comparison.

Everything here is plain string work (``str.rfind``, linear regexes): no ``eval``, no sympy, and
nothing whose cost grows faster than the length of the input.
"""

from __future__ import annotations

import re

from mmr1.parsing import ANSWER_CLOSE, ANSWER_OPEN, answer_block, as_text  # noqa: F401 - re-exported

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BRACE = re.compile(r"\\[{}]|[{}]")  # escaped braces (\{ \}) are matched whole and ignored


def last_boxed(text: str) -> str | None:
    """The contents of the last ``\\boxed{...}`` (or ``\\fbox{...}``) whose braces balance, or None.

    One left-to-right pass with a stack of open braces, so the cost is linear even for thousands of
    unclosed ``\\boxed{``; ``\\{`` and ``\\}`` are escaped braces, not grouping."""
    box_starts = {m.end() for m in _BOXED.finditer(text)}  # index just after each box's "{"
    if not box_starts:
        return None
    stack: list[int] = []  # content start of each open brace
    best_start, best = -1, None
    # braces before the first box cannot pair with a box's braces in a way that matters
    for m in _BRACE.finditer(text, min(box_starts) - 1):
        ch = m.group(0)
        if ch == "{":
            stack.append(m.end())
        elif ch == "}" and stack:
            start = stack.pop()
            if start in box_starts and start > best_start:
                best_start, best = start, text[start : m.start()]
    return best


def final_answer(completion: str) -> tuple[str, str]:
    """``(answer, source)``: the last ``<answer>`` block, else the last balanced ``\\boxed{}``, else
    the whole completion; ``source`` is ``"answer"``, ``"boxed"`` or ``"whole"``."""
    block = answer_block(completion)
    if block is not None:
        return block, "answer"
    boxed = last_boxed(completion)
    if boxed is not None:
        return boxed, "boxed"
    return completion, "whole"


def solution_text(solution) -> str | None:
    """A dataset solution as text: ints/floats formatted, ``<answer>`` tags removed; None if missing."""
    if solution is None:
        return None
    if isinstance(solution, bool):
        return str(solution)
    if isinstance(solution, float) and solution.is_integer():
        solution = int(solution)
    text = str(solution)
    block = answer_block(text)
    if block is not None:
        text = block
    return text.strip()


_WS = re.compile(r"\s+")
_WRAPPERS = (
    (re.compile(r"^\$\$(.*)\$\$$", re.DOTALL), 1),
    (re.compile(r"^\$(.*)\$$", re.DOTALL), 1),
    (re.compile(r"^\\\((.*)\\\)$", re.DOTALL), 1),
    (re.compile(r"^\\\[(.*)\\\]$", re.DOTALL), 1),
)
_TEXT_CMD = re.compile(r"^\\(?:text|textbf|textrm|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}$")


def _unwrap_boxed(s: str) -> str:
    m = _BOXED.match(s)
    if m and s.endswith("}"):
        inner = last_boxed(s)
        if inner is not None and len(inner) == len(s) - m.end() - 1:
            return inner
    return s


def normalize(text: str) -> str:
    """Case-folded, whitespace-collapsed form used for string comparison: math delimiters
    (``$..$``, ``\\(..\\)``, ``\\[..\\]``), a whole-string ``\\boxed{}`` / ``\\text{}`` and a trailing
    period are removed."""
    s = _WS.sub(" ", text).strip()
    for _ in range(4):  # peel nested wrappers, a bounded number of times
        before = s
        for pattern, group in _WRAPPERS:
            m = pattern.match(s)
            if m:
                s = m.group(group).strip()
        s = _unwrap_boxed(s).strip()
        m = _TEXT_CMD.match(s)
        if m:
            s = m.group(1).strip()
        s = s.rstrip(".").rstrip()
        if s == before:
            break
    return s.casefold()


# -- plain numbers and units -------------------------------------------------------------------------
_UNIT_POWER = r"(?:\^\s*\{?\s*[23]\s*\}?|[²³])?"
_UNIT_TAIL = re.compile(
    r"(?:"
    r"\s*\\(?:text|mathrm|mbox|textrm|rm)\s*\{\s*[^{}\d]*\}" + _UNIT_POWER  # \text{ cm}^2
    + r"|(?<=[\d}\s)])[A-Za-zµ]{2,}" + _UNIT_POWER  # cm, apples, meters^2
    + r"|(?<=\s)[mgsLlhNJWVK]" + _UNIT_POWER  # single-letter SI units after a space: 5 m
    + r"|\s*(?:\^\s*\{?\s*\\circ\s*\}?|°)"  # degrees
    r")\s*\.?\s*$"
)
MAX_UNIT_TEXT = 200
_WORD = re.compile(r"(?<![A-Za-z\\\d])[A-Za-z]{2,}")
_COMMAND = re.compile(r"\\[A-Za-z]+")
_TEXT_ARG = re.compile(r"\\(?:text|textbf|textrm|mathrm|mathbf|mbox|operatorname)\s*\{[^{}]*\}")
MATH_WORDS = frozenset(
    "sin cos tan cot sec csc arcsin arccos arctan sinh cosh tanh log ln lg exp lim max min sup inf "
    "det gcd lcm mod deg dim ker arg sqrt pi".split()
)


def is_prose(text: str) -> bool:
    """True if ``text`` has a word of two or more letters outside LaTeX commands (other than
    function names such as ``sin`` or ``log``): it is a sentence, not a formula."""
    s = _TEXT_ARG.sub(" ", text)
    s = _COMMAND.sub(" ", s)
    return any(w.group(0).lower() not in MATH_WORDS for w in _WORD.finditer(s))


def strip_units(text: str) -> str:
    """``"5 cm"`` -> ``"5"``, ``"\\frac{1}{2} \\text{m}^2"`` -> ``"\\frac{1}{2}"``, ``"90°"`` -> ``"90"``.

    Up to three trailing unit words are removed, and only when what remains contains a digit and is
    not itself prose; otherwise ``text`` is returned unchanged."""
    s = _WS.sub(" ", text).strip()
    if len(s) > MAX_UNIT_TEXT:  # units follow short answers; and the regex stays linear
        return s
    stripped = s
    for _ in range(3):
        new = _UNIT_TAIL.sub("", stripped).rstrip()
        if new == stripped:
            break
        stripped = new
    if stripped != s and any(c.isdigit() for c in stripped) and not is_prose(stripped):
        return stripped
    return s


_NUMBER = re.compile(r"^[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:[eE][-+]?\d+)?$")


def plain_number(text: str):
    """The value of a plain decimal number (``"12"``, ``"-0.5"``, ``"1,000"``, ``"1e5"``) as a
    :class:`decimal.Decimal`, or None."""
    from decimal import Decimal, InvalidOperation

    s = normalize(text).replace("−", "-")
    if not s or len(s) > 64 or not _NUMBER.match(s) or not any(c.isdigit() for c in s):
        return None
    if s[0] == "+":
        s = s[1:]
    try:
        value = Decimal(s.replace(",", ""))
    except InvalidOperation:
        return None
    if not value.is_finite() or abs(value.adjusted()) > 100:
        return None
    return value
