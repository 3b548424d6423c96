"""Built-in model adapters and ``model_adapter: auto`` resolution."""

from __future__ import annotations

from mmr1.hookspecs import hookimpl
from mmr1.models.base import ModelAdapter
from mmr1.models.qwen_vl import QwenVLAdapter


class Qwen2VLAdapter(QwenVLAdapter):
    """Qwen2-VL: same processor and m-rope as Qwen2.5-VL."""

    name = "qwen2_vl"


@hookimpl
def register_models(register):
    register("qwen2_5_vl", QwenVLAdapter)
    register("qwen2_vl", Qwen2VLAdapter)
    register("causal_lm", ModelAdapter, description="Any transformers causal LM (text only).")


def resolve_adapter(model_name_or_path: str, name: str = "auto"):
    """The adapter class for a model: by name, or (auto) the first whose ``matches`` accepts its config."""
    from mmr1.plugins import get_model_adapter, get_plugin_manager

    if name != "auto":
        return get_model_adapter(name)
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_name_or_path)
    entries = get_plugin_manager().registry("register_models").entries()
    generic = [e for e in entries if e.obj is ModelAdapter]
    for entry in [e for e in entries if e.obj is not ModelAdapter] + generic:
        if entry.obj.matches(config):
            return entry.obj
    raise ValueError(f"no model adapter matches model_type {config.model_type!r}; set model_adapter")
