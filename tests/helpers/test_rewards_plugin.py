"""A reward with variance even for a random model, for trainer tests."""

from mmr1.api import hookimpl


def vowel_share(completions, **kwargs):
    """Fraction of characters that are vowels (varies across random completions)."""
    return [sum(ch in "aeiou" for ch in c) / max(len(c), 1) for c in completions]


@hookimpl
def register_rewards(register):
    register("vowel_share", vowel_share)
