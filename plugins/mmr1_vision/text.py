"""OCR / document-QA rewards: normalised edit distance and ANLS (rapidfuzz, C-backed)."""

from __future__ import annotations

from rapidfuzz.distance import Levenshtein

from mmr1_vision.parsing import answer_region, column


def _collapse(text) -> str:
    return " ".join(str(text).split())


def _similarity(pred: str, gold: str) -> float:
    """1 - Levenshtein(pred, gold) / max(len(pred), len(gold)); 1.0 for two empty strings."""
    longest = max(len(pred), len(gold))
    if longest == 0:
        return 1.0
    return 1.0 - Levenshtein.distance(pred, gold) / longest


def _gold_text(sol) -> str | None:
    if sol is None:
        return None
    return _collapse(answer_region(str(sol)))


def ocr_edit_distance(completions, solution=None, **kwargs):
    """max(0, 1 - Levenshtein(answer, solution) / max(len(answer), len(solution))) after collapsing runs of whitespace to one space (case-sensitive; 1.0 if both are empty); None where the solution is missing. Reads ``solution``; range [0, 1].

    The answer is the last ``<answer>`` block, else the completion; ``<answer>`` tags around the
    solution are removed too.
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

    The answer is the last ``<answer>`` block, else the completion.
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
            sim = _similarity(pred, gold)
            if 1.0 - sim < threshold:
                best = max(best, sim)
        out.append(best)
    return out
