"""The trivial reward the trainer benches (``vs_trl.py``, ``gpu_scale.py``) train with, and its registration.

Imported by those scripts from their own folder (``python bench/SCRIPT.py`` puts it on ``sys.path``).
"""

from __future__ import annotations


def length_reward(completions, **kwargs):
    """The completion's length in characters / 100 (plain text, or trl's conversational messages)."""
    out = []
    for c in completions:
        if isinstance(c, list):           # trl passes conversational completions as messages
            c = "".join(m.get("content", "") if isinstance(m.get("content"), str) else "" for m in c)
        out.append(len(c) / 100.0)
    return out


def register_length_reward(plugin_name: str) -> None:
    """Make ``length_reward`` mmr1's reward ``bench_length`` in this process, as the plugin ``plugin_name``."""
    import types

    import mmr1
    from mmr1.plugins import get_plugin_manager

    plugin = types.ModuleType(f"{plugin_name}_rewards")

    @mmr1.hookimpl
    def register_rewards(register):
        register("bench_length", length_reward)

    plugin.register_rewards = register_rewards
    get_plugin_manager().add_module(plugin, plugin_name=plugin_name)
