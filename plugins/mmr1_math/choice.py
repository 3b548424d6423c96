"""The multiple-choice reward."""

from __future__ import annotations

import re

from mmr1_math.answers import (
    ALT_WORDS,
    as_text,
    final_answer,
    normalize,
    previous_alternative,
    sentence_start,
    solution_text,
)

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
    # A run from an "A" takes the first B after it, the first C after that B, and so on. ``after[L][k]``
    # is the index of the first mark with letter L at or after position k, built in one backward pass,
    # so each run costs at most len(LETTERS) look-ups: linear in the number of marks (a scan from every
    # "A" to the end was quadratic: 11 s on "A. " * 20000).
    after = {letter: [len(marks)] * (len(marks) + 1) for letter in LETTERS[1:]}
    for k in range(len(marks) - 1, -1, -1):
        for letter, table in after.items():
            table[k] = k if marks[k][0] == letter else table[k + 1]
    best: list = []
    for k in range(len(marks) - 1, -1, -1):  # the last run of two or more wins: search from the end
        if marks[k][0] != "A":
            continue
        run, pos = [marks[k]], k + 1
        for letter in LETTERS[1:]:
            nxt = after[letter][pos]
            if nxt == len(marks):
                break
            run.append(marks[nxt])
            pos = nxt + 1
        if len(run) >= 2:
            best = run  # the last complete run wins (options usually follow the question)
            break
    return options_of_run(problem, best)


def options_of_run(problem: str, run: list) -> dict[str, str]:
    """Each option's text: from its mark to the next one; the last option ends at its line's end."""
    options = {}
    for j, (letter, _, end) in enumerate(run):
        stop = run[j + 1][1] if j + 1 < len(run) else len(problem)
        text = problem[end:stop]
        if j + 1 == len(run):
            text = text.split("\n", 1)[0]
        options[letter] = text.strip()
    return options


def _clean(text: str) -> str:
    return " ".join(_DECOR.sub("", text).split())


def _key(text: str) -> str:
    return normalize(_clean(text))


#: Two distinct option letters offered as alternatives: "A or B", "A/B", "A, B, C", "(A) (B)",
#: "A. B. C.", "either A or B". The second letter must not start a sentence ("B. A cat barks", "A or
#: B is right" are read as prose), and a letter glued to a word ("Ab") is no option letter.
_LETTER_LIST = re.compile(
    r"(?<![A-Za-z])[\(\[]?([A-E])[\)\]]?(?![A-Za-z])"
    rf"[\s,;/|&.:]*+(?:(?i:{ALT_WORDS}|and|vs)(?![A-Za-z])\.?[\s,;/|&.:]*+)?"
    r"(?=[\(\[]?([A-E])[\)\]]?(?![A-Za-z])(?!\s+[A-Za-z]))"
)


def _listed(text: str) -> set[str]:
    """The distinct letters of the first list of alternative letters in ``text`` (empty if none)."""
    for m in _LETTER_LIST.finditer(text):
        if m.group(1) != m.group(2):
            return {m.group(1), m.group(2)}
    return set()


def _phrase_letter(s: str) -> str | None:
    """The letter of the last "the answer is X" / "option X" phrase (a later phrase corrects an
    earlier one), or None."""
    found = _PHRASE.findall(s)
    if found:
        return found[-1]
    return None


def read_choice(region: str, options: dict[str, str], whole: bool = False) -> tuple[str | None, bool]:
    """``(letter, hedged)``: the option letter a completion's answer chooses (or None), and whether the
    answer offers several distinct letters instead of one.

    Hedged: two answer phrases naming different letters ("the answer is A, the answer is B"), or a
    list of letters ("A or B", "A, B, C", "(A) (B)"). ``whole``: the region is a whole completion
    (no ``<answer>`` block, no ``\\boxed{}``), where the reasoning may discuss several options; only
    the sentence of the last answer phrase is checked, so "The answer is A. Wait, ..., so the answer
    is B." is a correction, not a hedge."""
    s = _clean(region)
    if not s:
        return None, False
    m = _LETTER_ONLY.match(s)
    if m:
        return m.group(1).upper(), False
    m = _LETTER_THEN_TEXT.match(s)
    if m:
        head = s[: _SENTENCE_END.search(s).end()] if whole and _SENTENCE_END.search(s) else s
        said = {p.group(1) for p in _PHRASE.finditer(head)} | {m.group(1)}
        return m.group(1), len(said) > 1 or bool(_listed(head))
    letter = _phrase_letter(s)
    if letter is not None:
        *_, last = _PHRASE.finditer(s)
        scope = s[sentence_start(s, last.start()) :] if whole else s
        said = {p.group(1) for p in _PHRASE.finditer(scope)}
        return letter, len(said) > 1 or bool(_listed(scope))
    if options:
        target = _key(s)
        for letter, text in options.items():
            if text and _key(text) == target:
                return letter, False
    marked = {a or b for a, b in _MARKED.findall(region)}
    if len(marked) == 1:
        return marked.pop(), False
    return None, bool(_listed(s)) if not whole else False


_SENTENCE_END = re.compile(r"[.!?](?=\s+(?![A-E](?![A-Za-z])))|\n")


def mcq_reward(completions, solution=None, problem=None, choices=None, **kwargs):
    """1.0 if the option letter (A-E) chosen in the answer (last ``<answer>`` block, else last ``\\boxed{}``, else the completion) matches the ``solution`` letter, or the option whose text is the solution, else 0.0; None where the solution is missing. Reads ``solution`` and ``problem`` (options such as ``A. cat`` / ``(B) dog``), or a ``choices`` column (list of option texts); range {0, 1}.

    The answer is the last ``<answer>`` block, else the last ``\\boxed{}``, else the completion.
    Accepted forms: ``B``, ``(B)``, ``B.``, ``B)``, ``**B**``, ``B. dog``, "the answer is B", or the
    exact text of an option. A solution that is an option's text is mapped to its letter through the
    options; if it is not among them, the chosen option's text (or the answer itself) must equal it
    (case and whitespace ignored). An answer that offers several distinct letters ("A or B", "the
    answer is A, the answer is B", ``<answer>A</answer> or <answer>B</answer>``) scores 0; see
    :func:`read_choice` and docs/rewards.md, "Hostile input and hedging".
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
        text = as_text(completion)
        region, source = final_answer(text)
        region = region[-4000:]
        pred, hedged = read_choice(region, options, whole=source == "whole")
        prev = previous_alternative(text, source)
        if prev is not None and read_choice(prev[-4000:], options)[0] not in (None, pred):
            hedged = True  # <answer>A</answer> or <answer>B</answer>
        if hedged:  # several distinct options offered: no single choice to score
            rewards.append(0.0)
            continue

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
