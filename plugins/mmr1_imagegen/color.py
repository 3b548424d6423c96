"""Rule-based colour check for generated images (no weights)."""

from __future__ import annotations

import colorsys
import re

import numpy as np
from PIL import Image

from mmr1.api import split_foreground
from mmr1_imagegen.text import MARKER, text_of

# Names the reward understands, with synonyms mapped to a palette name.
PALETTE = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink", "brown", "white", "gray", "black")
SYNONYMS = {
    "grey": "gray",
    "violet": "purple",
    "magenta": "pink",
    "turquoise": "cyan",
    "teal": "cyan",
}
_WORD = re.compile(r"\b(" + "|".join(sorted(set(PALETTE) | set(SYNONYMS), key=len, reverse=True)) + r")\b", re.IGNORECASE)


def color_name(rgb) -> str:
    """Name of the palette colour nearest to an RGB triple (0..255), by hue / saturation / value rules.

    value < 0.2 -> black; saturation < 0.2 -> white (value > 0.8) or gray; otherwise by hue:
    red < 15 deg, orange < 40 (brown when value < 0.6), yellow < 70, green < 160, cyan < 200,
    blue < 260, purple < 300, pink < 340, red above.
    """
    r, g, b = (float(c) / 255.0 for c in rgb)
    h, s, v = colorsys.rgb_to_hsv(r, g, b)
    hue = h * 360.0
    if v < 0.2:
        return "black"
    if s < 0.2:
        return "white" if v > 0.8 else "gray"
    if hue < 15 or hue >= 340:
        return "red" if v >= 0.45 or hue >= 340 else "brown"
    if hue < 40:
        return "orange" if v >= 0.6 else "brown"
    if hue < 70:
        return "yellow"
    if hue < 160:
        return "green"
    if hue < 200:
        return "cyan"
    if hue < 260:
        return "blue"
    if hue < 300:
        return "purple"
    return "pink"


def color_histogram(image: Image.Image, threshold: int = 48, max_side: int = 64) -> tuple[dict[str, int], str]:
    """(counts of palette names over the foreground pixels, background name).

    The background is the median colour of the border pixels; foreground pixels differ from it by
    more than ``threshold`` in some channel. With no foreground pixel the histogram is empty.
    """
    a, mask, background = split_foreground(image, threshold, max_side)
    fg = a[mask]
    counts: dict[str, int] = {}
    if len(fg):
        colours, n = np.unique(fg.reshape(-1, 3), axis=0, return_counts=True)
        for rgb, k in zip(colours, n):
            name = color_name(rgb)
            counts[name] = counts.get(name, 0) + int(k)
    return counts, color_name(background)


def asked_color(text: str) -> str | None:
    """The first palette colour word in ``text`` (special markers such as ``<|soi|>`` ignored)."""
    m = _WORD.search(MARKER.sub(" ", text or ""))
    if not m:
        return None
    word = m.group(1).lower()
    return SYNONYMS.get(word, word)


def color_fidelity(completions, *, generated_images=None, prompts=None, caption=None, soft=False, threshold=48, **kwargs):
    """1.0 if the image's dominant colour is the colour asked for in the prompt, else 0.0.

    The asked colour is the first colour word of the ``caption`` column (else of the prompt text);
    the image's colour is the palette name (red, orange, yellow, green, cyan, blue, purple, pink,
    brown, white, gray, black) covering most non-background pixels. ``soft: true`` in
    ``reward_kwargs`` gives instead the fraction of foreground pixels of the asked colour. Returns
    ``None`` (no opinion) when no colour word is found or the image is missing.
    """
    n = len(completions)
    if generated_images is None:
        raise ValueError("color_fidelity scores images: it needs the generated_images keyword (text-to-image jobs)")
    out: list[float | None] = []
    for i in range(n):
        text = caption[i] if caption is not None and caption[i] is not None else (prompts[i] if prompts is not None else "")
        if isinstance(text, dict):  # short / long captions
            text = text.get("short") or text.get("long") or ""
        want = asked_color(text_of(text))
        image = generated_images[i] if i < len(generated_images) else None
        if want is None or image is None:
            out.append(None)
            continue
        counts, background = color_histogram(image, threshold=threshold)
        if not counts:
            out.append(1.0 if background == want else 0.0)
            continue
        if soft:
            out.append(counts.get(want, 0) / float(sum(counts.values())))
        else:
            out.append(1.0 if max(sorted(counts), key=lambda k: counts[k]) == want else 0.0)
    return out
