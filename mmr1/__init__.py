"""mmr1: plugin-driven GRPO for vision-language and text-to-image models.

Plugins import from :mod:`mmr1.api`; this package exposes the plugin manager and its look-ups.
"""

from mmr1.hookspecs import hookimpl
from mmr1.plugins import (
    PluginError,
    get_dataset,
    get_image_tokenizer,
    get_model_adapter,
    get_plugin_manager,
    get_reward,
    get_rollout_backend,
    get_template,
    list_datasets,
    list_image_tokenizers,
    list_model_adapters,
    list_rewards,
    list_rollout_backends,
    list_templates,
    load_plugins,
)
from mmr1.registry import RegistryError

__version__ = "0.1.0"

__all__ = [
    "hookimpl",
    "PluginError",
    "RegistryError",
    "get_dataset",
    "get_image_tokenizer",
    "get_model_adapter",
    "get_plugin_manager",
    "get_reward",
    "get_rollout_backend",
    "get_template",
    "list_datasets",
    "list_image_tokenizers",
    "list_model_adapters",
    "list_rewards",
    "list_rollout_backends",
    "list_templates",
    "load_plugins",
]
