"""The text an image reward compares an image with: prompts and captions as plain strings."""

from __future__ import annotations

import re

MARKER = re.compile(r"<\|[^|<>]*\|>")   # special markers such as <|t2i|> and <|soi|>


def text_of(prompt) -> str:
    """Plain text of a prompt: a string, or chat messages (content strings or text parts; system turns dropped)."""
    if prompt is None:
        return ""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, dict):
        return text_of(prompt.get("content", prompt.get("text", "")))
    if isinstance(prompt, (list, tuple)):
        return " ".join(text_of(p) for p in prompt if not (isinstance(p, dict) and p.get("role") == "system"))
    return str(prompt)


def texts_for(n, prompts=None, caption=None) -> list[str]:
    """The text each of ``n`` images is compared with: the ``caption`` column (the long caption of a
    short/long pair), else the prompt text; markers removed, whitespace collapsed."""
    out = []
    for i in range(n):
        text = None
        if caption is not None and i < len(caption) and caption[i] is not None:
            text = caption[i]
            if isinstance(text, dict):  # short / long captions
                text = text.get("long") or text.get("short") or ""
            elif isinstance(text, (list, tuple)):
                text = text[-1] if text else ""
        elif prompts is not None and i < len(prompts):
            text = text_of(prompts[i])
        out.append(" ".join(MARKER.sub(" ", text or "").split()))
    return out
