"""Config: YAML + ``--key value`` overrides -> a validated TrainConfig, every problem reported at once."""

from __future__ import annotations

import textwrap

import pytest

from mmr1.config import CHOICES, ConfigError, TrainConfig, build_config, load_config, parse_overrides


def _yaml(tmp_path, text, name="run.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _error(*args, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(*args, **kwargs)
    return str(info.value)


# ---------------------------------------------------------------------------------------- loading


def test_yaml_values_are_typed(tmp_path):
    path = _yaml(tmp_path, """
        model_name_or_path: some/model
        num_generations: 4
        per_device_train_batch_size: 8
        learning_rate: 1e-6          # YAML 1.1 reads this as a string; the config makes it a float
        beta: 0.04
        bf16: false
        rewards: [accuracy, format]
        reward_weights: [1, 0.5]
        reward_kwargs: {accuracy: {mode: strict}}
        dataset_kwargs: {columns: {question: problem}}
        train_sample_size: 100
        """)
    c = load_config(path)
    assert isinstance(c, TrainConfig)
    assert c.model_name_or_path == "some/model"
    assert c.num_generations == 4 and type(c.num_generations) is int
    assert c.learning_rate == pytest.approx(1e-6) and type(c.learning_rate) is float
    assert c.beta == pytest.approx(0.04)
    assert c.bf16 is False
    assert c.rewards == ["accuracy", "format"]
    assert c.reward_weights == [1.0, 0.5] and all(type(w) is float for w in c.reward_weights)
    assert c.reward_kwargs == {"accuracy": {"mode": "strict"}}
    assert c.dataset_kwargs == {"columns": {"question": "problem"}}
    assert c.train_sample_size == 100
    assert c.config_path == str(path)
    assert c.config_dir == tmp_path.resolve()
    # Untouched keys keep their defaults.
    assert c.loss_type == TrainConfig().loss_type


def test_empty_yaml_gives_defaults(tmp_path):
    c = load_config(_yaml(tmp_path, "# nothing\n"))
    defaults = TrainConfig()
    assert c.num_generations == defaults.num_generations and c.rewards == defaults.rewards


def test_overrides_are_parsed_as_yaml_and_coerced(tmp_path):
    path = _yaml(tmp_path, "num_generations: 4\nlearning_rate: 1.0e-6\n")
    c = load_config(path, [
        "--num_generations", "2",
        "--learning_rate", "3e-5",
        "--beta", "0.1",
        "--bf16", "true",
        "--gradient_checkpointing",                  # a bare flag means true
        "--rewards", "[format, accuracy]",
        "--reward_weights", "[2, 1]",
        "--reward_kwargs", "{format: {strict: true}}",
        "--max-completion-length", "64",           # dashes in the key become underscores
        "--top_k", "5",
    ])
    assert c.num_generations == 2 and type(c.num_generations) is int
    assert c.learning_rate == pytest.approx(3e-5) and type(c.learning_rate) is float
    assert c.beta == pytest.approx(0.1)
    assert c.bf16 is True
    assert c.gradient_checkpointing is True
    assert c.rewards == ["format", "accuracy"]
    assert c.reward_weights == [2.0, 1.0]
    assert c.reward_kwargs == {"format": {"strict": True}}
    assert c.max_completion_length == 64
    assert c.top_k == 5


def test_comma_list_override():
    c = load_config(None, ["--rewards", "format,accuracy"])
    assert c.rewards == ["format", "accuracy"]
    assert load_config(None, ["--rewards", "format"]).rewards == ["format"]


def test_equals_form_keeps_the_value_intact():
    assert parse_overrides(["--output-dir=runs/a-b", "--learning_rate=1e-5", "--seed=7", "--bf16"]) == {
        "output_dir": "runs/a-b", "learning_rate": "1e-5", "seed": 7, "bf16": True}
    c = load_config(None, ["--output_dir=runs/exp-1", "--learning_rate=2e-6", "--num_generations=4",
                           "--run-name=my-run"])
    assert c.output_dir == "runs/exp-1"
    assert c.learning_rate == pytest.approx(2e-6)
    assert c.num_generations == 4
    assert c.run_name == "my-run"


def test_negative_number_is_a_value_not_an_option():
    assert load_config(None, ["--max_steps", "-1", "--seed", "3"]).max_steps == -1


def test_override_beats_yaml(tmp_path):
    path = _yaml(tmp_path, "seed: 1\noutput_dir: a\n")
    c = load_config(path, {"seed": 2})
    assert c.seed == 2 and c.output_dir == "a"


def test_positional_garbage_on_command_line():
    with pytest.raises(ConfigError, match="expected --key value"):
        parse_overrides(["seed", "3"])


def test_string_or_list_keys_keep_a_plain_string():
    # peft treats the string "all-linear" specially; a one-element list would mean a module named so.
    c = build_config({"lora_target_modules": "all-linear", "report_to": "wandb"})
    assert c.lora_target_modules == "all-linear"
    assert c.report_to == "wandb"
    c = build_config({"lora_target_modules": ["q_proj", "v_proj"], "report_to": "wandb,tensorboard"})
    assert c.lora_target_modules == ["q_proj", "v_proj"]
    assert c.report_to == ["wandb", "tensorboard"]


def test_optional_keys_accept_null(tmp_path):
    c = load_config(_yaml(tmp_path, "top_k: null\nepsilon_high: 0.28\nmax_pixels: 200704\n"))
    assert c.top_k is None and c.epsilon_high == pytest.approx(0.28) and c.max_pixels == 200704


# -------------------------------------------------------------------------------------- aliases


def test_aliases_map_to_canonical_keys(tmp_path):
    c = load_config(_yaml(tmp_path, "kl_estimator: kimikl\nentropy_reg: true\nentropy_weight: 0.05\n"
                                    "reward_funcs: [format]\n"))
    assert c.kl_approximator == "kimikl"
    assert c.entropy_weight == pytest.approx(0.05)
    assert c.rewards == ["format"]
    c = load_config(None, ["--kl_estimator", "k1", "--entropy_reg", "true", "--per_device_batch_size", "4",
                           "--num_generations", "4"])
    assert c.kl_approximator == "k1" and c.entropy_weight == 0.01 and c.per_device_train_batch_size == 4
    assert "kl_estimator" not in c.to_dict() and "entropy_reg" not in c.to_dict()


def test_alias_values_are_checked_under_the_alias_name(tmp_path):
    message = _error(_yaml(tmp_path, "entropy_reg: lots\n"))
    assert "entropy_reg (MMR1)" in message and "on/off switch" in message
    message = _error(_yaml(tmp_path, "kl_estimator: k4\n"))
    assert "kl_approximator must be one of" in message and "k4" in message


# ---------------------------------------------------------------------------------------- errors


def test_unknown_key_did_you_mean_and_file(tmp_path):
    path = _yaml(tmp_path, "learnng_rate: 1e-5\n")
    message = _error(path)
    assert str(path) in message
    assert "unknown key 'learnng_rate'" in message
    assert "Did you mean 'learning_rate'?" in message


def test_unknown_override_did_you_mean():
    message = _error(None, ["--num_generation", "4"])
    assert "--num_generation" in message and "Did you mean 'num_generations'?" in message


def test_config_path_is_not_a_user_key(tmp_path):
    assert "unknown key 'config_path'" in _error(_yaml(tmp_path, "config_path: x\n"))
    assert "--config_path" in _error(None, ["--config_path", "x"])


@pytest.mark.parametrize("key, value, kind", [
    ("num_generations", "four", "integer"),
    ("num_generations", 2.5, "integer"),
    ("num_generations", True, "integer"),
    ("learning_rate", "fast", "number"),
    ("bf16", "maybe", "true or false"),
    ("rewards", {"a": 1}, "list"),
    ("reward_kwargs", [1, 2], "mapping"),
    ("model_name_or_path", ["a"], "string"),
])
def test_bad_type_names_the_key(key, value, kind):
    with pytest.raises(ConfigError) as info:
        build_config({key: value}, where="my.yaml")
    message = str(info.value)
    assert f"my.yaml: key {key!r}" in message and kind in message and repr(value) in message


def test_bad_choice_lists_the_options(tmp_path):
    message = _error(_yaml(tmp_path, "loss_type: grpoo\n"))
    assert "loss_type must be one of grpo, bnpo, dr_grpo, dapo" in message
    assert "'grpoo'" in message and "Did you mean 'grpo'?" in message
    needs = {"lr_scheduler_type": {"lr_scheduler_kwargs": {"num_decay_steps": 10}}}  # warmup_stable_decay's
    for key, choices in CHOICES.items():
        build_config({key: choices[-1], **needs.get(key, {})})  # every listed option is accepted


def test_reward_weights_length_mismatch(tmp_path):
    message = _error(_yaml(tmp_path, "rewards: [accuracy, format]\nreward_weights: [1.0]\n"))
    assert "reward_weights has 1 entries but rewards has 2" in message


def test_reward_kwargs_for_reward_not_in_rewards(tmp_path):
    message = _error(_yaml(tmp_path, "rewards: [accuracy, format]\nreward_kwargs: {acuracy: {x: 1}}\n"))
    assert "reward_kwargs has options for 'acuracy'" in message
    assert "Did you mean 'accuracy'?" in message


@pytest.mark.parametrize("yaml_text, fragment", [
    ("num_generations: 1\n", "num_generations must be at least 2"),
    ("per_device_train_batch_size: 0\n", "per_device_train_batch_size must be at least 1"),
    ("rewards: []\n", "rewards is empty"),
    ("beta: -0.1\n", "beta must be >= 0"),
    ("epsilon_high: -1\n", "epsilon and epsilon_high must be >= 0"),
    ("min_pixels: 1000\nmax_pixels: 10\n", "min_pixels (1000) is larger than max_pixels (10)"),
    ("max_steps: -1\nnum_train_epochs: 0\n", "set max_steps or a positive num_train_epochs"),
])
def test_cross_key_checks(tmp_path, yaml_text, fragment):
    assert fragment in _error(_yaml(tmp_path, yaml_text))


def test_all_problems_at_once(tmp_path):
    path = _yaml(tmp_path, """
        learnng_rate: 1e-5
        num_generatons: 4
        loss_type: ppo
        seed: abc
        rewards: [accuracy, format]
        reward_weights: [1, 2, 3]
        """)
    message = _error(path)
    for fragment in ("'learnng_rate'", "'num_generatons'", "loss_type must be one of", "'seed'",
                     "reward_weights has 3 entries"):
        assert fragment in message, fragment
    assert len(message.splitlines()) == 5


def test_file_and_command_line_problems_reported_together(tmp_path):
    path = _yaml(tmp_path, "learnng_rate: 1e-5\n")
    message = _error(path, ["--bogus", "1", "--num_generatons=4", "--seed", "x"])
    assert "'learnng_rate'" in message
    assert "--bogus" in message
    assert "--num_generatons" in message and "Did you mean 'num_generations'?" in message
    assert "'seed'" in message


def test_missing_config_file(tmp_path):
    missing = tmp_path / "nope" / "run.yaml"
    message = _error(missing)
    assert "config file not found" in message and str(missing) in message


def test_invalid_yaml_and_non_mapping(tmp_path):
    path = _yaml(tmp_path, "a: [1, 2\n")
    message = _error(path)
    assert str(path) in message and "invalid YAML" in message
    path = _yaml(tmp_path, "- a\n- b\n", name="list.yaml")
    assert "must be a mapping" in _error(path)


@pytest.mark.parametrize("key, typo", [
    ("loss_type", "grpoo"),
    ("scale_rewards", "groups"),
    ("temperature_schedule", "cosine"),
    ("importance_sampling_level", "sequense"),
    ("kl_approximator", "k4"),
    ("torch_dtype", "fp32"),
    ("train_parts", "vision"),
])
def test_every_choice_key_rejects_a_value_outside_its_options(key, typo):
    """Checked when the config loads, not at the first training step."""
    with pytest.raises(ConfigError, match=f"{key} must be one of .*'{typo}'"):
        build_config({key: typo})
