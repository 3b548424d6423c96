"""The think/answer format reward."""

import re

from mmr1_math.answers import as_text

# One think block then one answer block; neither may contain another think/answer tag, so
# "<answer>a</answer><answer>b</answer>" does not pass as one answer.
_BODY = r"(?:(?!</?think>|</?answer>).)*"
THINK_ANSWER = re.compile(rf"^\s*<think>{_BODY}</think>\s*<answer>{_BODY}</answer>\s*$", re.DOTALL)
ANSWER_ONLY = re.compile(rf"^\s*<answer>{_BODY}</answer>\s*$", re.DOTALL)
# MMR1's own pattern (``re.match``, no DOTALL): for ``mmr1_compat=True`` only.
MMR1_THINK_ANSWER = re.compile(r"^<think>.*?</think><answer>.*?</answer>$")


def format_reward(completions, answer_only=False, mmr1_compat=False, **kwargs):
    """1.0 if the completion is exactly ``<think>...</think><answer>...</answer>`` (whitespace around and between allowed), else 0.0; with option ``answer_only=True`` the completion must instead be exactly one ``<answer>...</answer>`` block. Reads no columns; range {0, 1}.

    Newlines are allowed inside both tags (MMR1's original regex lacked DOTALL). Neither block may
    contain another ``<think>``/``<answer>`` tag, and nothing may follow ``</answer>``. Option
    ``mmr1_compat=True`` applies MMR1's regex instead, ``^<think>.*?</think><answer>.*?</answer>$``
    without DOTALL: no newline inside a tag, no whitespace around or between the blocks.
    """
    if _flag(mmr1_compat):
        if _flag(answer_only):
            raise ValueError("format: options answer_only and mmr1_compat exclude each other; drop one")
        pattern = MMR1_THINK_ANSWER
    else:
        pattern = ANSWER_ONLY if _flag(answer_only) else THINK_ANSWER
    return [1.0 if pattern.match(as_text(c)) else 0.0 for c in completions]


def _flag(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)
