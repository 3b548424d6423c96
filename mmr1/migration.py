"""Configs written for MMR1, trl, SimpleAR, VLM-R1 and EasyR1, read as mmr1 configs.

The migration is data: :data:`SOURCES` holds one :class:`Source` per project, whose ``keys`` table maps
each of its config keys to an entry:

- a string or :class:`Rename`: the key is that mmr1 key (a dotted name reaches into a mapping, e.g.
  ``dataset_kwargs.split``), optionally with a table of their values -> ours, or a conversion;
- :class:`Ignore`: mmr1 does not need the key, and says why (with ``only``: for those values only; any
  other value is an error naming what to do instead);
- :class:`Refuse`: the key asks for something mmr1 does not do: an error naming the mmr1 way;
- :class:`Rule`: the key's meaning depends on the keys around it (MMR1's ``entropy_reg`` switch reads
  ``entropy_weight``); the keys it ``reads`` are settled by it, not on their own;
- :class:`Section`: a nested mapping (EasyR1's ``data:``, ``worker:`` ...) with a table of its own.

A source's ``values`` table holds value aliases of mmr1 keys whatever key gave them (MMR1's
``kl_approximator: kimifull``). :func:`translate` applies every table to a config mapping and returns the
mmr1 keys, one note per translated or ignored key, and the problems (a key and its alias given together,
a refused key or value); :mod:`mmr1.config` calls it before validating.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Union

from mmr1.registry import did_you_mean

#: in a :class:`Rename` value table: leave the mmr1 key at its default (their ``null`` meaning "unset").
DEFAULT = "<mmr1 default>"


@dataclass(frozen=True)
class Rename:
    """Their key is mmr1's ``target``; ``values`` translates listed values, ``convert`` any value
    (raising ``ValueError(reason)`` to refuse it)."""

    target: str
    values: dict | None = None
    convert: Callable[[Any], Any] | None = None
    note: str = ""


@dataclass(frozen=True)
class Ignore:
    """Accepted and ignored because ``why``; with ``only``, only for those values (others: error, ``fix``)."""

    why: str
    only: tuple | None = None
    fix: str = ""


@dataclass(frozen=True)
class Refuse:
    """Needed, but not in mmr1: an error saying ``fix``."""

    fix: str


@dataclass(frozen=True)
class Rule:
    """``fn(value, mapping, root) -> ({mmr1 key: value}, note)``; the keys in ``reads`` are settled by it."""

    fn: Callable[[Any, dict, dict], tuple[dict, str]]
    doc: str
    reads: tuple[str, ...] = ()


@dataclass(frozen=True)
class Section:
    """A nested mapping with its own table."""

    table: dict


Entry = Union[str, Rename, Ignore, Refuse, Rule, Section]


@dataclass(frozen=True)
class Source:
    name: str
    keys: dict[str, Entry]
    values: dict[str, dict] = field(default_factory=dict)   # mmr1 key -> {their value: ours | Refuse}


@dataclass
class Translation:
    """What :func:`translate` made of a mapping."""

    values: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    partial: set = field(default_factory=set)    # mapping keys built from dotted targets alone


# -- helpers the rules use ---------------------------------------------------------------------------
def show(value) -> str:
    """A value as a YAML user would write it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(show, value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {show(v)}" for k, v in value.items()) + "}"
    return str(value)


def _flag(value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
        return value.lower() in ("true", "yes", "1")
    raise ValueError(f"must be true or false, got {show(value)}")


def _same(a, b) -> bool:
    """Equal, with numbers compared as numbers (PyYAML reads ``1e-8`` as a string)."""
    if a == b and type(a) is type(b) or (a is None and b is None):
        return True
    if isinstance(a, bool) or isinstance(b, bool):
        return False
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return False


def _get(root: dict, dotted: str, default=None):
    node = root
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def _split_at(spec: str) -> tuple[str, str | None]:
    """EasyR1's ``name@split`` (``hiyouga/math12k@train``) -> (name, split)."""
    head, at, tail = str(spec).rpartition("@")
    if at and head and tail.isidentifier():
        return head, tail
    return str(spec), None


def _is_json(path: str) -> bool:
    return str(path).lower().endswith((".json", ".jsonl"))


# -- MMR1 ---------------------------------------------------------------------------------------------
def _entropy_reg(value, given, root):
    try:
        on = _flag(value)
    except ValueError:
        raise ValueError(f"is MMR1's on/off switch (true / false), got {show(value)}; give the coefficient as "
                         f"entropy_weight: {show(value)} (with entropy_reg: true)") from None
    if not on:
        weight = given.get("entropy_weight")
        unused = f" (entropy_weight {show(weight)} unused, as in MMR1)" if "entropy_weight" in given else ""
        return {"entropy_weight": 0.0}, f"read as entropy_weight 0: the entropy term is off{unused}"
    if "entropy_weight" in given:
        return {"entropy_weight": given["entropy_weight"]}, "read as: use entropy_weight (given)"
    return {"entropy_weight": 0.01}, "read as entropy_weight 0.01 (MMR1's default coefficient)"


def _use_kl(value, given, root):
    if not _flag(value):
        unused = f" (beta {show(given['beta'])} unused, as in MMR1)" if "beta" in given else ""
        return {"beta": 0.0}, f"read as beta 0: no KL term{unused}"
    if "beta" in given:
        return {"beta": given["beta"]}, "read as: the KL term is on when beta > 0 (beta given)"
    return {"beta": 0.04}, "read as beta 0.04 (trl's default when MMR1 was written; mmr1's own default is 0)"


def _prompt_template(value, given, root):
    names = {"reasoning": "r1v", "qwen2": "qwen"}
    if "system_prompt_template" in given:
        return ({"system_prompt_template": given["system_prompt_template"]},
                "is not needed: system_prompt_template is given (MMR1's later scripts read that one)")
    ours = names.get(value, value)
    return {"system_prompt_template": ours}, f"read as system_prompt_template {show(ours)}"


def _dataset_name(value, given, root):
    if "data_path" in root:       # SimpleAR reads data_path; its dataset_name is a placeholder
        out = {"dataset_path": root["data_path"], **({"dataset": given["dataset"]} if "dataset" in given else {})}
        return out, f"is not needed: data_path {show(root['data_path'])} names the data (read as dataset_path)"
    if str(value).lower().endswith((".yaml", ".yml")):
        raise ValueError("is a data-mixture YAML, which mmr1 does not read: give one JSON / JSONL file (or a "
                         "hub / save_to_disk data set) as dataset_path")
    path, split = _split_at(value)
    loader = given.get("dataset") or ("json" if "json" in str(path).lower() else "hf")
    out = {"dataset_path": path, "dataset": loader, **({"dataset_kwargs.split": split} if split else {})}
    return out, f"read as dataset_path {show(path)}, dataset {loader}" + (f", split {split}" if split else "")


# -- trl ----------------------------------------------------------------------------------------------
def _train_split(value, given, root):
    data = next((str(root[k]) for k in ("dataset_name", "data_path", "dataset_path") if root.get(k)), "")
    if not _is_json(_split_at(data)[0]):
        return {"dataset_kwargs.split": value}, "read as dataset_kwargs.split"
    if value == "train":
        return {}, f"is not needed: {data} is a JSON file, which holds one split"
    raise ValueError(f"names split {show(value)}, but {data} is a JSON file, which holds one split (train)")


def _save_strategy(value, given, root):
    steps = given.get("save_steps", 500)
    if value == "no":
        return {"save_steps": 0}, "read as save_steps 0: mmr1 saves final/ at the end only"
    if value == "steps":
        return {"save_steps": steps}, f"read as save_steps {show(steps)} (trl's default 500 unless given)"
    raise ValueError("is not supported: mmr1 saves by step; set save_steps (0: only at the end)")


# -- VLM-R1 -------------------------------------------------------------------------------------------
def _data_file_paths(value, given, root):
    files = [f for f in str(value).split(":") if f]
    if len(files) != 1:
        raise ValueError(f"names {len(files)} files; mmr1 reads one data file: concatenate them "
                         f"(cat a.jsonl b.jsonl > all.jsonl) and give that one")
    columns = {"conversations.0.value": "problem", "conversations.1.value": "solution"}
    return ({"dataset_path": files[0], "dataset_kwargs.columns": columns},
            "read as dataset_path, with VLM-R1's conversations columns (dataset_kwargs.columns)")


def _folders(value):
    folders = [f for f in str(value).split(":") if f]
    return folders[0] if len(folders) == 1 else folders


# -- EasyR1 -------------------------------------------------------------------------------------------
def _data_files(target: str):
    kwargs = "dataset_kwargs" if target == "dataset_path" else "eval_dataset_kwargs"

    def rule(value, given, root):
        path, split = _split_at(value)
        out = {target: path, **({f"{kwargs}.split": split} if split else {})}
        if target == "dataset_path" and not _is_json(path) and "dataset" not in root:
            out["dataset"] = "hf"
        extra = (f", {kwargs}.split {split}" if split else "") + (", dataset hf" if "dataset" in out else "")
        return out, f"read as {target} {show(path)}{extra}"

    return Rule(rule, f"`{target}` (`NAME@split`: the split into `{kwargs}.split`; not JSON: `dataset: hf`)")


def _column(ours: str, same: tuple):
    """EasyR1's ``prompt_key: question`` -> ``dataset_kwargs.columns: {question: problem}``."""
    def rule(value, given, root):
        if value in same:
            return {}, f"is not needed: {show(value)} is a column name mmr1 reads itself"
        return {f"dataset_kwargs.columns.{value}": ours}, f"read as dataset_kwargs.columns {{{value}: {ours}}}"
    return Rule(rule, f"`dataset_kwargs.columns: {{COLUMN: {ours}}}`")


def _easyr1_layout(target: str, what: str):
    """data.rollout_batch_size / worker.actor.global_batch_size (prompts) -> micro-steps per device."""
    def rule(value, given, root):
        n = _get(root, "worker.rollout.n", 1)
        micro = _get(root, "worker.actor.micro_batch_size_per_device_for_update")
        processes = _get(root, "trainer.nnodes", 1) * _get(root, "trainer.n_gpus_per_node", 8)
        if not isinstance(micro, int) or micro < 1:
            raise ValueError("needs worker.actor.micro_batch_size_per_device_for_update (completions per device "
                             "per micro-step) to be translated; give it")
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be a whole number of prompts, got {show(value)}")
        completions = value * n
        steps = completions / (processes * micro)
        if steps < 1 or steps != int(steps):
            raise ValueError(f"({value} prompts x {n} completions = {completions}) does not split into whole "
                             f"micro-steps of {processes} processes x {micro} completions; set {target} yourself")
        return ({target: int(steps)},
                f"read as {target} {int(steps)} ({what}: {value} prompts x {n} completions / ({processes} processes "
                f"(trainer.nnodes x n_gpus_per_node) x {micro} per device))")
    return Rule(rule, f"`{target}` = prompts x `worker.rollout.n` / (processes x micro batch)")


def _easyr1_disable_kl(value, given, root):
    if _flag(value):
        unused = f" (kl_coef {show(given['kl_coef'])} unused, as in EasyR1)" if "kl_coef" in given else ""
        return {"beta": 0.0}, f"read as beta 0: no KL term{unused}"
    if "kl_coef" in given:
        return {"beta": given["kl_coef"]}, "read as: beta from kl_coef"
    return {}, "is not needed: mmr1 adds the KL term when beta > 0"


def _easyr1_kl_loss(value, given, root):
    if _flag(value) or _flag(given.get("disable_kl", False)):
        return {}, "is not needed: mmr1 puts the KL term in the loss (beta)"
    raise ValueError("false puts the KL penalty in the reward, which mmr1 does not do: set use_kl_loss: true "
                     "(KL in the loss, weighted by kl_coef) or disable_kl: true")


def _easyr1_scheduler(value, given, root):
    if value == "constant":
        return {"lr_scheduler_type": "constant_with_warmup"}, "read as lr_scheduler_type constant_with_warmup"
    if value == "cosine":
        rate = given.get("min_lr_ratio")
        if rate:
            return ({"lr_scheduler_type": "cosine_with_min_lr", "lr_scheduler_kwargs.min_lr_rate": rate},
                    f"read as lr_scheduler_type cosine_with_min_lr, lr_scheduler_kwargs.min_lr_rate {show(rate)}")
        return {"lr_scheduler_type": "cosine"}, "read as lr_scheduler_type cosine"
    raise ValueError("must be constant or cosine (EasyR1's two), or give mmr1's lr_scheduler_type")


def _easyr1_lora_rank(value, given, root):
    if value:
        return {"use_peft": True, "lora_r": value}, f"read as use_peft true, lora_r {show(value)}"
    return {}, "is not needed: LoRA off (use_peft false)"


def _easyr1_betas(value):
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"must be two numbers [beta1, beta2], got {show(value)}")
    return value


def _easyr1_logger(value):
    kept = [v for v in ([value] if isinstance(value, str) else list(value)) if v not in ("console", "file")]
    return kept or "none"


def _easyr1_reward_function(value, given, root):
    path, colon, function = str(value).rpartition(":")
    if not colon or not function.isidentifier() or not path:    # EasyR1: no ':FUNCTION' means main
        path, function = str(value), "main"
    entry = f"easyr1:{path}:{function}"
    options = given.get("reward_function_kwargs") or {}
    if not isinstance(options, dict):
        raise ValueError(f"reward_function_kwargs must be a mapping of options, got {show(options)}")
    out = {"rewards": [entry], **({"reward_kwargs": {entry: dict(options)}} if options else {})}
    return out, f"read as rewards [{entry}]" + (f" with reward_kwargs {show(options)}" if options else "")


def _easyr1_find_last(value, given, root):
    if "load_checkpoint_path" in given and given["load_checkpoint_path"] is not None:
        return ({"resume_from_checkpoint": given["load_checkpoint_path"]},
                "is not needed: load_checkpoint_path is given (read as resume_from_checkpoint)")
    if _flag(value):
        return {"resume_from_checkpoint": "latest"}, "read as resume_from_checkpoint latest"
    return {}, "is not needed: mmr1 starts fresh unless resume_from_checkpoint is set"


# -- shared reasons -----------------------------------------------------------------------------------
LAUNCHER = ("mmr1 runs under accelerate: launch with `accelerate launch --config_file ACCELERATE.yaml` "
            "(DeepSpeed / FSDP settings go in that file)")
PROCESSES = "the launcher sets the processes (`accelerate launch --num_processes N --num_machines M`)"
NO_EVAL = "mmr1 train does not evaluate during training; score a checkpoint with `mmr1 eval`"
SPEED = "a speed setting of theirs that mmr1's loop does not use"
VLLM = "a vLLM engine setting of theirs; mmr1 reads none (rollout_backend picks the rollout engine)"
LOGS = "mmr1 logs every logging_steps steps, from the main process, to output_dir/metrics.jsonl"
CHECKPOINTS = ("mmr1 checkpoints keep optimizer, scheduler and RNG state so that a resume really resumes; "
               "final/ holds the model alone")
DATASET_NAME = Rule(_dataset_name, "`dataset_path` (`json` loader when the name has json in it, else `hf`; "
                                   "`NAME@split` sets the split; ignored when `data_path` is given)",
                    reads=("dataset", "data_path"))
REWARD_FUNCS = Rename("rewards")
ADAMW = ("adamw", "adamw_torch", "adamw_torch_fused", "adamw_hf")


SOURCES = (
    Source("mmr1", {
        "kl_estimator": "kl_approximator",
        "per_device_batch_size": "per_device_train_batch_size",
        "data_path": "dataset_path",
        "system_prompt_template_name": "system_prompt_template",
    }),
    Source("MMR1", {
        "reward_funcs": REWARD_FUNCS,
        "dataset_name": DATASET_NAME,
        "entropy_reg": Rule(_entropy_reg, "on/off switch: false -> `entropy_weight: 0`; true -> `entropy_weight` "
                                          "(MMR1's default 0.01 when not given)", reads=("entropy_weight",)),
        "use_kl": Rule(_use_kl, "false -> `beta: 0`; true -> `beta` (0.04, trl's default of MMR1's days, when not "
                                "given)", reads=("beta",)),
        "temperature_func": Rename("temperature_schedule"),
        "temperature_constant": "temperature",
        "prompt_template": Rule(_prompt_template, "`system_prompt_template` (reasoning -> r1v, qwen2 -> qwen); "
                                                  "unused when `system_prompt_template` is given",
                                reads=("system_prompt_template",)),
    }, values={
        "kl_approximator": {"kimifull": "fullkimi"},       # the name MMR1's help text gives for fullkimi
        "temperature_schedule": {"const": "constant"},
    }),
    Source("trl", {
        "dataset_name": DATASET_NAME,
        "dataset_train_split": Rule(_train_split, "`dataset_kwargs.split` (not needed for a JSON file: one split)"),
        "dataset_config": "dataset_kwargs.name",
        "dataset_test_split": Ignore(NO_EVAL),
        "dataset_streaming": Ignore("mmr1 reads the data set whole", only=(False,),
                                    fix="mmr1 reads the data set whole; remove it"),
        "dtype": "torch_dtype",
        "model_init_kwargs": Section({
            "torch_dtype": "torch_dtype", "dtype": "torch_dtype", "attn_implementation": "attn_implementation",
            "use_cache": Ignore("mmr1 turns the KV cache off itself under gradient_checkpointing"),
            "trust_remote_code": Ignore("mmr1 runs no code from a model folder", only=(False,),
                                        fix="mmr1 runs no code from a model folder; use a model its adapters "
                                            "support (`mmr1 list`)"),
        }),
        "num_completions_to_print": "num_completions_to_log",
        "entropy_coef": Rename("entropy_weight", note="(aggregated like the policy term, as MMR1 does)"),
        "use_vllm": Ignore("mmr1 picks the rollout engine with rollout_backend (default hf); set rollout_backend: "
                           "vllm where a vllm rollout backend is installed (`mmr1 list`)"),
        "generation_batch_size": Refuse("set steps_per_generation instead: generation_batch_size = "
                                        "per_device_train_batch_size x processes x steps_per_generation"),
        "save_strategy": Rule(_save_strategy, "`save_steps` (no -> 0; steps -> `save_steps`, trl's 500 when not "
                                              "given)", reads=("save_steps",)),
        "save_only_model": Ignore(CHECKPOINTS),
        "overwrite_output_dir": Ignore("mmr1 writes into output_dir whether or not it exists "
                                       "(resume_from_checkpoint: latest continues a run there)"),
        "deepspeed": Ignore(LAUNCHER), "fsdp": Ignore(LAUNCHER), "fsdp_config": Ignore(LAUNCHER),
        "accelerator_config": Ignore(LAUNCHER),
        "local_rank": Ignore(PROCESSES), "ddp_timeout": Ignore(PROCESSES), "ddp_backend": Ignore(PROCESSES),
        "ddp_find_unused_parameters": Ignore(PROCESSES),
        "do_train": Ignore("mmr1 train always trains"),
        "do_eval": Ignore(NO_EVAL), "do_predict": Ignore(NO_EVAL), "eval_strategy": Ignore(NO_EVAL),
        "evaluation_strategy": Ignore(NO_EVAL), "eval_steps": Ignore(NO_EVAL), "eval_on_start": Ignore(NO_EVAL),
        "per_device_eval_batch_size": Ignore(NO_EVAL), "num_generations_eval": Ignore(NO_EVAL),
        "logging_strategy": Ignore(LOGS, only=("steps",), fix="mmr1 logs by step: set logging_steps"),
        "logging_first_step": Ignore(LOGS), "logging_dir": Ignore(LOGS), "log_level": Ignore(LOGS),
        "log_level_replica": Ignore(LOGS), "log_on_each_node": Ignore(LOGS), "logging_nan_inf_filter": Ignore(LOGS),
        "log_unique_prompts": Ignore(LOGS), "wandb_log_unique_prompts": Ignore(LOGS),
        "push_to_hub": Ignore("mmr1 does not upload", only=(False,),
                              fix="mmr1 does not upload: remove it and upload OUTPUT_DIR/final yourself "
                                  "(e.g. `hf upload`)"),
        "hub_model_id": Ignore("used only with push_to_hub"), "hub_strategy": Ignore("used only with push_to_hub"),
        "hub_private_repo": Ignore("used only with push_to_hub"),
        "gradient_checkpointing_kwargs": Ignore("mmr1 checkpoints activations with use_reentrant: false"),
        "remove_unused_columns": Ignore("mmr1 passes every data column to the rewards"),
        "tf32": Ignore(SPEED), "torch_compile": Ignore(SPEED), "use_liger_kernel": Ignore(SPEED),
        "dataloader_pin_memory": Ignore(SPEED), "dataloader_drop_last": Ignore(SPEED),
        "dataloader_persistent_workers": Ignore(SPEED), "ds3_gather_for_generation": Ignore(SPEED),
        "optim": Ignore("mmr1 trains with torch's AdamW", only=ADAMW,
                        fix="mmr1 trains with torch's AdamW only (adam_beta1, adam_beta2, weight_decay)"),
        "adam_epsilon": Ignore("mmr1's AdamW uses eps 1e-8", only=(1e-8,),
                               fix="mmr1's AdamW uses eps 1e-8; remove it"),
        "fp16": Ignore("mmr1 trains in bfloat16 or float32", only=(False,),
                       fix="float16 training needs a loss scaler, which mmr1 does not use: use bf16: true"),
        "load_in_4bit": Ignore("mmr1 loads unquantised weights", only=(False,),
                               fix="mmr1 loads unquantised weights: for a memory-light run use use_peft: true"),
        "load_in_8bit": Ignore("mmr1 loads unquantised weights", only=(False,),
                               fix="mmr1 loads unquantised weights: for a memory-light run use use_peft: true"),
        "bnb_4bit_quant_type": Ignore("used only with load_in_4bit"),
        "use_bnb_nested_quant": Ignore("used only with load_in_4bit"),
        "trust_remote_code": Ignore("mmr1 runs no code from a model folder", only=(False,),
                                    fix="mmr1 runs no code from a model folder; use a model its adapters support "
                                        "(`mmr1 list`)"),
        "model_revision": Ignore("mmr1 loads the folder or hub id as given", only=("main",),
                                 fix="download that revision and give its folder as model_name_or_path"),
        "use_rslora": Ignore("mmr1's LoRA is plain LoRA", only=(False,), fix="mmr1's LoRA is plain LoRA; remove it"),
        "use_dora": Ignore("mmr1's LoRA is plain LoRA", only=(False,), fix="mmr1's LoRA is plain LoRA; remove it"),
        "lora_task_type": Ignore("mmr1 sets up LoRA for the model's own task"),
        "sync_ref_model": Ignore("mmr1 keeps the reference model fixed", only=(False,),
                                 fix="mmr1 has no reference-model sync; kl_approximator: fullkimi resets the "
                                     "reference to the policy every step"),
        "ref_model_mixup_alpha": Ignore("used only with sync_ref_model"),
        "ref_model_sync_steps": Ignore("used only with sync_ref_model"),
        "top_entropy_quantile": Ignore("mmr1 trains on every completion token", only=(1.0,),
                                       fix="mmr1 trains on every completion token; remove it"),
        "min_p": Ignore("mmr1 samples with top_p / top_k", only=(None, 0.0),
                        fix="mmr1 samples with top_p / top_k; use one of those"),
        "shuffle_dataset": Ignore("mmr1 draws prompts in a seeded shuffled order", only=(True,),
                                  fix="mmr1 always draws prompts in a seeded shuffled order; remove it"),
        **{k: Ignore(VLLM) for k in ("vllm_mode", "vllm_device", "vllm_gpu_memory_utilization", "vllm_server_host",
                                     "vllm_server_port", "vllm_server_base_url", "vllm_server_timeout",
                                     "vllm_tensor_parallel_size", "vllm_enable_sleep_mode", "vllm_max_model_length",
                                     "vllm_importance_sampling_correction")},
    }),
    Source("SimpleAR", {
        "reward_funcs": REWARD_FUNCS,
        "dataset_name": DATASET_NAME,
        "data_path": "dataset_path",
        "vq_model_ckpt": Rename("image_tokenizer", convert=lambda v: f"cosmos:{v}"),
        "clip_model_ckpt": Rename("reward_kwargs.clip_score", convert=lambda v: {
            "arch": "ViT-H-14", "checkpoint": f"{v}/open_clip_pytorch_model.bin"}),
        "aest_model_ckpt": Ignore("SimpleAR's GRPO script does not load it; mmr1's aesthetic reward takes its "
                                  "weights through reward_kwargs.aesthetic"),
        "system_prompt": Ignore("SimpleAR passes it only to its post-training benchmarks; mmr1's rollouts take "
                                "their prompt from template (t2i)"),
        "benchmarks": Ignore("SimpleAR's post-training benchmarks; mmr1 eval scores a checkpoint"),
        "callbacks": Ignore("SimpleAR's trainer callbacks; mmr1 has none"),
        "chat_template": Ignore("the t2i template writes the prompt; mmr1 applies no chat template to it",
                                only=(None,), fix="give the prompt format as a template instead"),
        "hub_model_revision": Ignore("used only with push_to_hub"),
        "overwrite_hub_revision": Ignore("used only with push_to_hub"),
        "push_to_hub_revision": Ignore("used only with push_to_hub"),
        "wandb_entity": Ignore("wandb reads WANDB_ENTITY from the environment"),
        "wandb_project": Ignore("mmr1 names the tracker run with run_name"),
        **{k: Ignore("an option of open-r1's text rewards, which mmr1 does not have")
           for k in ("cosine_min_value_wrong", "cosine_max_value_wrong", "cosine_min_value_correct",
                     "cosine_max_value_correct", "cosine_max_len", "repetition_n_grams", "repetition_max_penalty",
                     "code_language")},
    }, values={"rewards": {"clip": "clip_score"}}),
    Source("VLM-R1", {
        "reward_funcs": REWARD_FUNCS,
        "data_file_paths": Rule(_data_file_paths, "`dataset_path` (one file) with `dataset_kwargs.columns` "
                                                  "{conversations.0.value: problem, conversations.1.value: solution}"),
        "image_folders": Rename("dataset_kwargs.image_root", convert=_folders),
        "image_root": "dataset_kwargs.image_root",
        "freeze_vision_modules": "freeze_vision_tower",
        "arrow_cache_dir": Ignore("mmr1 reads JSONL directly, with no arrow cache"),
        "val_split_ratio": Ignore(NO_EVAL, only=(0.0,),
                                  fix="mmr1 train does not evaluate: put held-out rows in a file of their own and "
                                      "score them with `mmr1 eval`"),
        "max_anyres_num": Ignore("an InternVL tiling setting; mmr1's adapters do not tile images"),
        "reward_method": Ignore("VLM-R1's per-file accuracy routing", only=(None,),
                                fix="mmr1 has no per-file accuracy routing: list the rewards that fit your data "
                                    "(mcq, count, iou, detection_ap, ...) in rewards"),
    }),
    Source("EasyR1", {
        "data": Section({
            "train_files": _data_files("dataset_path"),
            "val_files": _data_files("eval_dataset_path"),
            "prompt_key": _column("problem", ("problem",)),
            "answer_key": _column("solution", ("solution",)),
            "image_key": _column("image", ("image", "images")),
            "video_key": Ignore("mmr1 reads no video column"),
            "video_fps": Ignore("mmr1 reads no video column"),
            "image_dir": Rename("dataset_kwargs.image_root", values={None: DEFAULT}),
            "max_prompt_length": "max_prompt_length",
            "max_response_length": "max_completion_length",
            "rollout_batch_size": _easyr1_layout("steps_per_generation", "prompts per rollout"),
            "mini_rollout_batch_size": Ignore("mmr1 generates a rollout in one go", only=(None,),
                                              fix="mmr1 generates a rollout in one go; remove it"),
            "val_batch_size": Ignore(NO_EVAL),
            "format_prompt": "template",
            "override_chat_template": Ignore("mmr1 uses the model's own chat template", only=(None,),
                                             fix="give the prompt format as template (format_prompt) instead"),
            "shuffle": Ignore("mmr1 draws prompts in a seeded shuffled order", only=(True,),
                              fix="mmr1 always draws prompts in a seeded shuffled order; remove it"),
            "seed": "seed",
            "min_pixels": "min_pixels",
            "max_pixels": "max_pixels",
            "filter_overlong_prompts": Ignore("mmr1 check names each prompt over max_prompt_length, with its row, "
                                              "instead of dropping it"),
            "filter_overlong_prompts_workers": Ignore("mmr1 check names each prompt over max_prompt_length"),
        }),
        "algorithm": Section({
            "adv_estimator": Ignore("mmr1 trains GRPO", only=("grpo",),
                                    fix="mmr1 trains GRPO only (group-normalised advantages); use adv_estimator: grpo"),
            "disable_kl": Rule(_easyr1_disable_kl, "true -> `beta: 0` (kl_coef unused); false -> `beta` from kl_coef",
                               reads=("kl_coef",)),
            "use_kl_loss": Rule(_easyr1_kl_loss, "true: KL in the loss, as mmr1 does; false (KL in the reward) is an "
                                                 "error unless disable_kl"),
            "kl_penalty": "kl_approximator",
            "kl_coef": "beta",
            "kl_type": Ignore("mmr1's KL coefficient is fixed", only=("fixed",),
                              fix="mmr1's KL coefficient (beta) is fixed; use kl_type: fixed"),
            "kl_horizon": Ignore("used only with kl_type: adaptive"),
            "kl_target": Ignore("used only with kl_type: adaptive"),
            "gamma": Ignore("GRPO has no discounting", only=(1.0,), fix="GRPO has no discounting: use gamma: 1.0"),
            "lam": Ignore("GRPO has no GAE", only=(1.0,), fix="GRPO has no GAE: use lam: 1.0"),
            "online_filtering": Ignore("mmr1 keeps every group", only=(False,),
                                       fix="dynamic sampling (DAPO's group filter) is not in mmr1; remove it"),
            "filter_key": Ignore("used only with online_filtering"),
            "filter_low": Ignore("used only with online_filtering"),
            "filter_high": Ignore("used only with online_filtering"),
        }),
        "worker": Section({
            "hybrid_engine": Ignore("mmr1 generates and trains in the same processes", only=(True,),
                                    fix="mmr1 generates and trains in the same processes; remove it"),
            "actor": Section({
                "strategy": Ignore(LAUNCHER),
                "global_batch_size": _easyr1_layout("gradient_accumulation_steps", "prompts per optimizer step"),
                "micro_batch_size_per_device_for_update": "per_device_train_batch_size",
                "micro_batch_size_per_device_for_experience": Ignore("mmr1 scores a rollout in "
                                                                     "per_device_train_batch_size chunks"),
                "max_grad_norm": "max_grad_norm",
                "clip_ratio_low": "epsilon",
                "clip_ratio_high": "epsilon_high",
                "clip_ratio_dual": Rename("delta", note="(dual clip: the ratio is capped at it, as trl's delta)"),
                "loss_avg_mode": Rename("loss_type", values={"token": "bnpo", "seq": "grpo"}),
                "loss_type": Rename("importance_sampling_level", values={
                    "default": "token", "gspo": "sequence",
                    **{k: Refuse(f"EasyR1's {k} loss is not in mmr1; use default or gspo")
                       for k in ("gspo_token", "cispo", "sapo")}}),
                "ppo_epochs": "num_iterations",
                "padding_free": Ignore(SPEED), "dynamic_batching": Ignore(SPEED),
                "use_torch_compile": Ignore(SPEED),
                "ulysses_size": Ignore("mmr1 has no sequence parallelism", only=(1,),
                                       fix="mmr1 has no sequence parallelism: use ulysses_size: 1"),
                "ulysses_sequence_parallel_size": Ignore("mmr1 has no sequence parallelism", only=(1,),
                                                         fix="mmr1 has no sequence parallelism; use 1"),
                "tau_positive": Ignore("used only with loss_type: sapo"),
                "tau_negative": Ignore("used only with loss_type: sapo"),
                "model": Section({
                    "model_path": "model_name_or_path",
                    "tokenizer_path": Ignore("mmr1 loads the processor from the model folder", only=(None,),
                                             fix="put the tokenizer files in the model folder"),
                    "override_config": Ignore("mmr1 loads the model config as saved", only=({},),
                                              fix="edit the model folder's config.json instead"),
                    "enable_gradient_checkpointing": "gradient_checkpointing",
                    "trust_remote_code": Ignore("mmr1 runs no code from a model folder"),
                    "freeze_vision_tower": "freeze_vision_tower",
                    "lora": Section({
                        "rank": Rule(_easyr1_lora_rank, "0: LoRA off; N > 0: `use_peft: true`, `lora_r: N`"),
                        "alpha": "lora_alpha",
                        "target_modules": Rename("lora_target_modules", convert=lambda v: v if v == "all-linear" or
                                                 not isinstance(v, str) else [m.strip() for m in v.split(",")]),
                        "exclude_modules": Ignore("mmr1's LoRA follows lora_target_modules and train_parts "
                                                  "(freeze_vision_tower keeps the vision tower out)"),
                    }),
                }),
                "optim": Section({
                    "lr": "learning_rate",
                    "betas": Rule(lambda v, g, r: (dict(zip(("adam_beta1", "adam_beta2"), _easyr1_betas(v))),
                                                   "read as adam_beta1, adam_beta2"), "`adam_beta1`, `adam_beta2`"),
                    "weight_decay": "weight_decay",
                    "strategy": Ignore("mmr1 trains with torch's AdamW", only=("adamw",),
                                       fix="mmr1 trains with torch's AdamW (float32 states) only; use adamw"),
                    "lr_warmup_ratio": "warmup_ratio",
                    "lr_warmup_steps": Rename("warmup_steps", values={None: DEFAULT}),
                    "lr_scheduler_type": Rule(_easyr1_scheduler, "constant -> `constant_with_warmup`; cosine -> "
                                                                 "`cosine`, or `cosine_with_min_lr` with "
                                                                 "`min_lr_rate` from min_lr_ratio",
                                              reads=("min_lr_ratio",)),
                    "min_lr_ratio": Ignore("used only with lr_scheduler_type: cosine"),
                }),
                "fsdp": Ignore(LAUNCHER),
                "offload": Ignore(LAUNCHER),
            }),
            "rollout": Section({
                "n": "num_generations",
                "temperature": "temperature",
                "top_p": "top_p",
                "top_k": Rename("top_k", values={-1: None}),
                "seed": Ignore("mmr1 seeds rollouts from seed"),
                "name": Ignore(VLLM),
                "val_override_config": Ignore(NO_EVAL),
                "disable_tqdm": "disable_tqdm",
                "ignore_eos": Ignore("mmr1 stops a completion at the end-of-sequence token", only=(False,),
                                     fix="mmr1 stops at the end-of-sequence token; remove it"),
                **{k: Ignore(VLLM) for k in ("limit_images", "dtype", "gpu_memory_utilization", "enforce_eager",
                                             "enable_chunked_prefill", "tensor_parallel_size", "max_model_len",
                                             "max_num_batched_tokens", "disable_log_stats")},
            }),
            "ref": Ignore("the reference model loads when beta > 0, placed like the policy by the accelerate "
                          "config"),
            "critic": Ignore("GRPO has no critic"),
            "reward": Section({
                "reward_function": Rule(_easyr1_reward_function,
                                        "`rewards: [easyr1:PATH.py:FUNCTION]` (FUNCTION `main` when not given), "
                                        "called as EasyR1 calls it; reward_function_kwargs -> its `reward_kwargs`",
                                        reads=("reward_function_kwargs",)),
                "reward_function_kwargs": Refuse("give reward_function_kwargs with reward_function (or, for a "
                                                 "registered reward, reward_kwargs: {REWARD: {option: value}})"),
                "reward_type": Ignore("the form (batch or sequential) is read from the reward function's signature"),
                "skip_special_tokens": Ignore("mmr1 decodes completions without special tokens"),
                "num_cpus": Ignore("mmr1 runs rewards in the training processes"),
            }),
        }),
        "trainer": Section({
            "total_epochs": "num_train_epochs",
            "max_steps": Rename("max_steps", values={None: DEFAULT}),
            "project_name": Ignore("mmr1 names the tracker run with run_name (from trainer.experiment_name)"),
            "experiment_name": "run_name",
            "logger": Rename("report_to", convert=_easyr1_logger,
                             note="(console and file dropped: mmr1 always writes output_dir/metrics.jsonl)"),
            "nnodes": Ignore(PROCESSES), "n_gpus_per_node": Ignore(PROCESSES),
            "max_try_make_batch": Ignore("used only with online_filtering"),
            "critic_warmup": Ignore("GRPO has no critic"),
            "val_freq": Ignore(NO_EVAL), "val_before_train": Ignore(NO_EVAL),
            "val_generations_to_log": Ignore(NO_EVAL),
            "val_only": Ignore(NO_EVAL, only=(False,),
                               fix="to only evaluate, run `mmr1 eval CONFIG --model CHECKPOINT`"),
            "save_freq": Rename("save_steps", values={-1: 0}),
            "save_limit": Rename("save_total_limit", values={-1: None}),
            "save_model_only": Ignore(CHECKPOINTS),
            "save_checkpoint_path": Rename("output_dir", values={None: DEFAULT}),
            "load_checkpoint_path": Rename("resume_from_checkpoint", values={None: DEFAULT}),
            "find_last_checkpoint": Rule(_easyr1_find_last, "true -> `resume_from_checkpoint: latest` (unless "
                                                            "load_checkpoint_path is given)",
                                         reads=("load_checkpoint_path",)),
            "ray_timeline": Ignore("mmr1 does not run on Ray"),
        }),
    }, values={"kl_approximator": {k: Refuse(f"EasyR1's {k} KL is not in mmr1; use k1 (kl), k2 (mse), k3 or "
                                             f"low_var_kl") for k in ("abs", "full")}}),
)


def _index() -> dict[str, tuple[Entry, tuple[str, ...]]]:
    """Every top-level key -> (its entry, the sources that use it); a key two sources define differently is a bug."""
    index: dict[str, tuple[Entry, tuple[str, ...]]] = {}
    for source in SOURCES:
        for key, entry in source.keys.items():
            if key in index and index[key][0] != entry:
                raise AssertionError(f"{key!r} means different things in {index[key][1]} and {source.name}")
            index[key] = (entry, index.get(key, (entry, ()))[1] + (source.name,))
    return index


INDEX = _index()
VALUES: dict[str, dict[Any, tuple[Any, str]]] = {}       # mmr1 key -> {their value: (ours, source)}
for _source in SOURCES:
    for _key, _table in _source.values.items():
        for _theirs, _ours in _table.items():
            VALUES.setdefault(_key, {})[_theirs] = (_ours, _source.name)


def known_keys() -> list[str]:
    """The top-level keys of every table (for did-you-mean)."""
    return list(INDEX)


# -- translation ---------------------------------------------------------------------------------------
class _Walk:
    def __init__(self, where: str, root: dict):
        self.where, self.root, self.out = where, root, Translation()
        self.origin: dict[str, str] = {}        # mmr1 key (dotted) -> the key that set it

    def problem(self, text: str) -> None:
        self.out.problems.append(f"{self.where}: {text}")

    def note(self, text: str) -> None:
        self.out.notes.append(f"{self.where}: {text}")

    def assign(self, target: str, value, path: str) -> None:
        """Set mmr1 key ``target`` (dotted: inside a mapping key), refusing a second key for the same target."""
        parts, node = target.split("."), self.out.values
        if len(parts) > 1 and parts[0] not in node:
            self.out.partial.add(parts[0])
        for i, part in enumerate(parts[:-1]):
            child = node.get(part, {})
            if not isinstance(child, dict):
                self.problem(f"{path} sets {target}, but {'.'.join(parts[:i + 1])} is not a mapping; make it one")
                return
            node[part] = dict(child)          # a copy: the mapping given stays as it was
            node = node[part]
        taken = self.origin.get(target) or (target if parts[-1] in node else None)
        taken = taken or next((by for known, by in self.origin.items() if known.startswith(target + ".")), None)
        if taken:
            self.problem(f"keys {taken!r} and {path!r} both set {target}; keep one of them")
            return
        self.origin[target] = path
        node[parts[-1]] = value

    def mapping(self, data: dict, table: dict, prefix: str, sources: tuple[str, ...] | None) -> None:
        """Translate ``data`` (top level when ``sources`` is None: its own keys are looked up in :data:`INDEX`)."""
        def lookup(key):
            if sources is None:
                return INDEX[key] if key in INDEX else (None, ())
            return table.get(key), sources

        read = {r for entry, _ in map(lookup, data) if isinstance(entry, Rule) for r in entry.reads}
        if sources is None:      # mmr1's own keys first: a translated key that collides then names both
            for key, value in data.items():
                if key not in INDEX and key not in read:
                    self.origin[str(key)] = str(key)
                    self.out.values[key] = value
        for key, value in data.items():
            entry, src = lookup(key)
            path = f"{prefix}{key}"
            if key in read or (sources is None and entry is None):
                continue
            if entry is None:
                self.problem(f"unknown key {path!r} in {'/'.join(src)}'s {prefix.rstrip('.')} section."
                             f"{did_you_mean(str(key), list(table))}")
                continue
            self.entry(entry, path, value, data, f"({', '.join(src)})", src)

    def entry(self, entry: Entry, path: str, value, given: dict, label: str, sources) -> None:
        if isinstance(entry, str):
            entry = Rename(entry)
        if isinstance(entry, Section):
            if not isinstance(value, dict):
                self.problem(f"{path} {label} must be a mapping of its keys, got {show(value)}")
            else:
                self.mapping(value, entry.table, path + ".", sources)
        elif isinstance(entry, Ignore):
            if entry.only is None or any(_same(value, v) for v in entry.only):
                self.note(f"{path} {label} is not needed in mmr1: {entry.why}")
            else:
                self.problem(f"{path} {show(value)} {label} is not supported: {entry.fix}")
        elif isinstance(entry, Refuse):
            self.problem(f"{path} {label} is not supported: {entry.fix}")
        elif isinstance(entry, Rule):
            try:
                assignments, text = entry.fn(value, given, self.root)
            except (ValueError, TypeError) as exc:
                self.problem(f"{path} {label} {exc}")
                return
            self.note(f"{path} {show(value)} {label} {text}")
            for target, v in assignments.items():
                self.assign(target, v, path)
        else:
            self.rename(entry, path, value, label)

    def rename(self, entry: Rename, path: str, value, label: str) -> None:
        ours = value
        try:
            if entry.convert is not None:
                ours = entry.convert(value)
            elif entry.values and _hashable(value) and value in entry.values:
                ours = entry.values[value]
        except ValueError as exc:
            self.problem(f"{path} {label} {exc}")
            return
        if isinstance(ours, Refuse):
            self.problem(f"{path} {show(value)} {label} is not supported: {ours.fix}")
            return
        note = f" {entry.note}" if entry.note else ""
        if ours == DEFAULT:
            self.note(f"{path} {show(value)} {label} leaves {entry.target} at mmr1's default")
            return
        if ours is value or (ours == value and type(ours) is type(value)):
            self.note(f"{path} {label} read as {entry.target}{note}")
        else:
            self.note(f"{path} {show(value)} {label} read as {entry.target} {show(ours)}{note}")
        self.assign(entry.target, ours, path)

    def values(self) -> None:
        """Value aliases of mmr1 keys (lists element by element)."""
        for key, table in VALUES.items():
            if key not in self.out.values:
                continue
            value = self.out.values[key]
            items = value if isinstance(value, list) else [value]
            translated = []
            for item in items:
                ours, source = table.get(item, (item, None)) if _hashable(item) else (item, None)
                if isinstance(ours, Refuse):
                    self.problem(f"{key} {show(item)} ({source}) is not supported: {ours.fix}")
                elif source is not None:
                    self.note(f"{key} {show(item)} ({source}) read as {show(ours)}")
                translated.append(ours)
            self.out.values[key] = translated if isinstance(value, list) else translated[0]


def _hashable(value) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return not (isinstance(value, float) and math.isnan(value))


def translate(data: dict, where: str, context: dict | None = None) -> Translation:
    """Read ``data`` (a config mapping in any source's shape) as mmr1 keys, with one note per translated key.

    ``context``: the command-line overrides, which rules see in their ``root`` (a file's ``dataset_name``
    placeholder with ``--data_path`` on the command line, as SimpleAR runs); they are translated on their own.
    """
    walk = _Walk(where, {**data, **(context or {})})
    walk.mapping(data, {}, "", None)
    walk.values()
    return walk.out


# -- documentation -------------------------------------------------------------------------------------
def describe(entry: Entry) -> str:
    """One table cell: what mmr1 makes of a key."""
    if isinstance(entry, str):
        return f"`{entry}`"
    if isinstance(entry, Rename):
        values = ", ".join(f"{show(k)} -> {('error: ' + v.fix) if isinstance(v, Refuse) else show(v)}"
                           for k, v in (entry.values or {}).items())
        return f"`{entry.target}`" + (f" ({values})" if values else "") + (f" {entry.note}" if entry.note else "")
    if isinstance(entry, Ignore):
        only = f" (only {', '.join(map(show, entry.only))}; otherwise an error: {entry.fix})" if entry.only else ""
        return f"not needed: {entry.why}{only}"
    if isinstance(entry, Refuse):
        return f"error: {entry.fix}"
    if isinstance(entry, Rule):
        return entry.doc
    raise TypeError(entry)


def rows(source: Source) -> list[tuple[str, str]]:
    """(key path, description) for every key of ``source``, nested sections flattened with dots."""
    out = []

    def walk(table: dict, prefix: str):
        for key, entry in table.items():
            if isinstance(entry, Section):
                walk(entry.table, f"{prefix}{key}.")
            else:
                out.append((prefix + key, describe(entry)))
    walk(source.keys, "")
    out += [(f"{key}: {show(theirs)}", f"error: {ours.fix}" if isinstance(ours, Refuse) else f"`{show(ours)}`")
            for key, table in source.values.items() for theirs, ours in table.items()]
    return out


def markdown() -> str:
    """The tables of docs/migrating.md's "Config keys by source project" section."""
    parts = []
    for source in SOURCES:
        lines = [f"### {source.name}", "", "| their key | in mmr1 |", "| --- | --- |"]
        lines += [f"| `{key}` | {text.replace('|', '/')} |" for key, text in rows(source)]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"
