"""OCR / document-QA rewards: normalised edit distance and ANLS (rapidfuzz, C-backed).

rapidfuzz's bit-parallel Levenshtein still costs about len(a) x len(b) / 64 word operations (28 s for
two 1 MB strings), so both sides are capped before it runs:

- An answer longer than ``max(ANSWER_RATIO x len(solution), MIN_ANSWER_CAP)`` characters scores 0
  without being compared. Its exact similarity is at most len(solution) / len(answer) < 1/8 (the
  distance is at least the length difference), so little is lost; truncating it instead would give
  a right answer followed by a megabyte of junk full marks.
- A solution longer than ``MAX_SOLUTION_CHARS`` is compared on its first ``MAX_SOLUTION_CHARS``
  characters, and so is the answer (an approximation, for pages no OCR dataset row should hold).

So one comparison costs at most about 160,000 x 20,000 / 64 word operations (~0.1 s).
"""

from __future__ import annotations

from rapidfuzz.distance import Levenshtein

from mmr1_vision.parsing import answer_region, column


#: An answer over max(ANSWER_RATIO x len(solution), MIN_ANSWER_CAP) characters scores 0.
ANSWER_RATIO = 8
MIN_ANSWER_CAP = 4000
#: Solutions (and then answers) are compared on at most this many leading characters.
MAX_SOLUTION_CHARS = 20_000


def answer_cap(gold: str) -> int:
    """The longest answer (after whitespace collapse) compared with ``gold``; longer ones score 0."""
    return max(ANSWER_RATIO * len(gold), MIN_ANSWER_CAP)


def _collapse(text) -> str:
    return " ".join(str(text).split())


def _similarity(pred: str, gold: str, floor: float | None = None) -> float:
    """1 - Levenshtein(pred, gold) / max(len(pred), len(gold)); 1.0 for two empty strings; 0.0 for an
    answer over :func:`answer_cap`. Both are cut to ``MAX_SOLUTION_CHARS`` when the solution is longer.
    ``floor``: the caller only needs similarities above it (ANLS); lower ones may come back as 0.0."""
    if len(pred) > answer_cap(gold):
        return 0.0
    if len(gold) > MAX_SOLUTION_CHARS:
        pred, gold = pred[:MAX_SOLUTION_CHARS], gold[:MAX_SOLUTION_CHARS]
    longest = max(len(pred), len(gold))
    if longest == 0:
        return 1.0
    if floor is not None and min(len(pred), len(gold)) / longest <= floor:
        return 0.0  # the length difference alone keeps the similarity at or below the floor
    return 1.0 - Levenshtein.distance(pred, gold) / longest


def _gold_text(sol) -> str | None:
    if sol is None:
        return None
    return _collapse(answer_region(str(sol)))


def ocr_edit_distance(completions, solution=None, **kwargs):
    """max(0, 1 - Levenshtein(answer, solution) / max(len(answer), len(solution))) after collapsing runs of whitespace to one space (case-sensitive; 1.0 if both are empty); None where the solution is missing. Reads ``solution``; range [0, 1].

    The answer is the last ``<answer>`` block, else the completion; ``<answer>`` tags around the
    solution are removed too. An answer over max(8 x len(solution), 4,000) characters scores 0, and a
    solution over 20,000 characters is compared on its first 20,000 (see the module docstring).
    """
    n = len(completions)
    out: list[float | None] = []
    for completion, sol in zip(completions, column(solution, n, "solution", "ocr_edit_distance")):
        gold = _gold_text(sol)
        if gold is None:
            out.append(None)
            continue
        pred = _collapse(answer_region(completion))
        out.append(max(0.0, _similarity(pred, gold)))
    return out


def anls(completions, solution=None, threshold=0.5, **kwargs):
    """ANLS (DocVQA): max over the acceptable answers in ``solution`` of 1 - NL if NL < threshold else 0, where NL = Levenshtein / max length after lower-casing and collapsing whitespace; None where the solution is missing. Reads ``solution`` (a string or a list of acceptable strings); option ``threshold`` (default 0.5); range [0, 1].

    The answer is the last ``<answer>`` block, else the completion. Caps as in
    :func:`ocr_edit_distance`.
    """
    threshold = float(threshold)
    n = len(completions)
    out: list[float | None] = []
    for completion, sol in zip(completions, column(solution, n, "solution", "anls")):
        if sol is None:
            out.append(None)
            continue
        golds = sol if isinstance(sol, (list, tuple)) else [sol]
        golds = [_collapse(answer_region(str(g))).lower() for g in golds if g is not None]
        if not golds:
            out.append(None)
            continue
        pred = _collapse(answer_region(completion)).lower()
        best = 0.0
        for gold in golds:
            sim = _similarity(pred, gold, floor=1.0 - threshold if threshold <= 1.0 else None)
            if 1.0 - sim < threshold:
                best = max(best, sim)
        out.append(best)
    return out
