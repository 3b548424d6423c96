"""Configuration: a YAML file plus ``--key value`` overrides, into one typed dataclass.

Keys use trl's GRPOConfig names where trl has the concept, MMR1's names for MMR1's extras.
Configs written for MMR1, trl, SimpleAR, VLM-R1 or EasyR1 are read through :mod:`mmr1.migration`;
each translated or ignored key leaves one line in ``TrainConfig.translations``.
Every problem is reported with the file and key at fault, before any model loads.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mmr1 import migration
from mmr1.grpo import algorithms
from mmr1.registry import did_you_mean, short_repr


class ConfigError(ValueError):
    """An invalid configuration; the message names the file and the key."""


@dataclass
class TrainConfig:
    """Every key a YAML config may hold. ``mmr1 train CONFIG --key value`` overrides any of them."""

    # -- model -------------------------------------------------------------------------------
    model_name_or_path: str = ""               # local folder or hub id
    model_adapter: str = "auto"                # adapter name, or auto (from the model's config)
    torch_dtype: str = "auto"                  # auto | float32 | bfloat16 | float16 | float64 (numerics checks)
    attn_implementation: str | None = None     # sdpa | eager | flash_attention_2 | flex_attention | None
    freeze_vision_tower: bool = False
    train_parts: str = "all"                   # all | language_model | projector | projector+language_model
    gradient_checkpointing: bool = False
    use_peft: bool = False                     # LoRA through peft
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: list[str] | str = "all-linear"
    # -- plugins, data and prompts -----------------------------------------------------------
    plugins: list[str] = field(default_factory=list)  # module names or .py files (relative to the config)
    dataset: str = "json"                      # loader name: json | hf | shapes | a plugin's
    dataset_path: str | None = None
    dataset_kwargs: dict = field(default_factory=dict)
    eval_dataset_path: str | None = None
    eval_dataset_kwargs: dict = field(default_factory=dict)
    train_sample_size: int | None = None       # MMR1: use a subset of this many rows
    train_sample_mode: str = "random"          # random: a seeded random subset | first: the first rows (MMR1's)
    template: str = "default"
    system_prompt_template: str | None = None  # MMR1: override one part by template name
    question_template: str | None = None
    answer_template: str | None = None
    special_tokens_in_data: str = "refuse"     # a control token in a problem: refuse (name the row) | escape
    min_pixels: int | None = None              # Qwen pixel budget per image
    max_pixels: int | None = None
    # -- rewards -----------------------------------------------------------------------------
    rewards: list[str] = field(default_factory=lambda: ["accuracy", "format"])
    reward_weights: list[float] | None = None
    reward_kwargs: dict = field(default_factory=dict)  # {reward_name: {option: value}}
    reward_scale: float = 1.0                  # MMR1: multiply the summed reward
    reward_timeout: float = 120.0              # seconds one reward call may take (0: no deadline)
    # -- GRPO --------------------------------------------------------------------------------
    num_generations: int = 8                   # G completions per prompt
    per_device_train_batch_size: int = 8       # completions per device per micro-step (MMR1 mini-batch)
    dataloader_num_workers: int = 0            # SFT data-loading worker processes (0: in the main process)
    gradient_accumulation_steps: int = 1
    steps_per_generation: int | None = None    # micro-steps served by one rollout; default = gradient_accumulation_steps
    num_iterations: int = 1                    # optimizer passes over one rollout (mu)
    max_prompt_length: int | None = None
    max_completion_length: int = 256
    temperature: float = 1.0
    temperature_schedule: str = "constant"     # MMR1's; algorithms.TEMPERATURE_SCHEDULES
    temperature_begin: float = 0.1
    temperature_end: float = 1.0
    top_p: float = 1.0
    top_k: int | None = None
    repetition_penalty: float = 1.0
    loss_type: str = "dapo"                    # a name in algorithms.LOSS_TYPES
    epsilon: float = 0.2
    epsilon_high: float | None = None
    delta: float | None = None
    importance_sampling_level: str = "token"   # algorithms.IMPORTANCE_SAMPLING_LEVELS (sequence: GSPO)
    beta: float = 0.0                          # KL coefficient; a reference model loads only when > 0
    kl_approximator: str = "k3"                # a name or MMR1 alias in algorithms.KL_ESTIMATORS
    scale_rewards: str = "group"               # algorithms.SCALE_REWARDS
    no_mean_for_same_reward: bool = False
    mask_truncated_completions: bool = False
    entropy_weight: float = 0.0                # loss -= weight * entropy (MMR1's entropy_reg switches its own on)
    shared_prefix: bool = True                 # score a prompt once per group in training
    rollout_backend: str = "hf"
    # -- text-to-image (SimpleAR) -------------------------------------------------------------
    image_tokenizer: str | None = None         # "vq:path/to/folder" | "cosmos:path/to/jit-folder"
    image_resolution: int = 256                # generated image size in pixels (a multiple of the tokenizer's factor)
    rollout_cfg_scale: float = 1.0             # classifier-free guidance in rollouts (1 = off)
    negative_prompt: str | None = None
    prompt_prefix: str = "A photo of "
    p_drop_cond: float = 0.1                   # SFT: drop the caption (CFG training)
    sample_short: bool = True                  # SFT: pick the short caption half the time when both exist
    model_max_length: int | None = None        # SFT: visual tokens + text budget
    # -- optimisation ------------------------------------------------------------------------
    learning_rate: float = 1e-6
    lr_scheduler_type: str = "constant"        # any transformers scheduler name but the metric-driven ones
    lr_scheduler_kwargs: dict = field(default_factory=dict)  # the scheduler's own options, e.g. {min_lr_rate: 0.1}
    warmup_steps: int = 0
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    max_grad_norm: float = 1.0
    max_nonfinite_steps: int = 3               # stop after this many non-finite steps / opinion-less rollouts in a row
    max_steps: int = -1
    num_train_epochs: float = 1.0
    seed: int = 42
    bf16: bool | None = None                   # None = on when a GPU is used
    # -- output ------------------------------------------------------------------------------
    output_dir: str = "outputs/run"
    logging_steps: int = 1
    log_completions: bool = True
    num_completions_to_log: int = 8
    save_steps: int = 0                        # 0 = only at the end
    save_total_limit: int | None = None
    resume_from_checkpoint: str | None = None  # a checkpoint folder or "latest"
    report_to: list[str] | str = "none"        # none | wandb | tensorboard | [both]
    run_name: str | None = None
    disable_tqdm: bool = False
    # -- set by the loader -------------------------------------------------------------------
    config_path: str | None = None
    translations: list[str] = field(default_factory=list, repr=False, compare=False)  # one line per migrated key

    @property
    def config_dir(self) -> Path:
        return Path(self.config_path).resolve().parent if self.config_path else Path.cwd()

    def to_dict(self) -> dict:
        """Every user key and config_path (the translation notes are not configuration)."""
        out = dataclasses.asdict(self)
        out.pop("translations")
        return out


# transformers' schedulers mmr1 drives: {name: (its lr_scheduler_kwargs, groups of which one is required)}.
# num_warmup_steps / num_training_steps come from warmup_steps / warmup_ratio and max_steps.
SCHEDULER_KWARGS = {
    "linear": ((), ()),
    "cosine": (("num_cycles",), ()),
    "cosine_with_restarts": (("num_cycles",), ()),
    "polynomial": (("lr_end", "power"), ()),
    "constant": ((), ()),
    "constant_with_warmup": ((), ()),
    "inverse_sqrt": (("timescale",), ()),
    "cosine_with_min_lr": (("num_cycles", "min_lr", "min_lr_rate"), (("min_lr", "min_lr_rate"),)),
    "cosine_warmup_with_min_lr": (("num_cycles", "min_lr", "min_lr_rate", "warmup_lr_rate"),
                                  (("min_lr", "min_lr_rate"),)),
    "warmup_stable_decay": (("num_decay_steps", "num_stable_steps", "warmup_type", "decay_type", "min_lr_ratio",
                             "num_cycles"), (("num_decay_steps",),)),
}
SCHEDULER_OPTION_CHOICES = {"warmup_type": ("linear", "cosine", "1-sqrt"), "decay_type": ("linear", "cosine", "1-sqrt")}
# attn_implementation -> (the module it needs, how to install it, whether it needs a CUDA GPU).
ATTN_NEEDS = {"flash_attention_2": ("flash_attn", "pip install flash-attn --no-build-isolation", True),
              "flex_attention": ("torch.nn.attention.flex_attention", "torch >= 2.5", False)}


# The algorithm keys' values are their registries' names (live: entries registered later count too).
CHOICES = {
    "loss_type": algorithms.LOSS_TYPES.choices,
    "scale_rewards": algorithms.SCALE_REWARDS.choices,
    "temperature_schedule": algorithms.TEMPERATURE_SCHEDULES.choices,
    "importance_sampling_level": algorithms.IMPORTANCE_SAMPLING_LEVELS.choices,
    "kl_approximator": algorithms.KL_ESTIMATORS.choices,
    "torch_dtype": ("auto", "float32", "bfloat16", "float16", "float64"),
    "train_parts": ("all", "language_model", "projector", "projector+language_model"),
    "attn_implementation": ("sdpa", "eager", "flash_attention_2", "flex_attention"),
    "special_tokens_in_data": ("refuse", "escape"),
    "train_sample_mode": ("random", "first"),
    "lr_scheduler_type": tuple(SCHEDULER_KWARGS),
}
# transformers' other SchedulerType values: why mmr1's loop cannot drive them.
UNSUPPORTED_SCHEDULERS = {
    "reduce_lr_on_plateau": "it steps on a metric, which mmr1's GRPO loop does not pass",
    "greedy": "it steps on a metric, which mmr1's GRPO loop does not pass",
}
# accelerate's trackers (LoggerType values), plus none.
REPORT_TO = ("none", "all", "tensorboard", "wandb", "aim", "trackio", "comet_ml", "mlflow", "clearml", "dvclive",
             "swanlab")
_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_LOADER_TEXT = {"config_path": "the config file's own path", "translations": "the notes on migrated keys"}
_LOADER_KEYS = tuple(_LOADER_TEXT)
_USER_KEYS = [k for k in _FIELDS if k not in _LOADER_KEYS]


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")


def _coerce(value: Any, tp, key: str, where: str) -> Any:
    """Convert ``value`` to annotation ``tp`` or raise ConfigError naming the key."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        # A plain string stays a string when the union allows one ("all-linear" for list[str] | str),
        # unless it is a comma-separated list for a union that also takes a list.
        if isinstance(value, str) and str in args and not (
                "," in value and any(typing.get_origin(a) is list for a in args)):
            return value
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key, where)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]
    if origin is list:
        (inner,) = typing.get_args(tp) or (Any,)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            value = [value] if not isinstance(value, str) or "," not in value else [v.strip() for v in value.split(",")]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: key {key!r} must be a list, got {short_repr(value)}")
        return [_coerce(v, inner, key, where) for v in value]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: key {key!r} must be a mapping, got {short_repr(value)}")
        return value
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{where}: key {key!r} must be true or false, got {short_repr(value)}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{where}: key {key!r} must be an integer, got {short_repr(value)}")
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"{where}: key {key!r} must be an integer, got {short_repr(value)}") from None
        if not math.isfinite(number) or number != int(number):
            raise ConfigError(f"{where}: key {key!r} must be an integer, got {short_repr(value)}")
        return int(number)
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: key {key!r} must be a number, got {short_repr(value)}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: key {key!r} must be a number, got {short_repr(value)}") from None
    if tp is str:
        if value is None:
            raise ConfigError(f"{where}: key {key!r} is empty; give a value, or remove the key for the default")
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{where}: key {key!r} must be a string, got {short_repr(value)}")
        return str(value)
    return value


def _yaml_value(raw: str):
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def parse_overrides(args: list[str]) -> dict:
    """``["--lr", "1e-5", "--bf16=true"]`` -> ``{"lr": 1e-5, "bf16": True}``; values parsed as YAML.

    Several values after one flag (``--reward_funcs r1v_acc r1v_format``, as trl's and MMR1's parsers take
    lists) make a list; a bare flag is ``true``.
    """
    overrides, i = {}, 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise ConfigError(f"command line: expected --key value, got {arg!r}")
        key, i = arg[2:], i + 1
        if "=" in key:
            key, raw = key.split("=", 1)  # the value keeps its dashes (--output-dir=runs/a-b)
            values = [_yaml_value(raw)]
        else:
            values = []
            while i < len(args) and not args[i].startswith("--"):
                values.append(_yaml_value(args[i]))
                i += 1
        key = key.replace("-", "_")
        overrides[key] = True if not values else values[0] if len(values) == 1 else values
    return overrides


def build_config(data: dict, where: str = "config", config_path: str | None = None) -> TrainConfig:
    """A validated TrainConfig from a mapping in mmr1's or another project's shape (:mod:`mmr1.migration`);
    raises ConfigError listing every problem."""
    t = migration.translate(data or {}, where)
    return _build(t.values, where, config_path, t.notes, t.problems)


def _build(data: dict, where: str, config_path: str | None, notes: list[str], problems: list[str]) -> TrainConfig:
    problems, values = list(problems), {}
    for key, value in data.items():
        if key not in _USER_KEYS:
            hint = (f" {key} is set by mmr1 ({_LOADER_TEXT[key]}); remove it" if key in _LOADER_KEYS
                    else did_you_mean(str(key), _USER_KEYS + migration.known_keys()))
            problems.append(f"{where}: unknown key {key!r}.{hint}")
            continue
        try:
            values[key] = _coerce(value, typing.get_type_hints(TrainConfig)[key], key, where)
        except ConfigError as exc:
            problems.append(str(exc))
    for key, choices in CHOICES.items():
        if key in values and values[key] is not None and values[key] not in choices:
            problems.append(_choice_problem(key, values[key], choices, where))
            del values[key]
    config = TrainConfig(**values, config_path=config_path, translations=list(notes))
    problems += validate(config, where)
    if problems:
        raise ConfigError("\n".join(problems))
    return config


def _choice_problem(key: str, value, choices, where: str) -> str:
    if key == "lr_scheduler_type" and value in UNSUPPORTED_SCHEDULERS:
        return (f"{where}: lr_scheduler_type {value!r} is not supported: {UNSUPPORTED_SCHEDULERS[value]}; "
                f"use one of {', '.join(choices)}")
    null = " (or null for transformers' default)" if key == "attn_implementation" else ""
    hint = did_you_mean(str(value), choices) or did_you_mean(str(value).lower(), choices)
    if key == "scale_rewards" and str(value).lower() in ("true", "false"):
        hint = " (trl's older true / false are group / none here)"
    return f"{where}: {key} must be one of {', '.join(choices)}{null}, got {value!r}.{hint}"


def _requirement(low, strict: bool, high) -> str | None:
    """What :func:`_in_range` requires, in words: '> 0 and finite', 'in [0, 1)', ..."""
    if high is not None:
        return f"in [{low}, {high}{')' if strict else ']'}"
    if low is None:
        return "finite"
    return f"{'>' if strict else '>='} {low} and finite"


def _in_range(value, low, strict: bool, high) -> bool:
    if value is None or not math.isfinite(value):
        return False
    if low is not None and (value <= low if strict and high is None else value < low):
        return False
    return high is None or (value < high if strict else value <= high)


def _numeric_problems(c: TrainConfig, where: str) -> list[str]:
    """Finite numbers in their ranges: a NaN or inf here would train to NaN without a word."""
    near_greedy = "use a small value such as 0.01 for near-greedy sampling"
    temperatures = ["temperature"] + (["temperature_begin", "temperature_end"]
                                      if c.temperature_schedule == "linear" else [])
    checks = [(k, 0, True, None, near_greedy) for k in temperatures] + [
        ("learning_rate", 0, True, None, "use a positive step size such as 1e-6"),
        ("beta", 0, False, None, "0 turns the KL term off"),
        ("epsilon", 0, False, None, "epsilon and epsilon_high must be >= 0, e.g. 0.2"),
        ("epsilon_high", 0, False, None, "epsilon and epsilon_high must be >= 0, e.g. 0.28"),
        ("delta", 0, True, None, "delta caps the importance ratio: use a value above 1 + epsilon, e.g. 4"),
        ("entropy_weight", None, False, None, "0 turns the entropy term off"),
        ("reward_scale", None, False, None, "use e.g. 1.0"),
        ("max_grad_norm", 0, False, None, "use e.g. 1.0, or 0 to turn clipping off"),
        ("warmup_ratio", 0, False, 1, "it is a fraction of the training steps"),
        ("weight_decay", 0, False, None, "use e.g. 0.0 or 0.01"),
        ("adam_beta1", 0, True, 1, "use e.g. 0.9"),
        ("adam_beta2", 0, True, 1, "use e.g. 0.999"),
        ("reward_timeout", 0, False, None, "seconds per reward call; 0 turns the deadline off"),
        ("repetition_penalty", 0, True, None, "1.0 turns it off"),
        ("num_train_epochs", 0, False, None, "or set max_steps"),
    ]
    p = []
    for key, low, strict, high, fix in checks:
        value = getattr(c, key)
        if value is None and key in ("epsilon_high", "delta"):
            continue
        if not _in_range(value, low, strict, high):
            p.append(f"{where}: {key} must be {_requirement(low, strict, high)}, got {value!r}; {fix}")
    if not (_in_range(c.top_p, 0, False, 1) and c.top_p > 0):
        p.append(f"{where}: top_p must be in (0, 1], got {c.top_p!r}; it is the probability mass sampled from, "
                 f"1.0 turns it off")
    if c.use_peft and not (0 <= c.lora_dropout < 1):
        p.append(f"{where}: lora_dropout must be in [0, 1), got {c.lora_dropout!r}; use e.g. 0.05")
    for j, w in enumerate(c.reward_weights or []):
        if not math.isfinite(w):
            p.append(f"{where}: reward_weights[{j}] must be finite, got {w!r}; give a finite weight per reward")
    return p


def _count_problems(c: TrainConfig, where: str) -> list[str]:
    """Counts that must be >= 0 or >= 1."""
    p = []
    for key, low, fix in (("warmup_steps", 0, "use 0 for no warmup"),
                          ("save_steps", 0, "use 0 to save only at the end"),
                          ("max_nonfinite_steps", 1, "use e.g. 3")):
        if getattr(c, key) < low:
            p.append(f"{where}: {key} must be >= {low}, got {getattr(c, key)}; {fix}")
    for key, fix in (("save_total_limit", "or remove it to keep every checkpoint"),
                     ("train_sample_size", "or remove it to use every row"),
                     ("max_prompt_length", "or remove it for no limit"),
                     ("steps_per_generation", "or remove it to use gradient_accumulation_steps"),
                     ("min_pixels", "or remove it for the processor's default"),
                     ("max_pixels", "or remove it for the processor's default")):
        if getattr(c, key) is not None and getattr(c, key) < 1:
            p.append(f"{where}: {key} must be at least 1, got {getattr(c, key)}; give a positive count {fix}")
    if c.top_k is not None and c.top_k < 0:
        p.append(f"{where}: top_k must be >= 0, got {c.top_k}; use 0 or remove it to sample from every token")
    if c.use_peft and c.lora_r < 1:
        p.append(f"{where}: lora_r must be at least 1, got {c.lora_r}; use e.g. 16")
    if not 0 <= c.seed < 2 ** 32:
        p.append(f"{where}: seed must be in [0, 2**32 - 1], got {c.seed}; numpy and torch refuse other seeds")
    return p


def _deadline_problems(c: TrainConfig, where: str) -> list[str]:
    """reward_timeout bounds a whole reward call, so it must leave room for a reward's own per-sample timeout."""
    p = []
    for name, options in (c.reward_kwargs or {}).items():
        own = options.get("timeout") if isinstance(options, dict) else None
        if c.reward_timeout and isinstance(own, (int, float)) and own >= c.reward_timeout:
            p.append(f"{where}: reward_timeout ({c.reward_timeout:g} s) must be above reward {name!r}'s own "
                     f"timeout option ({own:g} s); raise reward_timeout, or set it to 0 for no deadline")
        budget = options.get("budget") if isinstance(options, dict) else None
        if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not budget:
            continue
        if isinstance(own, (int, float)) and not isinstance(own, bool) and own > 0 and not budget >= own:
            p.append(f"{where}: reward_kwargs.{name}.budget ({budget:g} s per call) must be at least its timeout "
                     f"({own:g} s per sample), or 0 for no budget")
        if c.reward_timeout and budget >= c.reward_timeout:
            p.append(f"{where}: reward_kwargs.{name}.budget ({budget:g} s) must be below reward_timeout "
                     f"({c.reward_timeout:g} s), which would otherwise end the call before its budget returns "
                     f"partial scores; lower the budget or raise reward_timeout")
    return p


def _scheduler_problems(c: TrainConfig, where: str) -> list[str]:
    """lr_scheduler_kwargs against the scheduler's own options: unknown, missing, clashing or ill-typed ones."""
    if c.lr_scheduler_type not in SCHEDULER_KWARGS or not isinstance(c.lr_scheduler_kwargs, dict):
        return []
    name, kwargs = c.lr_scheduler_type, c.lr_scheduler_kwargs
    options, required = SCHEDULER_KWARGS[name]
    p = []
    for key, value in kwargs.items():
        if key in ("num_warmup_steps", "num_training_steps", "last_epoch"):
            p.append(f"{where}: lr_scheduler_kwargs.{key} is set by mmr1 (from warmup_steps / warmup_ratio and "
                     f"max_steps); remove it")
        elif key not in options:
            takers = [s for s, (opts, _) in SCHEDULER_KWARGS.items() if key in opts]
            hint = did_you_mean(str(key), options) or (f" It belongs to lr_scheduler_type {' or '.join(takers)}."
                                                       if takers else "")
            takes = f"takes {', '.join(options)}" if options else "takes no lr_scheduler_kwargs"
            p.append(f"{where}: lr_scheduler_kwargs.{key} is not an option of lr_scheduler_type {name}, which "
                     f"{takes}.{hint}")
        elif key in SCHEDULER_OPTION_CHOICES and value not in SCHEDULER_OPTION_CHOICES[key]:
            p.append(f"{where}: lr_scheduler_kwargs.{key} must be one of {', '.join(SCHEDULER_OPTION_CHOICES[key])}, "
                     f"got {value!r}")
        elif key not in SCHEDULER_OPTION_CHOICES and (isinstance(value, bool) or not isinstance(value, (int, float))
                                                      or not math.isfinite(value) or value < 0):
            p.append(f"{where}: lr_scheduler_kwargs.{key} must be a number >= 0, got {short_repr(value)}")
    for group in required:
        given = [k for k in group if k in kwargs]
        if not given:
            p.append(f"{where}: lr_scheduler_type {name} needs lr_scheduler_kwargs.{' or '.join(group)}, e.g. "
                     f"lr_scheduler_kwargs: {{{group[-1]}: {0.1 if 'rate' in group[-1] else 100}}}")
        elif len(given) > 1:
            p.append(f"{where}: lr_scheduler_kwargs gives {' and '.join(given)}; lr_scheduler_type {name} takes "
                     f"one of them")
    return p


def _module_available(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _attn_problems(c: TrainConfig, where: str) -> list[str]:
    """An attention implementation whose package (or GPU) is missing fails at model load: say so now."""
    if c.attn_implementation not in ATTN_NEEDS:
        return []
    module, install, needs_cuda = ATTN_NEEDS[c.attn_implementation]
    if not _module_available(module):
        return [f"{where}: attn_implementation {c.attn_implementation} needs {module}, which is not installed "
                f"({install}); use attn_implementation: sdpa"]
    if needs_cuda and not _cuda_available():
        return [f"{where}: attn_implementation {c.attn_implementation} needs a CUDA GPU, and this machine has none; "
                f"use attn_implementation: sdpa"]
    return []


def validate(c: TrainConfig, where: str = "config") -> list[str]:
    """Cross-key checks that need no model or plugin."""
    p = []
    positive = ("num_generations", "per_device_train_batch_size", "gradient_accumulation_steps",
                "num_iterations", "max_completion_length", "logging_steps")
    for key in positive:
        if getattr(c, key) < 1:
            p.append(f"{where}: {key} must be at least 1, got {getattr(c, key)}")
    if c.dataloader_num_workers < 0:
        p.append(f"{where}: dataloader_num_workers must be 0 or more, got {c.dataloader_num_workers}")
    if c.num_generations < 2:
        p.append(f"{where}: num_generations must be at least 2 (GRPO compares completions of one prompt)")
    if c.reward_weights is not None and len(c.reward_weights) != len(c.rewards):
        p.append(f"{where}: reward_weights has {len(c.reward_weights)} entries but rewards has "
                 f"{len(c.rewards)} ({c.rewards}); give one weight per reward")
    if not c.rewards:
        p.append(f"{where}: rewards is empty; name at least one reward (see `mmr1 list`)")
    repeated = sorted({r for r in c.rewards if c.rewards.count(r) > 1})
    if repeated:
        p.append(f"{where}: reward {repeated[0]!r} is listed {c.rewards.count(repeated[0])} times in rewards; "
                 f"list it once, and use reward_weights to weight it")
    for name, options in (c.reward_kwargs or {}).items():
        if not isinstance(options, dict):
            p.append(f"{where}: reward_kwargs: the options of reward {name!r} must be a mapping such as "
                     f"{{timeout: 5}}, got {short_repr(options)}")
    unknown = set(c.reward_kwargs) - set(c.rewards)
    if unknown:
        name = sorted(unknown)[0]
        p.append(f"{where}: reward_kwargs has options for {name!r}, which is not in rewards {c.rewards}."
                 f"{did_you_mean(name, c.rewards)}")
    p += _numeric_problems(c, where) + _count_problems(c, where) + _deadline_problems(c, where)
    p += _scheduler_problems(c, where) + _attn_problems(c, where)
    if not str(c.output_dir).strip():
        p.append(f"{where}: output_dir is empty; name the folder for checkpoints and final/, e.g. outputs/run")
    reports = [c.report_to] if isinstance(c.report_to, str) else list(c.report_to or [])
    for name in reports:
        if name not in REPORT_TO:
            p.append(f"{where}: report_to must be one of {', '.join(REPORT_TO)} (or a list of them), got {name!r}."
                     f"{did_you_mean(str(name), REPORT_TO)}")
    if c.torch_dtype == "float16":
        p.append(f"{where}: torch_dtype float16 cannot train; use bfloat16 or float32: float16 training needs "
                 f"a loss scaler, which mmr1's GRPO loop does not use")
    if c.min_pixels and c.max_pixels and c.min_pixels > c.max_pixels:
        p.append(f"{where}: min_pixels ({c.min_pixels}) is larger than max_pixels ({c.max_pixels})")
    if c.max_steps < 1 and c.num_train_epochs <= 0:
        p.append(f"{where}: set max_steps or a positive num_train_epochs")
    return p


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice (lines {seen[key] + 1} and {key_node.start_mark.line + 1}); "
                    f"keep one", key_node.start_mark)
            if isinstance(key, str):
                seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's error on one line: where, what, and in what construct (its own text spans several lines)."""
    problem, mark = getattr(exc, "problem", None), getattr(exc, "problem_mark", None)
    if not problem:
        return ": " + " ".join(str(exc).split())
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context:
        context = " ".join(context.split())
        if context_mark is not None and (mark is None or context_mark.line != mark.line):
            context += f" at line {context_mark.line + 1}"
        problem = f"{problem} ({context})"
    if "'\\t'" in problem:
        problem += "; YAML indents with spaces, not tabs"
    return f"{where}: {' '.join(problem.split())}"


def _merged(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_config(path: str | Path | None, overrides: list[str] | dict | None = None) -> TrainConfig:
    """Read a YAML config, apply ``--key value`` overrides, validate."""
    data = {}
    where = "command line"
    if path is not None:
        path = Path(path)
        where = str(path)
        if path.is_dir():
            raise ConfigError(f"{path}: is a folder, not a config file; give the YAML file's path")
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader) or {}
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                              f"re-save the file as UTF-8") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML{_yaml_problem(exc)}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the config must be a mapping of keys to values")
    extra = (parse_overrides(overrides) if isinstance(overrides, list) else dict(overrides)) if overrides else {}
    translated = migration.translate(data, where, context=extra)
    values, notes, problems = translated.values, translated.notes, []
    if overrides:
        over = migration.translate(extra, "command line")
        for key, value in over.values.items():
            if key not in _USER_KEYS:
                problems.append(f"command line: unknown option --{key}.{did_you_mean(key, _USER_KEYS)}")
            elif key in over.partial and isinstance(values.get(key), dict):
                values[key] = _merged(values[key], value)     # --dataset_train_split: one key of dataset_kwargs
            else:
                values[key] = value
        notes, problems = notes + over.notes, problems + over.problems
        where = f"{where} (+ command-line overrides)" if path else where
    try:
        config = _build(values, where, str(path) if path else None, notes, translated.problems)
    except ConfigError as exc:
        problems.append(str(exc))
    if problems:  # every problem at once: bad options on the command line and in the file
        raise ConfigError("\n".join(problems))
    return config
