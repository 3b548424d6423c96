"""The think/answer format reward."""

import re

THINK_ANSWER = re.compile(r"^\s*<think>.*?</think>\s*<answer>.*?</answer>\s*$", re.DOTALL)


def format_reward(completions, **kwargs):
    """1.0 if the completion is ``<think>...</think>`` then ``<answer>...</answer>`` and nothing after, else 0.0.

    Newlines are allowed inside both tags (MMR1's original regex lacked DOTALL). Reads no columns.
    """
    return [1.0 if THINK_ANSWER.match(c or "") else 0.0 for c in completions]
