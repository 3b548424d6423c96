"""The public API for plugin authors: import from here, not from mmr1's internal modules.

Every name in ``__all__`` is supported across releases; anything else in ``mmr1.*`` may move.
Names whose modules import torch or numpy are loaded on first use, so ``from mmr1.api import
hookimpl, as_text`` stays as cheap as the reward that needs only those.
"""

from __future__ import annotations

import importlib

from mmr1.data.images import ImageLoadError, load_image, load_images
from mmr1.data.problems import DataError, DataProblem
from mmr1.grpo.rewards import RewardError, TrainerState, from_easyr1, from_trl
from mmr1.hookspecs import hookimpl
from mmr1.parsing import ANSWER_CLOSE, ANSWER_OPEN, answer_block, as_text
from mmr1.templates import Template

__all__ = [
    # hooks
    "hookimpl",
    # rewards
    "as_text",
    "answer_block",
    "ANSWER_OPEN",
    "ANSWER_CLOSE",
    "from_trl",
    "from_easyr1",
    "RewardError",
    "TrainerState",
    # images
    "load_image",
    "load_images",
    "ImageLoadError",
    "split_foreground",
    "foreground_mask",
    # what registered objects provide
    "Template",
    "DataProblem",
    "DataError",
    "ModelAdapter",
    "PromptBatch",
    "RolloutBackend",
    "Rollout",
    "SamplingParams",
    "ImageTokenizer",
]

# name -> module, imported on first access (these modules pull in torch or numpy)
_LAZY = {
    "split_foreground": "mmr1.imagegen.foreground",
    "foreground_mask": "mmr1.imagegen.foreground",
    "ModelAdapter": "mmr1.models.base",
    "PromptBatch": "mmr1.models.base",
    "RolloutBackend": "mmr1.rollout.base",
    "Rollout": "mmr1.rollout.base",
    "SamplingParams": "mmr1.rollout.base",
    "ImageTokenizer": "mmr1.imagegen.tokenizers",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mmr1.api' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
