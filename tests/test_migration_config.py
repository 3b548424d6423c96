"""Configs of MMR1, trl, SimpleAR, VLM-R1 and EasyR1 read as mmr1 configs (:mod:`mmr1.migration`).

Every table entry is exercised; each source's documented config shape goes through ``load_config`` and
``mmr1 check`` with its translation lines; aliases given with their target are errors; ``lr_scheduler_kwargs``
reaches the scheduler; attention implementations are checked for their package; docs/migrating.md lists
every key of the tables.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from PIL import Image

from mmr1 import config as config_module
from mmr1 import migration
from mmr1.cli import main
from mmr1.config import ConfigError, build_config, load_config, parse_overrides
from mmr1.data.dataset import RowDataset
from mmr1.migration import DEFAULT, Ignore, Refuse, Rename, Rule, Section, translate

pytestmark = pytest.mark.usefixtures("fresh_plugins")
DOC = Path(__file__).resolve().parent.parent / "docs" / "migrating.md"


def _nest(path: str, value) -> dict:
    """``"worker.actor.lr"`` -> ``{"worker": {"actor": {"lr": value}}}``."""
    head, _, rest = path.partition(".")
    return {head: _nest(rest, value) if rest else value}


def _entries(kind) -> list[tuple[str, str, object]]:
    """(source, dotted key path, entry) for every entry of ``kind`` in the tables."""
    out = []

    def walk(name, table, prefix):
        for key, entry in table.items():
            if isinstance(entry, Section):
                walk(name, entry.table, f"{prefix}{key}.")
            elif isinstance(entry, kind) or (kind is Rename and isinstance(entry, str)):
                out.append((name, prefix + key, entry))
    for source in migration.SOURCES:
        walk(source.name, source.keys, "")
    seen, unique = set(), []
    for name, path, entry in out:          # a key shared by several sources once
        if path not in seen:
            seen.add(path)
            unique.append((name, path, entry))
    return unique


def _ids(rows):
    return [path for _, path, _ in rows]


def _get(values: dict, dotted: str):
    node = values
    for part in dotted.split("."):
        node = node[part]
    return node


# ------------------------------------------------------------------------------------ every table entry
RENAMES = _entries(Rename)
IGNORED = _entries(Ignore)
REFUSED = _entries(Refuse)
RULES = _entries(Rule)


@pytest.mark.parametrize("source, path, entry", RENAMES, ids=_ids(RENAMES))
def test_every_renamed_key_lands_on_its_mmr1_key(source, path, entry):
    entry = Rename(entry) if isinstance(entry, str) else entry
    value = "v1" if entry.convert else 7
    expected = entry.convert(value) if entry.convert else value
    t = translate(_nest(path, value), "their.yaml")
    assert not t.problems
    assert _get(t.values, entry.target) == expected
    assert any(line.startswith(f"their.yaml: {path} ") and f"read as {entry.target}" in line for line in t.notes)
    for theirs, ours in (entry.values or {}).items():           # the entry's value table
        t = translate(_nest(path, theirs), "their.yaml")
        if isinstance(ours, Refuse):
            assert ours.fix in " ".join(t.problems)
        elif ours == DEFAULT:
            assert not t.problems and entry.target.split(".")[0] not in t.values
            assert any(f"leaves {entry.target} at mmr1's default" in line for line in t.notes)
        else:
            assert _get(t.values, entry.target) == ours and not t.problems


@pytest.mark.parametrize("source, path, entry", IGNORED, ids=_ids(IGNORED))
def test_every_key_mmr1_does_not_need_is_accepted_and_explained(source, path, entry):
    value = entry.only[0] if entry.only else "anything"
    t = translate(_nest(path, value), "their.yaml")
    assert not t.problems and not t.values
    assert t.notes == [f"their.yaml: {path} ({', '.join(_sources(path))}) is not needed in mmr1: {entry.why}"]
    if entry.only:                                              # another value asks for something mmr1 lacks
        t = translate(_nest(path, "__other__"), "their.yaml")
        assert len(t.problems) == 1 and path in t.problems[0] and entry.fix in t.problems[0]


def _sources(path: str) -> tuple[str, ...]:
    return migration.INDEX[path.split(".")[0]][1]


@pytest.mark.parametrize("source, path, entry", REFUSED, ids=_ids(REFUSED))
def test_every_refused_key_is_an_error_naming_the_mmr1_way(source, path, entry):
    t = translate(_nest(path, "x"), "their.yaml")
    assert t.problems == [f"their.yaml: {path} ({', '.join(_sources(path))}) is not supported: {entry.fix}"]


VALUE_ALIASES = [(s.name, key, theirs, ours) for s in migration.SOURCES for key, table in s.values.items()
                 for theirs, ours in table.items()]


@pytest.mark.parametrize("source, key, theirs, ours", VALUE_ALIASES,
                         ids=[f"{k}={t}" for _, k, t, _ in VALUE_ALIASES])
def test_every_value_alias(source, key, theirs, ours):
    t = translate({key: [theirs] if key == "rewards" else theirs}, "their.yaml")
    if isinstance(ours, Refuse):
        assert t.problems == [f"their.yaml: {key} {theirs} ({source}) is not supported: {ours.fix}"]
    else:
        assert t.values[key] == ([ours] if key == "rewards" else ours)
        assert f"their.yaml: {key} {theirs} ({source}) read as {ours}" in t.notes


def test_kimifull_is_fullkimi_not_the_did_you_mean_kimikl():
    c = build_config({"kl_approximator": "kimifull", "beta": 0.1})
    assert c.kl_approximator == "fullkimi"
    assert "kl_approximator kimifull (MMR1) read as fullkimi" in " ".join(c.translations)


# Rules: (mapping, mmr1 keys expected, a fragment of the note or of the problem)
RULE_CASES = [
    ({"entropy_reg": True}, {"entropy_weight": 0.01}, "MMR1's default coefficient"),
    ({"entropy_reg": 1}, {"entropy_weight": 0.01}, "MMR1's default coefficient"),       # a switch, not weight 1
    ({"entropy_reg": True, "entropy_weight": -0.05}, {"entropy_weight": -0.05}, "entropy_weight (given)"),
    ({"entropy_reg": False, "entropy_weight": 0.05}, {"entropy_weight": 0.0}, "entropy_weight 0.05 unused"),
    ({"entropy_reg": 0.05}, None, "give the coefficient as entropy_weight: 0.05"),
    ({"use_kl": False, "beta": 0.04}, {"beta": 0.0}, "beta 0.04 unused"),
    ({"use_kl": True}, {"beta": 0.04}, "trl's default"),
    ({"use_kl": True, "beta": 0.2}, {"beta": 0.2}, "beta given"),
    ({"prompt_template": "reasoning"}, {"system_prompt_template": "r1v"}, "read as system_prompt_template r1v"),
    ({"prompt_template": "llava", "system_prompt_template": "qwen"}, {"system_prompt_template": "qwen"},
     "system_prompt_template is given"),
    ({"dataset_name": "train.jsonl"}, {"dataset_path": "train.jsonl", "dataset": "json"}, "dataset json"),
    ({"dataset_name": "lmms-lab/multimodal-open-r1-8k-verified@train"},
     {"dataset_path": "lmms-lab/multimodal-open-r1-8k-verified", "dataset": "hf",
      "dataset_kwargs": {"split": "train"}}, "split train"),
    ({"dataset_name": "gen", "data_path": "prompts.txt", "dataset": "captions"},
     {"dataset_path": "prompts.txt", "dataset": "captions"}, "names the data"),
    ({"dataset_name": "rec.yaml"}, None, "data-mixture YAML"),
    ({"dataset_name": "org/set", "dataset_train_split": "validation"}, {"dataset_kwargs": {"split": "validation"}},
     "read as dataset_kwargs.split"),
    ({"dataset_name": "rows.jsonl", "dataset_train_split": "train"}, {"dataset_path": "rows.jsonl"},
     "rows.jsonl is a JSON file, which holds one split"),
    ({"dataset_name": "rows.jsonl", "dataset_train_split": "test"}, None, "holds one split (train)"),
    ({"save_strategy": "no", "save_steps": 50}, {"save_steps": 0}, "final/ at the end only"),
    ({"save_strategy": "steps"}, {"save_steps": 500}, "trl's default 500"),
    ({"save_strategy": "epoch"}, None, "mmr1 saves by step"),
    ({"data_file_paths": "a.jsonl"}, {"dataset_path": "a.jsonl", "dataset_kwargs": {"columns": {
        "conversations.0.value": "problem", "conversations.1.value": "solution"}}}, "conversations columns"),
    ({"data_file_paths": "a.jsonl:b.jsonl"}, None, "concatenate them"),
    ({"data": {"train_files": "math@train"}}, {"dataset_path": "math", "dataset": "hf",
                                                 "dataset_kwargs": {"split": "train"}}, "split train"),
    ({"dataset": "captions", "data": {"train_files": "prompts.txt"}}, {"dataset": "captions",
                                                                      "dataset_path": "prompts.txt"}, "prompts.txt"),
    ({"data": {"val_files": "rows.jsonl"}}, {"eval_dataset_path": "rows.jsonl"}, "read as eval_dataset_path"),
    ({"data": {"prompt_key": "question", "answer_key": "answer", "image_key": "pictures"}},
     {"dataset_kwargs": {"columns": {"question": "problem", "answer": "solution", "pictures": "image"}}},
     "read as dataset_kwargs.columns"),
    ({"data": {"prompt_key": "problem"}}, {}, "a column name mmr1 reads itself"),
    ({"data": {"rollout_batch_size": 8}, "worker": {"rollout": {"n": 4}, "actor": {
        "global_batch_size": 4, "micro_batch_size_per_device_for_update": 2}}, "trainer": {"n_gpus_per_node": 2}},
     {"steps_per_generation": 8, "gradient_accumulation_steps": 4, "per_device_train_batch_size": 2,
      "num_generations": 4}, "8 prompts x 4 completions / (2 processes"),
    ({"data": {"rollout_batch_size": 8}}, None, "needs worker.actor.micro_batch_size_per_device_for_update"),
    ({"data": {"rollout_batch_size": 5}, "worker": {"actor": {"micro_batch_size_per_device_for_update": 2}},
      "trainer": {"n_gpus_per_node": 1}}, None, "does not split into whole micro-steps"),
    ({"worker": {"actor": {"global_batch_size": 16, "micro_batch_size_per_device_for_update": 4}}},
     None, "16 prompts x 1 completions = 16) does not split into whole micro-steps of 8 processes"),
    ({"algorithm": {"disable_kl": True, "kl_coef": 0.01}}, {"beta": 0.0}, "kl_coef 0.01 unused"),
    ({"algorithm": {"disable_kl": False, "kl_coef": 0.01}}, {"beta": 0.01}, "beta from kl_coef"),
    ({"algorithm": {"use_kl_loss": True}}, {}, "KL term in the loss"),
    ({"algorithm": {"use_kl_loss": False}}, None, "puts the KL penalty in the reward"),
    ({"algorithm": {"use_kl_loss": False, "disable_kl": True}}, {"beta": 0.0}, "KL term in the loss"),
    ({"worker": {"actor": {"optim": {"lr_scheduler_type": "cosine", "min_lr_ratio": 0.1}}}},
     {"lr_scheduler_type": "cosine_with_min_lr", "lr_scheduler_kwargs": {"min_lr_rate": 0.1}}, "min_lr_rate 0.1"),
    ({"worker": {"actor": {"optim": {"lr_scheduler_type": "constant"}}}},
     {"lr_scheduler_type": "constant_with_warmup"}, "constant_with_warmup"),
    ({"worker": {"actor": {"optim": {"lr_scheduler_type": "wsd"}}}}, None, "constant or cosine"),
    ({"worker": {"actor": {"optim": {"betas": [0.9, 0.95]}}}}, {"adam_beta1": 0.9, "adam_beta2": 0.95},
     "adam_beta1, adam_beta2"),
    ({"worker": {"actor": {"optim": {"betas": 0.9}}}}, None, "two numbers"),
    ({"worker": {"actor": {"model": {"lora": {"rank": 16}}}}}, {"use_peft": True, "lora_r": 16}, "lora_r 16"),
    ({"worker": {"actor": {"model": {"lora": {"rank": 0}}}}}, {}, "LoRA off"),
    ({"trainer": {"find_last_checkpoint": True}}, {"resume_from_checkpoint": "latest"}, "latest"),
    ({"trainer": {"find_last_checkpoint": True, "load_checkpoint_path": "ck/step_5"}},
     {"resume_from_checkpoint": "ck/step_5"}, "load_checkpoint_path is given"),
    ({"trainer": {"find_last_checkpoint": False}}, {}, "starts fresh"),
    ({"worker": {"reward": {"reward_function": "./math.py:compute_score"}}},
     {"rewards": ["easyr1:./math.py:compute_score"]}, "read as rewards [easyr1:./math.py:compute_score]"),
    ({"worker": {"reward": {"reward_function": "r1v.py", "reward_function_kwargs": {"format_weight": 0.5}}}},
     {"rewards": ["easyr1:r1v.py:main"], "reward_kwargs": {"easyr1:r1v.py:main": {"format_weight": 0.5}}},
     "with reward_kwargs {format_weight: 0.5}"),
    ({"worker": {"reward": {"reward_function": "r1v.py", "reward_function_kwargs": 5}}}, None, "must be a mapping"),
]


@pytest.mark.parametrize("data, expected, fragment", RULE_CASES, ids=[json.dumps(c[0]) for c in RULE_CASES])
def test_rules_translate_with_their_projects_meaning(data, expected, fragment):
    t = translate(data, "their.yaml")
    if expected is None:
        assert len(t.problems) == 1 and fragment in t.problems[0], t.problems
        return
    assert not t.problems, t.problems
    assert {k: t.values[k] for k in expected} == expected and set(expected) <= set(t.values)
    assert fragment in " ".join(t.notes)


def test_every_rule_has_a_case():
    def paths(data, prefix=""):
        for key, value in data.items():
            yield prefix + key
            if isinstance(value, dict):
                yield from paths(value, f"{prefix}{key}.")
    covered = {p for data, _, _ in RULE_CASES for p in paths(data)}
    assert {path for _, path, _ in RULES} <= covered


def test_entropy_reg_as_mmr1_means_it_through_load_config(tmp_path):
    """entropy_reg: 1 switches MMR1's entropy term on: weight 0.01, never 1.0 over entropy_weight."""
    path = tmp_path / "mmr1.yaml"
    path.write_text("entropy_reg: 1\n")
    assert load_config(path).entropy_weight == 0.01
    path.write_text("entropy_reg: true\nentropy_weight: 0.05\n")
    assert load_config(path).entropy_weight == 0.05
    assert load_config(path, ["--entropy_reg", "false"]).entropy_weight == 0.0


def test_temperature_func_is_temperature_schedule():
    c = build_config({"temperature_func": "linear", "temperature_begin": 0.2})
    assert c.temperature_schedule == "linear" and c.temperature_begin == 0.2
    assert build_config({"temperature_func": "const"}).temperature_schedule == "constant"
    assert "temperature_func (MMR1) read as temperature_schedule" in build_config(
        {"temperature_func": "linear"}).translations[0]


def test_nested_sections_reject_unknown_keys_with_did_you_mean():
    t = translate({"worker": {"actor": {"optim": {"lrr": 1e-6}}}}, "easy.yaml")
    assert t.problems == ["easy.yaml: unknown key 'worker.actor.optim.lrr' in EasyR1's worker.actor.optim section. "
                          "Did you mean 'lr'?"]
    t = translate({"data": "train.jsonl"}, "easy.yaml")
    assert "data (EasyR1) must be a mapping" in t.problems[0]


def test_a_key_shared_by_several_projects_names_them_all():
    t = translate({"reward_funcs": ["accuracy"]}, "r.yaml")
    assert t.notes == ["r.yaml: reward_funcs (MMR1, SimpleAR, VLM-R1) read as rewards"]


# ---------------------------------------------------------------------------------------- conflicts
@pytest.mark.parametrize("data, keys", [
    ({"reward_funcs": ["format"], "rewards": ["accuracy"]}, ("rewards", "reward_funcs")),
    ({"rewards": ["accuracy"], "reward_funcs": ["format"]}, ("rewards", "reward_funcs")),
    ({"entropy_coef": 0.1, "entropy_weight": 0.2}, ("entropy_weight", "entropy_coef")),
    ({"kl_estimator": "k1", "kl_approximator": "k3"}, ("kl_approximator", "kl_estimator")),
    ({"dataset_kwargs": {"split": "a"}, "dataset_train_split": "b"}, ("dataset_kwargs.split", "dataset_train_split")),
    ({"dataset_path": "a.jsonl", "data_path": "b.jsonl"}, ("dataset_path", "data_path")),
    ({"max_completion_length": 64, "data": {"max_response_length": 32}},
     ("max_completion_length", "data.max_response_length")),
    ({"dtype": "float32", "model_init_kwargs": {"torch_dtype": "bfloat16"}},
     ("dtype", "model_init_kwargs.torch_dtype")),
])
def test_an_alias_and_its_target_together_is_an_error_naming_both(data, keys):
    with pytest.raises(ConfigError) as info:
        build_config(data, where="both.yaml")
    message = str(info.value)
    assert f"both.yaml: keys {keys[0]!r} and {keys[1]!r} both set" in message or \
           f"both.yaml: keys {keys[1]!r} and {keys[0]!r} both set" in message
    assert "keep one of them" in message


def test_the_given_mapping_is_left_as_it_was():
    data = {"dataset_kwargs": {"columns": {"q": "problem"}}, "dataset_train_split": "test"}
    t = translate(data, "run.yaml")
    assert t.values["dataset_kwargs"] == {"columns": {"q": "problem"}, "split": "test"}
    assert data == {"dataset_kwargs": {"columns": {"q": "problem"}}, "dataset_train_split": "test"}


def test_an_alias_on_the_command_line_overrides_the_files_target(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("rewards: [accuracy]\ndataset_kwargs: {columns: {q: problem}}\n")
    c = load_config(path, ["--reward_funcs", "format", "--dataset_train_split", "test"])
    assert c.rewards == ["format"]
    assert c.dataset_kwargs == {"columns": {"q": "problem"}, "split": "test"}     # one key added, not replaced


# ------------------------------------------------------------------------------------- command line
def test_several_values_after_one_flag_make_a_list():
    assert parse_overrides(["--reward_funcs", "r1v_acc", "r1v_format", "--seed", "3"]) == {
        "reward_funcs": ["r1v_acc", "r1v_format"], "seed": 3}
    assert parse_overrides(["--reward_funcs", "r1v_acc"]) == {"reward_funcs": "r1v_acc"}
    assert parse_overrides(["--reward_weights", "1", "0.5", "--bf16"]) == {"reward_weights": [1, 0.5], "bf16": True}
    c = load_config(None, ["--reward_funcs", "r1v_acc", "r1v_format", "--reward_weights", "1", "0.5"])
    assert c.rewards == ["r1v_acc", "r1v_format"] and c.reward_weights == [1.0, 0.5]


# ---------------------------------------------------------------------------------- lr_scheduler_kwargs
@pytest.mark.parametrize("scheduler, kwargs, fragment", [
    ("cosine_with_min_lr", {}, "lr_scheduler_type cosine_with_min_lr needs lr_scheduler_kwargs.min_lr or min_lr_rate"),
    ("cosine_with_min_lr", {"min_lr": 1e-7, "min_lr_rate": 0.1}, "gives min_lr and min_lr_rate"),
    ("cosine_with_min_lr", {"min_lr_rat": 0.1}, "lr_scheduler_kwargs.min_lr_rat is not an option of "
                                                "lr_scheduler_type cosine_with_min_lr, which takes num_cycles, min_lr, "
                                                "min_lr_rate. Did you mean 'min_lr_rate'?"),
    ("warmup_stable_decay", {}, "lr_scheduler_type warmup_stable_decay needs lr_scheduler_kwargs.num_decay_steps"),
    ("warmup_stable_decay", {"num_decay_steps": 5, "decay_type": "exp"}, "decay_type must be one of linear, cosine"),
    ("constant", {"min_lr_rate": 0.1}, "constant, which takes no lr_scheduler_kwargs. It belongs to "
                                       "lr_scheduler_type cosine_with_min_lr or cosine_warmup_with_min_lr"),
    ("cosine", {"num_training_steps": 10}, "lr_scheduler_kwargs.num_training_steps is set by mmr1"),
    ("polynomial", {"power": "two"}, "lr_scheduler_kwargs.power must be a number >= 0, got 'two'"),
])
def test_lr_scheduler_kwargs_are_checked_against_the_scheduler(scheduler, kwargs, fragment):
    with pytest.raises(ConfigError, match="sched.yaml: ") as info:
        build_config({"lr_scheduler_type": scheduler, "lr_scheduler_kwargs": kwargs}, where="sched.yaml")
    assert fragment in str(info.value)


def test_schedulers_that_take_kwargs_are_supported_and_metric_ones_stay_refused():
    from mmr1.config import CHOICES, UNSUPPORTED_SCHEDULERS

    for name in ("cosine_with_min_lr", "cosine_warmup_with_min_lr", "warmup_stable_decay"):
        assert name in CHOICES["lr_scheduler_type"] and name not in UNSUPPORTED_SCHEDULERS
    with pytest.raises(ConfigError, match="it steps on a metric"):
        build_config({"lr_scheduler_type": "reduce_lr_on_plateau"})


def test_scheduler_kwargs_table_matches_transformers_signatures():
    import inspect

    from transformers.optimization import TYPE_TO_SCHEDULER_FUNCTION

    from mmr1.config import SCHEDULER_KWARGS

    for name, (options, _) in SCHEDULER_KWARGS.items():
        params = set(inspect.signature(TYPE_TO_SCHEDULER_FUNCTION[name]).parameters)
        taken = params - {"optimizer", "num_warmup_steps", "num_training_steps", "last_epoch"}
        if name in ("constant", "constant_with_warmup"):
            taken = set()          # transformers' get_scheduler passes these no extra options
        assert set(options) == taken, name


def test_cosine_with_min_lr_decays_to_min_lr_in_the_trainer(tiny_vl, tmp_path):
    from test_hardening import _config

    from mmr1.grpo.trainer import GRPOTrainer

    data = _config(tiny_vl, tmp_path / "out", max_steps=4, learning_rate=1e-3,
                   lr_scheduler_type="cosine_with_min_lr", lr_scheduler_kwargs={"min_lr_rate": 0.1})
    trainer = GRPOTrainer(build_config(data))
    lrs = []
    for _ in range(4):
        trainer.optimizer.step()
        trainer.scheduler.step()
        lrs.append(trainer.scheduler.get_last_lr()[0])
    assert lrs == sorted(lrs, reverse=True) and lrs[0] < 1e-3
    assert lrs[-1] == pytest.approx(1e-4)            # min_lr_rate x learning_rate, not 0 as plain cosine


# ---------------------------------------------------------------------------------- attn_implementation
def test_flash_attention_without_its_package_is_one_line_with_the_fix(monkeypatch):
    monkeypatch.setattr(config_module, "_module_available", lambda name: name != "flash_attn")
    with pytest.raises(ConfigError) as info:
        build_config({"attn_implementation": "flash_attention_2"}, where="fa.yaml")
    assert str(info.value) == ("fa.yaml: attn_implementation flash_attention_2 needs flash_attn, which is not "
                               "installed (pip install flash-attn --no-build-isolation); use attn_implementation: sdpa")


def test_flash_attention_without_a_gpu_and_flex_attention_without_its_module(monkeypatch):
    monkeypatch.setattr(config_module, "_module_available", lambda name: True)
    monkeypatch.setattr(config_module, "_cuda_available", lambda: False)
    with pytest.raises(ConfigError, match="flash_attention_2 needs a CUDA GPU, and this machine has none; "
                                          "use attn_implementation: sdpa"):
        build_config({"attn_implementation": "flash_attention_2"})
    monkeypatch.setattr(config_module, "_cuda_available", lambda: True)
    assert build_config({"attn_implementation": "flash_attention_2"}).attn_implementation == "flash_attention_2"
    monkeypatch.setattr(config_module, "_module_available", lambda name: False)
    with pytest.raises(ConfigError, match="flex_attention needs torch.nn.attention.flex_attention"):
        build_config({"attn_implementation": "flex_attention"})
    assert build_config({"attn_implementation": "sdpa"}).attn_implementation == "sdpa"


def test_flash_attention_is_checked_against_this_machine():
    """No monkeypatching: the answer follows what this machine has."""
    import importlib.util

    import torch

    ok = importlib.util.find_spec("flash_attn") is not None and torch.cuda.is_available()
    if ok:
        assert build_config({"attn_implementation": "flash_attention_2"})
    else:
        with pytest.raises(ConfigError, match="use attn_implementation: sdpa"):
            build_config({"attn_implementation": "flash_attention_2"})


# ------------------------------------------------------------------------------------ train_sample_size
def test_train_sample_mode_first_is_mmr1s_first_rows_and_random_is_seeded():
    rows = RowDataset([{"problem": str(i)} for i in range(10)], "d.jsonl")
    assert [r["problem"] for r in rows.subsample(3, seed=1, mode="first")] == ["0", "1", "2"]
    picked = [r["problem"] for r in rows.subsample(3, seed=1)]
    assert picked == [r["problem"] for r in rows.subsample(3, seed=1, mode="random")]
    assert picked != ["0", "1", "2"] and len(set(picked)) == 3
    assert len(rows.subsample(30, mode="first")) == 10
    assert build_config({"train_sample_mode": "first"}).train_sample_mode == "first"
    with pytest.raises(ConfigError, match="train_sample_mode must be one of random, first"):
        build_config({"train_sample_mode": "head"})


# ----------------------------------------------------------------------------- notes travel, not saved
def test_translations_stay_off_the_saved_config_and_are_not_a_user_key():
    c = build_config({"reward_funcs": ["format"]})
    assert c.translations and "translations" not in c.to_dict()
    with pytest.raises(ConfigError, match="unknown key 'translations'. translations is set by mmr1"):
        build_config({"translations": ["x"]})


# -------------------------------------------------------- each source's documented shape, through mmr1 check
def _png(path: Path, colour) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)
    return path.name


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _check(capsys, path: Path, *extra) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["check", str(path), *extra])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _vl_rows(folder: Path) -> list[dict]:
    return [{"problem": "What colour?", "solution": "red", "image": _png(folder / "red.png", (255, 0, 0))},
            {"problem": "And this one?", "solution": "blue", "image": _png(folder / "blue.png", (0, 0, 255))}]


def _passes(capsys, path, lines, *extra):
    code, out = _check(capsys, path, *extra)
    assert code == 0, out
    for line in lines:
        assert f"{path}: {line}" in out, f"{line!r} missing from:\n{out}"
    assert "config OK" in out
    return out


def test_mmr1_own_spellings(capsys, tmp_path, tiny_vl):
    _jsonl(tmp_path / "rows.jsonl", _vl_rows(tmp_path))
    path = _write(tmp_path, "own.yaml", f"""\
        model_name_or_path: {tiny_vl}
        data_path: rows.jsonl
        kl_estimator: kimikl
        per_device_batch_size: 2
        system_prompt_template_name: r1v
        num_generations: 2
        """)
    _passes(capsys, path, ["data_path (mmr1, SimpleAR) read as dataset_path", "kl_estimator (mmr1) read as "
                           "kl_approximator", "per_device_batch_size (mmr1) read as per_device_train_batch_size",
                           "system_prompt_template_name (mmr1) read as system_prompt_template"])


def test_an_mmr1_script_config(capsys, tmp_path, tiny_vl):
    """MMR1's GRPOScriptArguments + trl's GRPOConfig, as its local_scripts/train/*.sh pass them."""
    _jsonl(tmp_path / "clevr.jsonl", _vl_rows(tmp_path))
    path = _write(tmp_path, "mmr1.yaml", f"""\
        model_name_or_path: {tiny_vl}
        dataset_name: clevr.jsonl
        reward_funcs: [r1v_acc, r1v_format]
        system_prompt_template: r1v
        question_template: r1v
        answer_template: r1v
        train_sample_size: 2
        use_kl: true
        kl_approximator: kimifull
        entropy_reg: true
        entropy_weight: 0.01
        temperature_func: linear
        temperature_begin: 0.1
        temperature_end: 1.0
        reward_scale: 1
        num_generations: 2
        per_device_train_batch_size: 2
        deepspeed: local_scripts/zero3.json
        save_only_model: true
        gradient_checkpointing: false
        bf16: false
        report_to: none
        """)
    c = load_config(path)
    assert (c.rewards, c.kl_approximator, c.beta, c.entropy_weight, c.temperature_schedule, c.dataset) == (
        ["r1v_acc", "r1v_format"], "fullkimi", 0.04, 0.01, "linear", "json")
    _passes(capsys, path, ["reward_funcs (MMR1, SimpleAR, VLM-R1) read as rewards",
                           "kl_approximator kimifull (MMR1) read as fullkimi",
                           "entropy_reg true (MMR1) read as: use entropy_weight (given)",
                           "use_kl true (MMR1) read as beta 0.04",
                           "temperature_func (MMR1) read as temperature_schedule",
                           "deepspeed (trl) is not needed in mmr1: mmr1 runs under accelerate",
                           "save_only_model (trl) is not needed in mmr1"])


def test_a_trl_grpo_config(capsys, tmp_path, tiny_vl):
    _jsonl(tmp_path / "train.jsonl", _vl_rows(tmp_path))
    path = _write(tmp_path, "trl.yaml", f"""\
        model_name_or_path: {tiny_vl}
        dtype: float32
        model_init_kwargs:
          attn_implementation: sdpa
        dataset_name: train.jsonl
        dataset_train_split: train
        rewards: [accuracy, format]
        num_generations: 2
        per_device_train_batch_size: 2
        gradient_accumulation_steps: 1
        max_completion_length: 16
        learning_rate: 1.0e-6
        lr_scheduler_type: cosine_with_min_lr
        lr_scheduler_kwargs: {{min_lr_rate: 0.1}}
        beta: 0.0
        loss_type: dapo
        use_vllm: true
        vllm_mode: colocate
        vllm_gpu_memory_utilization: 0.3
        save_strategy: steps
        save_steps: 10
        logging_strategy: steps
        logging_steps: 1
        num_completions_to_print: 2
        push_to_hub: false
        report_to: none
        optim: adamw_torch
        """)
    c = load_config(path)
    assert (c.torch_dtype, c.attn_implementation, c.dataset_kwargs, c.lr_scheduler_kwargs, c.save_steps,
            c.num_completions_to_log, c.rollout_backend) == ("float32", "sdpa", {},
                                                             {"min_lr_rate": 0.1}, 10, 2, "hf")
    _passes(capsys, path, ["dtype (trl) read as torch_dtype",
                           "model_init_kwargs.attn_implementation (trl) read as attn_implementation",
                           "dataset_train_split train (trl) is not needed: train.jsonl is a JSON file",
                           "use_vllm (trl) is not needed in mmr1: mmr1 picks the rollout engine with rollout_backend",
                           "save_strategy steps (trl) read as save_steps 10",
                           "num_completions_to_print (trl) read as num_completions_to_log",
                           "optim (trl) is not needed in mmr1"])


def test_a_simplear_grpo_config(capsys, tmp_path):
    """SimpleAR's config_grpo_clip.yaml shape, on a tiny text-to-image model (data_path on the command line)."""
    from mmr1.fixtures.models import build_tiny_t2i

    built = build_tiny_t2i(tmp_path, extract=False, seed=2)
    (tmp_path / "prompts.json").write_text(json.dumps(["a red circle", "a blue square"]))
    path = _write(tmp_path, "config_grpo_clip.yaml", f"""\
        model_name_or_path: {tmp_path / built['model']}
        torch_dtype: float32
        attn_implementation: sdpa
        dataset_name: "gen"
        dataset: captions
        template: t2i
        image_tokenizer: vq:{tmp_path / built['vq']}
        rollout_backend: t2i
        system_prompt: "You are a helpful AI Assistant."
        bf16: false
        use_vllm: true
        vllm_device: auto
        vllm_gpu_memory_utilization: 0.7
        temperature: 1.0
        do_eval: false
        gradient_accumulation_steps: 1
        gradient_checkpointing: false
        gradient_checkpointing_kwargs:
          use_reentrant: false
        learning_rate: 1.0e-06
        log_completions: false
        log_level: info
        logging_first_step: false
        logging_steps: 1
        logging_strategy: steps
        lr_scheduler_type: cosine_with_min_lr
        lr_scheduler_kwargs:
          min_lr_rate: 0.1
        max_steps: 1
        num_generations: 2
        num_train_epochs: 1
        overwrite_output_dir: true
        per_device_train_batch_size: 2
        push_to_hub: false
        report_to:
        - none
        reward_funcs:
        - color_fidelity
        reward_weights:
        - 1.0
        save_strategy: "steps"
        save_steps: 100
        seed: 0
        warmup_ratio: 0.1
        """)
    c = load_config(path, ["--data_path", "prompts.json"])
    assert (c.dataset_path, c.dataset, c.lr_scheduler_kwargs) == ("prompts.json", "captions", {"min_lr_rate": 0.1})
    _passes(capsys, path, ["dataset_name gen (MMR1, trl, SimpleAR) is not needed: data_path prompts.json names "
                           "the data", "system_prompt (SimpleAR) is not needed in mmr1",
                           "vllm_device (trl) is not needed in mmr1", "overwrite_output_dir (trl) is not needed"],
            "--data_path", "prompts.json")
    t = translate({"vq_model_ckpt": "/ckpt/Cosmos-1.0-Tokenizer-DV8x16x16", "clip_model_ckpt": "/ckpt/clip",
                   "reward_funcs": ["clip"]}, "simplear.yaml")
    assert t.values == {"image_tokenizer": "cosmos:/ckpt/Cosmos-1.0-Tokenizer-DV8x16x16", "rewards": ["clip_score"],
                        "reward_kwargs": {"clip_score": {"arch": "ViT-H-14",
                                                         "checkpoint": "/ckpt/clip/open_clip_pytorch_model.bin"}}}


def test_a_vlm_r1_config(capsys, tmp_path, tiny_vl):
    images = tmp_path / "images"
    rows = [{"image": _png(images / "red.png", (255, 0, 0)),
             "conversations": [{"from": "human", "value": "<image>What colour is it?"},
                               {"from": "gpt", "value": "red"}]},
            {"image": _png(images / "blue.png", (0, 0, 255)),
             "conversations": [{"from": "human", "value": "<image>And this one?"}, {"from": "gpt", "value": "blue"}]}]
    _jsonl(tmp_path / "rec.jsonl", rows)
    path = _write(tmp_path, "vlm_r1.yaml", f"""\
        model_name_or_path: {tiny_vl}
        data_file_paths: rec.jsonl
        image_folders: {images}
        reward_funcs: [accuracy, format]
        freeze_vision_modules: true
        max_anyres_num: 12
        val_split_ratio: 0.0
        num_generations: 2
        per_device_train_batch_size: 2
        beta: 0.04
        max_completion_length: 16
        """)
    c = load_config(path)
    assert (c.dataset_path, c.freeze_vision_tower, c.dataset_kwargs["image_root"]) == ("rec.jsonl", True, str(images))
    _passes(capsys, path, ["data_file_paths rec.jsonl (VLM-R1) read as dataset_path, with VLM-R1's conversations",
                           "image_folders (VLM-R1) read as dataset_kwargs.image_root",
                           "freeze_vision_modules (VLM-R1) read as freeze_vision_tower",
                           "max_anyres_num (VLM-R1) is not needed in mmr1"])
    code, out = _check(capsys, path, "--reward_method", "mcq")
    assert code != 0 and "reward_method mcq (VLM-R1) is not supported: mmr1 has no per-file accuracy routing" in out


def test_an_easyr1_config(capsys, tmp_path, tiny_vl):
    rows = [{"question": "What colour?", "answer": "red", "images": [_png(tmp_path / "red.png", (255, 0, 0))]},
            {"question": "And this one?", "answer": "blue", "images": [_png(tmp_path / "blue.png", (0, 0, 255))]}]
    _jsonl(tmp_path / "math.jsonl", rows)
    path = _write(tmp_path, "easyr1.yaml", f"""\
        data:
          train_files: math.jsonl
          prompt_key: question
          answer_key: answer
          image_key: images
          image_dir: null
          max_prompt_length: 2048
          max_response_length: 16
          rollout_batch_size: 2
          shuffle: true
          seed: 1
          min_pixels: 3136
          max_pixels: 12544
          filter_overlong_prompts: true
        algorithm:
          adv_estimator: grpo
          disable_kl: false
          use_kl_loss: true
          kl_penalty: low_var_kl
          kl_coef: 1.0e-2
          online_filtering: false
        worker:
          actor:
            global_batch_size: 1
            micro_batch_size_per_device_for_update: 2
            micro_batch_size_per_device_for_experience: 2
            max_grad_norm: 1.0
            clip_ratio_low: 0.2
            clip_ratio_high: 0.28
            clip_ratio_dual: 3.0
            loss_avg_mode: token
            padding_free: true
            model:
              model_path: {tiny_vl}
              enable_gradient_checkpointing: false
              freeze_vision_tower: false
            optim:
              lr: 1.0e-6
              weight_decay: 1.0e-2
              strategy: adamw
              lr_warmup_ratio: 0.0
            fsdp:
              enable_full_shard: true
            offload:
              offload_params: true
          rollout:
            n: 2
            temperature: 1.0
            top_p: 1.0
            gpu_memory_utilization: 0.6
            tensor_parallel_size: 2
          ref:
            fsdp:
              enable_cpu_offload: true
        trainer:
          total_epochs: 1
          max_steps: 1
          project_name: easy_r1
          experiment_name: tiny_grpo
          logger: ["console"]
          nnodes: 1
          n_gpus_per_node: 1
          val_freq: -1
          save_freq: -1
          save_limit: -1
          save_checkpoint_path: {tmp_path / "out"}
          find_last_checkpoint: false
        """)
    c = load_config(path)
    assert (c.dataset_path, c.dataset_kwargs, c.num_generations, c.per_device_train_batch_size,
            c.steps_per_generation, c.gradient_accumulation_steps, c.beta, c.kl_approximator, c.epsilon_high,
            c.delta, c.loss_type, c.save_steps, c.save_total_limit, c.report_to, c.run_name) == (
        "math.jsonl", {"columns": {"question": "problem", "answer": "solution"}}, 2, 2, 2, 1, 0.01, "low_var_kl",
        0.28, 3.0, "bnpo", 0, None, "none", "tiny_grpo")
    _passes(capsys, path, ["data.prompt_key question (EasyR1) read as dataset_kwargs.columns {question: problem}",
                           "data.rollout_batch_size 2 (EasyR1) read as steps_per_generation 2",
                           "worker.actor.global_batch_size 1 (EasyR1) read as gradient_accumulation_steps 1",
                           "worker.actor.fsdp (EasyR1) is not needed in mmr1: mmr1 runs under accelerate",
                           "algorithm.disable_kl false (EasyR1) read as: beta from kl_coef",
                           "worker.actor.loss_avg_mode token (EasyR1) read as loss_type bnpo",
                           "trainer.save_freq -1 (EasyR1) read as save_steps 0"])
    t = translate({"data": {"format_prompt": "./examples/format_prompt/math.jinja"},
                   "worker": {"reward": {"reward_function": "./math.py:compute_score",
                                         "reward_function_kwargs": {"format_weight": 0.5}}}}, "easyr1.yaml")
    assert t.problems == []
    assert t.values == {"template": "./examples/format_prompt/math.jinja",
                        "rewards": ["easyr1:./math.py:compute_score"],
                        "reward_kwargs": {"easyr1:./math.py:compute_score": {"format_weight": 0.5}}}
    t = translate({"worker": {"reward": {"reward_function": "./r1v.py"}}}, "easyr1.yaml")   # EasyR1's default: main
    assert t.values == {"rewards": ["easyr1:./r1v.py:main"]}
    t = translate({"worker": {"reward": {"reward_function_kwargs": {"format_weight": 0.5}}}}, "easyr1.yaml")
    assert t.problems[0].startswith("easyr1.yaml: worker.reward.reward_function_kwargs (EasyR1) is not supported")


def test_mmr1_train_prints_the_translation_lines_before_anything_loads(capsys, tmp_path):
    (tmp_path / "a_file").write_text("not a folder")
    path = _write(tmp_path, "run.yaml", f"""\
        reward_funcs: [format]
        temperature_func: linear
        output_dir: {tmp_path / "a_file"}
        """)
    capsys.readouterr()
    assert main(["train", str(path)]) == 2             # output_dir is a file: refused before any weights load
    err = capsys.readouterr().err
    assert f"mmr1 train: {path}: reward_funcs (MMR1, SimpleAR, VLM-R1) read as rewards" in err
    assert f"mmr1 train: {path}: temperature_func (MMR1) read as temperature_schedule" in err


def test_the_multi_value_flag_through_mmr1_check(capsys, tmp_path, tiny_vl):
    _jsonl(tmp_path / "rows.jsonl", _vl_rows(tmp_path))
    path = _write(tmp_path, "run.yaml", f"""\
        model_name_or_path: {tiny_vl}
        dataset_path: rows.jsonl
        num_generations: 2
        per_device_train_batch_size: 2
        """)
    code, out = _check(capsys, path, "--reward_funcs", "r1v_acc", "r1v_format", "--num-processes", "1")
    assert code == 0, out
    assert "command line: reward_funcs (MMR1, SimpleAR, VLM-R1) read as rewards" in out


# ------------------------------------------------------------------------------------------- the doc
def test_the_doc_lists_every_key_of_the_tables():
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Config keys by source project", 1)[1].split("\n## ", 1)[0]
    for source in migration.SOURCES:
        assert f"### {source.name}\n" in section, source.name
        block = section.split(f"### {source.name}\n", 1)[1].split("\n### ", 1)[0]
        for key, description in migration.rows(source):
            line = f"| `{key}` | {description.replace('|', '/')} |"
            assert line in block, f"docs/migrating.md, {source.name}: no line {line!r}"
