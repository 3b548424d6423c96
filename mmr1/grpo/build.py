"""What GRPO and SFT build the same way from the config: the accelerator, the policy model, AdamW, the lr scheduler."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass

import torch
from torch import nn

from mmr1.config import TrainConfig

log = logging.getLogger("mmr1.train")


def report_to(config: TrainConfig) -> list:
    """The trackers named by ``report_to`` (an empty list for ``none``)."""
    return [] if config.report_to in ("none", ["none"], None) else config.report_to


def start_trackers(accelerator, config: TrainConfig, default_name: str) -> bool:
    """Start the ``report_to`` trackers on the main process (run ``run_name``, else ``default_name``, with the
    config's scalar keys); True when there are trackers to log to."""
    trackers = report_to(config)
    if trackers and accelerator.is_main_process:
        accelerator.init_trackers(config.run_name or default_name,
                                  config={k: v for k, v in config.to_dict().items()
                                          if isinstance(v, (int, float, str, bool))})
    return bool(trackers)


def log_to_trackers(accelerator, stats: dict, step: int) -> None:
    """The numeric entries of ``stats`` to the trackers, at ``step``."""
    accelerator.log({k: v for k, v in stats.items() if isinstance(v, (int, float))}, step=step)


@dataclass(frozen=True)
class Precision:
    """The dtype weights are kept and optimised in, and accelerate's ``mixed_precision`` for the compute."""

    weights: torch.dtype
    autocast: str                # "bf16" or "no"


def precision(config: TrainConfig, use_gpu: bool | None = None) -> Precision:
    """The one dtype policy of every recipe: ``torch_dtype`` is the weights' dtype, ``auto`` meaning float32;
    ``bf16`` (default: on where a GPU is used) computes in bfloat16 under autocast over float32 weights, so
    AdamW's small updates are not rounded away as they are on bfloat16 weights. ``torch_dtype: bfloat16``
    keeps bfloat16 weights (half the memory, no autocast)."""
    use_gpu = torch.cuda.is_available() if use_gpu is None else use_gpu
    bf16 = config.bf16 if config.bf16 is not None else use_gpu
    weights = torch.float32 if config.torch_dtype == "auto" else getattr(torch, config.torch_dtype)
    return Precision(weights, "bf16" if bf16 and weights == torch.float32 else "no")


def build_accelerator(config: TrainConfig, **kwargs):
    """An ``Accelerator`` logging to ``report_to`` with ``output_dir`` as its project folder and the mixed
    precision of :func:`precision` (where a launch config has not set one)."""
    from accelerate import Accelerator

    mixed = precision(config).autocast
    if mixed != "no" and "mixed_precision" not in kwargs and not os.environ.get("ACCELERATE_MIXED_PRECISION"):
        kwargs["mixed_precision"] = mixed
    try:
        return Accelerator(log_with=report_to(config) or None, project_dir=config.output_dir, **kwargs)
    except ValueError as exc:      # accelerate's state was set up earlier in this process (another trainer)
        if "mixed_precision" not in kwargs or "already been initialized" not in str(exc):
            raise
        del kwargs["mixed_precision"]
        accelerator = Accelerator(log_with=report_to(config) or None, project_dir=config.output_dir, **kwargs)
        log.warning("accelerate was already initialised in this process with mixed precision %r; training "
                    "with that instead of %r", accelerator.mixed_precision, mixed)
        return accelerator


def freeze(model, config: TrainConfig, adapter_cls) -> None:
    """Apply ``freeze_vision_tower`` / ``train_parts``; the adapter says which part each parameter is in."""
    parts = {
        "all": {"vision", "projector", "language"},
        "language_model": {"language"},
        "projector": {"projector"},
        "projector+language_model": {"projector", "language"},
    }[config.train_parts]
    if config.freeze_vision_tower:
        parts = parts - {"vision"}
    for n, p in model.named_parameters():
        p.requires_grad_(adapter_cls.parameter_part(n) in parts)


def apply_lora(model, config: TrainConfig):
    """``model`` wrapped in LoRA adapters (``lora_r``, ``lora_alpha``, ``lora_dropout``, ``lora_target_modules``)."""
    from peft import LoraConfig, get_peft_model

    from mmr1.config import ConfigError

    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=config.lora_target_modules, task_type="CAUSAL_LM")
    try:
        return get_peft_model(model, lora)
    except ValueError as exc:
        if "not found" not in str(exc) and "target" not in str(exc).lower():
            raise
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise ConfigError(f"lora_target_modules {config.lora_target_modules!r} match no module of the model; its "
                          f"linear layers are named {', '.join(linear[:12])}{' ...' if len(linear) > 12 else ''} "
                          f"(or use all-linear)") from None


def load_policy(adapter_cls, config: TrainConfig, dtype: torch.dtype):
    """The model to train, in train mode: frozen parts, LoRA and gradient checkpointing applied as configured."""
    model = adapter_cls.load_model(config.model_name_or_path, dtype, config.attn_implementation)
    freeze(model, config, adapter_cls)
    if config.use_peft:
        model = apply_lora(model, config)
    if config.gradient_checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):        # transformers >= 5.2x
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    model.train()        # from_pretrained returns eval mode, where checkpointing (and dropout) never act
    return model


def build_optimizer(model, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters (``learning_rate``, ``adam_beta1/2``, ``weight_decay``)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("no trainable parameters: check train_parts / freeze_vision_tower / use_peft")
    return torch.optim.AdamW(params, lr=config.learning_rate, betas=(config.adam_beta1, config.adam_beta2),
                             weight_decay=config.weight_decay)


def build_scheduler(optimizer, config: TrainConfig, total_steps: int):
    """``lr_scheduler_type`` over ``total_steps`` with ``warmup_steps`` (else ``warmup_ratio``) and
    ``lr_scheduler_kwargs``."""
    from transformers import get_scheduler

    warmup = config.warmup_steps or math.ceil(config.warmup_ratio * total_steps)
    return get_scheduler(config.lr_scheduler_type, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps,
                         scheduler_specific_kwargs=dict(config.lr_scheduler_kwargs) or None)
