"""The multiple-choice reward."""

from __future__ import annotations

import re

from mmr1_math.answers import as_text, final_answer, normalize, solution_text

LETTERS = "ABCDE"

_DECOR = re.compile(r"\*\*|__|\$|\\text\s*\{|\\textbf\s*\{|\\mathrm\s*\{|[{}\"'`“”‘’]")
_LETTER_ONLY = re.compile(r"^[\(\[]?\s*([A-Ea-e])\s*[\)\]]?\s*[.:)]?$")
_LETTER_THEN_TEXT = re.compile(r"^[\(\[]?([A-E])(?:[\)\]]|[.:：]|\s+[-–—]\s)\s*\S")
_PHRASE = re.compile(
    r"(?i:answer|option|choice)(?:\s+(?i:is|would\s+be|should\s+be))?\s*[:：]?\s*"
    r"(?i:option\s+|choice\s+)?[\(\[]?\**([A-E])\**(?![A-Za-z])"
)
_MARKED = re.compile(r"\*\*\(?([A-E])\)?\*\*|\(([A-E])\)")
_OPTION_MARK = re.compile(r"(?:^|(?<=[\s(\[]))(?:\(([A-E])\)|\[([A-E])\]|([A-E])[.):：])(?=\s|$)", re.MULTILINE)


def parse_options(problem: str | None) -> dict[str, str]:
    """``{"A": "cat", "B": "dog"}`` from option lines such as ``A. cat`` / ``(B) dog`` / ``C: fish``,
    one per line or inline (``(A) 30 (B) 45``). The run must start at ``A`` and go in order."""
    if not isinstance(problem, str) or not problem:
        return {}
    marks = [(m.group(1) or m.group(2) or m.group(3), m.start(), m.end()) for m in _OPTION_MARK.finditer(problem)]
    best: list = []
    for k, (letter, _, _) in enumerate(marks):
        if letter != "A":
            continue
        run = [marks[k]]
        for mark in marks[k + 1 :]:
            if len(run) == len(LETTERS):
                break
            if mark[0] == LETTERS[len(run)]:
                run.append(mark)
        if len(run) >= 2:
            best = run  # the last complete run wins (options usually follow the question)
    options = {}
    for j, (letter, _, end) in enumerate(best):
        stop = best[j + 1][1] if j + 1 < len(best) else len(problem)
        text = problem[end:stop]
        if j + 1 == len(best):
            text = text.split("\n", 1)[0]
        options[letter] = text.strip()
    return options


def _clean(text: str) -> str:
    return " ".join(_DECOR.sub("", text).split())


def _key(text: str) -> str:
    return normalize(_clean(text))


def chosen_letter(region: str, options: dict[str, str]) -> str | None:
    """The option letter a completion's answer chooses, or None."""
    s = _clean(region)
    if not s:
        return None
    m = _LETTER_ONLY.match(s)
    if m:
        return m.group(1).upper()
    m = _LETTER_THEN_TEXT.match(s)
    if m:
        return m.group(1)
    found = _PHRASE.findall(s)
    if found:
        return found[-1]
    if options:
        target = _key(s)
        for letter, text in options.items():
            if text and _key(text) == target:
                return letter
    marked = {a or b for a, b in _MARKED.findall(region)}
    if len(marked) == 1:
        return marked.pop()
    return None


def mcq_reward(completions, solution=None, problem=None, choices=None, **kwargs):
    """1.0 if the option letter (A-E) chosen in the answer (last ``<answer>`` block, else last ``\\boxed{}``, else the completion) matches the ``solution`` letter, or the option whose text is the solution, else 0.0; None where the solution is missing. Reads ``solution`` and ``problem`` (options such as ``A. cat`` / ``(B) dog``), or a ``choices`` column (list of option texts); range {0, 1}.

    The answer is the last ``<answer>`` block, else the last ``\\boxed{}``, else the completion.
    Accepted forms: ``B``, ``(B)``, ``B.``, ``B)``, ``**B**``, ``B. dog``, "the answer is B", or the
    exact text of an option. A solution that is an option's text is mapped to its letter through the
    options; if it is not among them, the chosen option's text (or the answer itself) must equal it
    (case and whitespace ignored).
    """
    n = len(completions)
    solutions = _column(solution, n)
    problems = _column(problem, n)
    choice_lists = _column(choices, n)
    rewards: list[float | None] = []
    for completion, sol, prob, ch in zip(completions, solutions, problems, choice_lists):
        gold = solution_text(sol)
        if gold is None or not gold.strip():
            rewards.append(None)
            continue
        if isinstance(ch, (list, tuple)) and ch:
            options = {LETTERS[k]: str(t).strip() for k, t in enumerate(ch[: len(LETTERS)])}
        else:
            options = parse_options(prob)
        region, _ = final_answer(as_text(completion))
        region = region[-4000:]
        pred = chosen_letter(region, options)

        g = _clean(gold)
        m = _LETTER_ONLY.match(g) or _LETTER_THEN_TEXT.match(g)
        gold_letter = m.group(1).upper() if m else None
        if gold_letter is None and options:
            target = _key(g)
            gold_letter = next((k for k, t in options.items() if t and _key(t) == target), None)
        if gold_letter is not None:
            rewards.append(1.0 if pred == gold_letter else 0.0)
            continue
        # the solution is a text that is not one of the listed options
        said = options.get(pred, "") if pred else _clean(region)
        rewards.append(1.0 if said and _key(said) == _key(g) else 0.0)
    return rewards


def _column(values, n):
    if values is None or isinstance(values, (str, int, float)):
        return [values] * n
    values = list(values)
    if len(values) != n:
        raise ValueError(f"mcq: got {n} completions but a column with {len(values)} entries")
    return values
