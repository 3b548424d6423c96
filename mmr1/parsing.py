"""Helpers for reward authors: reading model output as data (plain string work, never ``eval``)."""

from __future__ import annotations

ANSWER_OPEN = "<answer>"
ANSWER_CLOSE = "</answer>"


def as_text(completion) -> str:
    """A completion as a string: strings as they are, ``None`` as ``""``, a trl-style conversation
    (``[{"role": "assistant", "content": ...}]``) as the text of its last message."""
    if isinstance(completion, str):
        return completion
    if completion is None:
        return ""
    if isinstance(completion, (list, tuple)) and completion and isinstance(completion[-1], dict):
        content = completion[-1].get("content", "")
        if isinstance(content, list):  # content parts: keep the text ones
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        return content if isinstance(content, str) else ""
    return str(completion)


def answer_block(text: str) -> str | None:
    """The contents of the last closed ``<answer>...</answer>`` block, or None (linear time)."""
    end = text.rfind(ANSWER_CLOSE)
    if end == -1:
        return None
    start = text.rfind(ANSWER_OPEN, 0, end)
    if start == -1:
        return None
    return text[start + len(ANSWER_OPEN) : end]
