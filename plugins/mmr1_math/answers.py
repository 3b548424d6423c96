"""Pulling the final answer out of a completion, and normalising answers for string comparison.

Everything here is plain string work (``str.rfind``, linear regexes): no ``eval``, no sympy, and
nothing whose cost grows faster than the length of the input.
"""

from __future__ import annotations

import re

from mmr1.api import ANSWER_CLOSE, ANSWER_OPEN, answer_block, as_text  # noqa: F401 - re-exported

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BRACE = re.compile(r"\\[{}]|[{}]")  # escaped braces (\{ \}) are matched whole and ignored


def last_boxed(text: str) -> str | None:
    """The contents of the last ``\\boxed{...}`` (or ``\\fbox{...}``) whose braces balance, or None.

    One left-to-right pass with a stack of open braces (:func:`_balanced_boxes`), so the cost is
    linear even for thousands of unclosed ``\\boxed{``; ``\\{`` and ``\\}`` are escaped braces, not
    grouping. "Last" is by where the contents start."""
    boxes = _balanced_boxes(text)
    if not boxes:
        return None
    _, start, close = max(boxes, key=lambda b: b[1])
    return text[start:close]


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


# -- hedging: several distinct answers offered as alternatives ----------------------------------------
#: Words that offer alternatives ("7 or 3", "maybe 4", "A and/or B").
ALT_WORDS = r"(?:and\s*/\s*or|or|maybe|perhaps|possibly|probably|either|alternatively)"
_ALT_WORD = re.compile(rf"(?<![A-Za-z\\])(?i:{ALT_WORDS})(?![A-Za-z])|\\lor(?![A-Za-z])")
#: The gap between two answer blocks / boxes that offers them as alternatives: an explicit marker
#: (``,``, ``;``, ``/``, ``|`` or one of :data:`ALT_WORDS`) with nothing else but whitespace. Plain
#: whitespace or other words ("then", "...") between two blocks is a correction: the last one counts.
_BLOCK_GAP = re.compile(rf"\s*+(?:(?:[,;/|]|(?i:{ALT_WORDS})(?![A-Za-z]))\s*+)++")
#: Between two numbers of a list of alternatives: only punctuation, whitespace and words such as "or"
#: ("1 2 3 4 5", "4, 5", "4 or maybe 5", "4? 5?"). Possessive quantifiers: linear on long gaps.
LIST_GAP = re.compile(rf"[\s,;/|.?!…]*+(?:(?i:{ALT_WORDS})(?![A-Za-z])[\s,;/|.?!…]*+)*+")
_ANSWER_CUE = re.compile(r"(?i:answer)\s*(?:(?i:is|would\s+be|should\s+be)\b|[:：=])")
_SENTENCE_END = re.compile(r"[.!?](?=\s)|\n")
MAX_HEDGE_TEXT = 4000  # hedge checks read at most this many trailing characters


def previous_alternative(completion: str, source: str) -> str | None:
    """The content of the ``<answer>`` block (``source == "answer"``) or balanced ``\\boxed{}``
    (``"boxed"``) just before the final one, when only an alternative marker separates the two
    (``<answer>7</answer> or <answer>3</answer>``, ``\\boxed{7}, \\boxed{3}``); else None."""
    if source == "answer":
        end = completion.rfind(ANSWER_CLOSE)
        start = completion.rfind(ANSWER_OPEN, 0, end) if end != -1 else -1
        prev_end = completion.rfind(ANSWER_CLOSE, 0, start) if start != -1 else -1
        if prev_end == -1:
            return None
        prev_start = completion.rfind(ANSWER_OPEN, 0, prev_end)
        gap = completion[prev_end + len(ANSWER_CLOSE) : start]
        if prev_start == -1 or not _BLOCK_GAP.fullmatch(gap):
            return None
        return completion[prev_start + len(ANSWER_OPEN) : prev_end]
    if source == "boxed":
        boxes = sorted(_balanced_boxes(completion), key=lambda b: b[1])
        if len(boxes) < 2:
            return None
        (_, p_start, p_end), (b_start, _, _) = boxes[-2], boxes[-1]
        if p_end >= b_start or not _BLOCK_GAP.fullmatch(completion[p_end + 1 : b_start]):
            return None
        return completion[p_start:p_end]
    return None


def alternative_differs(completion: str, source: str, answer: str, value) -> bool:
    """True if a block or box offered as an alternative to the final one (:func:`previous_alternative`,
    ``\\boxed{7} or \\boxed{3}``) states another value than the final ``answer``; ``value`` reads the
    value of a text (None: it states none), from its last :data:`MAX_HEDGE_TEXT` characters."""
    prev = previous_alternative(completion, source)
    if prev is None:
        return False
    a, b = value(prev[-MAX_HEDGE_TEXT:]), value(answer[-MAX_HEDGE_TEXT:])
    return a is not None and b is not None and a != b


def list_run_start(text: str, spans: list[tuple[int, int]]) -> int:
    """Where the run of values that ends ``text`` begins: ``spans`` are the ``(start, end)`` of the
    values found in ``text``, in order, and ``spans[k:]`` (the index returned) are joined only by
    :data:`LIST_GAP` ("1 2 3 4 5", "4, or maybe 5")."""
    k = len(spans) - 1
    while k > 0 and LIST_GAP.fullmatch(text, spans[k - 1][1], spans[k][0]):
        k -= 1
    return max(k, 0)


def _balanced_boxes(text: str) -> list[tuple[int, int, int]]:
    """``(box_start, content_start, close_index)`` of every balanced box, in the order they close: one
    left-to-right pass with a stack of open braces; ``\\{`` / ``\\}`` are matched whole and ignored."""
    starts = {m.end(): m.start() for m in _BOXED.finditer(text)}  # index just after each box's "{"
    if not starts:
        return []
    stack: list[int] = []  # content start of each open brace
    found = []
    # braces before the first box cannot pair with a box's braces in a way that matters
    for m in _BRACE.finditer(text, min(starts) - 1):
        ch = m.group(0)
        if ch == "{":
            stack.append(m.end())
        elif ch == "}" and stack:
            start = stack.pop()
            if start in starts:
                found.append((starts[start], start, m.start()))
    return found


def after_answer_cue(text: str) -> str | None:
    """The text after the last "answer is" / "answer:" / "answer =" in ``text``, or None."""
    last = None
    for last in _ANSWER_CUE.finditer(text):
        pass
    return None if last is None else text[last.end() :]


def sentence_start(text: str, pos: int) -> int:
    """Where the sentence holding ``text[pos]`` begins (after the last ``. `` / ``! `` / ``? `` /
    newline before ``pos``)."""
    start = 0
    for m in _SENTENCE_END.finditer(text, 0, pos):
        start = m.end()
    return start


def split_alternatives(text: str) -> list[str]:
    """``text`` cut at its alternative markers: top-level ``,`` / ``;`` (not inside brackets or
    braces, not a thousands separator as in ``1,000``) and the words of :data:`ALT_WORDS` anywhere."""
    parts, depth, last = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        elif ch in ",;" and depth == 0:
            if ch == "," and i > 0 and text[i - 1].isdigit() and _THOUSANDS.match(text, i):
                continue
            parts.append(text[last:i])
            last = i + 1
    parts.append(text[last:])
    return [piece for part in parts for piece in _ALT_WORD.split(part)]


_THOUSANDS = re.compile(r",\d{3}(?!\d)")
