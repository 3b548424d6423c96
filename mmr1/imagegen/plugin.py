"""Built-in text-to-image plugin: registers the ``t2i`` model adapter, rollout backend and data loaders.

- model adapter ``t2i``: :class:`mmr1.imagegen.adapter.T2IAdapter`;
- rollout backend ``t2i``: :class:`mmr1.imagegen.rollout.T2IRollout`;
- dataset loaders ``captions`` (GRPO prompts) and ``t2i_meta`` (extracted tokens for SFT), see
  :mod:`mmr1.imagegen.data`.

The trainer calls ``adapter.configure(config)`` when an adapter has that method (here:
``prompt_prefix``, ``max_prompt_length``).
"""

from __future__ import annotations

from mmr1.hookspecs import hookimpl
from mmr1.imagegen.adapter import T2IAdapter
from mmr1.imagegen.rollout import T2IRollout


@hookimpl
def register_models(register):
    register("t2i", T2IAdapter, description="Text-to-image causal LM with image tokens (SimpleAR; prepare_t2i folder).")


@hookimpl
def register_rollout_backends(register):
    register("t2i", T2IRollout, description="Image-token rollouts (optional CFG), decoded to images for the rewards.")


@hookimpl
def register_datasets(register):
    from mmr1.imagegen.data import load_captions, load_t2i_meta

    register("captions", load_captions, description="Caption prompts for text-to-image GRPO (.json / .jsonl / .txt).")
    register("t2i_meta", load_t2i_meta, description="Extracted image tokens for SimpleAR pretrain / SFT (meta JSON or mixture YAML).")
