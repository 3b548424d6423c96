"""Hostile inputs: bad numbers refused up front, non-finite steps skipped then stopped, rewards under guard."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import textwrap
import threading
from pathlib import Path

import pytest
import torch

from mmr1.cli import main
from mmr1.config import build_config
from mmr1.grpo.rewards import RewardFunction, RewardOptionError, RewardRunner, build_rewards

TEST_REWARDS = str(Path(__file__).parent / "helpers" / "test_rewards_plugin.py")


pytestmark = pytest.mark.usefixtures("fresh_plugins")


def _config(model, out, **over) -> dict:
    data = {
        "model_name_or_path": str(model), "dataset": "shapes",
        "dataset_kwargs": {"n": 16, "seed": 5, "image_size": 56}, "template": "demo",
        "rewards": ["vowel_share"], "plugins": [TEST_REWARDS], "num_generations": 4,
        "per_device_train_batch_size": 8, "max_completion_length": 4, "max_steps": 2, "learning_rate": 5e-3,
        "seed": 11, "output_dir": str(out), "disable_tqdm": True, "log_completions": False,
    }
    data.update(over)
    return data


def _write(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")     # JSON is YAML
    return path


def _cli(capsys, *argv):
    capsys.readouterr()
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _plugin(tmp_path: Path, name: str, body: str) -> str:
    """A plugin file registering ``name`` as a reward whose body is ``body`` (``completions``, ``kw``)."""
    path = tmp_path / f"{name}.py"
    path.write_text("import math, time\nfrom mmr1 import hookimpl\n"
                    f"def {name}(completions, **kw):\n" + textwrap.indent(textwrap.dedent(body), "    ") +
                    f"@hookimpl\ndef register_rewards(register):\n    register({name!r}, {name})\n")
    return str(path)


def _forbid_model_loading(monkeypatch):
    from mmr1.models.adapters import QwenVLAdapter

    def no_loading(*args, **kwargs):
        raise AssertionError("model loaded")

    monkeypatch.setattr(QwenVLAdapter, "load_model", classmethod(no_loading))
    monkeypatch.setattr(QwenVLAdapter, "load_processor", classmethod(no_loading))


# ------------------------------------------------------------------------------ validation up front


@pytest.mark.parametrize("key, value, message", [
    ("temperature", 0, "temperature must be > 0 and finite, got 0.0; use a small value such as 0.01 for "
                       "near-greedy sampling"),
    ("learning_rate", ".inf", "learning_rate must be > 0 and finite, got inf; use a positive step size such as 1e-6"),
    ("torch_dtype", "float16", "torch_dtype float16 cannot train; use bfloat16 or float32: float16 training needs "
                               "a loss scaler, which mmr1's GRPO loop does not use"),
], ids=["temperature-0", "learning_rate-inf", "float16"])
def test_critical_configs_exit_2_before_the_model_and_write_nothing(tmp_path, tiny_vl, monkeypatch, capsys,
                                                                    key, value, message):
    _forbid_model_loading(monkeypatch)
    path = _write(tmp_path / "run.json", _config(tiny_vl, tmp_path / "out"))
    code, _, err = _cli(capsys, "train", path, f"--{key}", value)
    assert code == 2
    assert f"mmr1 train: error: {path} (+ command-line overrides): {message}" in err
    assert "model loaded" not in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
    code, out, _ = _cli(capsys, "check", path, f"--{key}", value)
    assert code == 1 and message in out and "config OK" not in out


BAD = {
    "temperature": (-1, "temperature must be > 0 and finite, got -1.0"),
    "beta": (float("nan"), "beta must be >= 0 and finite, got nan; 0 turns the KL term off"),
    "warmup_ratio": (2, "warmup_ratio must be in [0, 1], got 2.0"),
    "save_steps": (-1, "save_steps must be >= 0, got -1; use 0 to save only at the end"),
    "train_sample_size": (0, "train_sample_size must be at least 1, got 0"),
    "max_grad_norm": (float("inf"), "max_grad_norm must be >= 0 and finite, got inf"),
    "epsilon_high": (float("nan"), "epsilon_high must be >= 0 and finite, got nan"),
    "entropy_weight": (float("-inf"), "entropy_weight must be finite, got -inf"),
    "reward_scale": (float("nan"), "reward_scale must be finite, got nan"),
    "save_total_limit": (0, "save_total_limit must be at least 1, got 0"),
    "logging_steps": (0, "logging_steps must be at least 1, got 0"),
    "max_nonfinite_steps": (0, "max_nonfinite_steps must be >= 1, got 0"),
    "reward_timeout": (-5, "reward_timeout must be >= 0 and finite, got -5.0"),
    "output_dir": ("", "output_dir is empty; name the folder for checkpoints and final/"),
}


def test_every_bad_number_is_reported_at_once_naming_key_value_and_fix():
    data = {key: value for key, (value, _) in BAD.items()}
    with pytest.raises(ValueError) as info:
        build_config(data, where="run.yaml")
    lines = str(info.value).splitlines()
    for key, (_, message) in BAD.items():
        assert any(line.startswith(f"run.yaml: {message}") for line in lines), key
    assert len(lines) == len(BAD)


def test_linear_temperature_schedule_from_zero_is_refused_but_constant_ignores_begin():
    with pytest.raises(ValueError, match=r"temperature_begin must be > 0 and finite, got 0.0; use a small value"):
        build_config({"temperature_schedule": "linear", "temperature_begin": 0})
    assert build_config({"temperature_begin": 0}).temperature_begin == 0     # unused by the constant schedule


def test_reward_weight_nan_is_located():
    with pytest.raises(ValueError, match=r"reward_weights\[1\] must be finite, got nan"):
        build_config({"rewards": ["accuracy", "format"], "reward_weights": [1.0, float("nan")]})


def test_empty_output_dir_is_an_error_not_a_folder_named_none():
    with pytest.raises(ValueError, match=r"config: key 'output_dir' is empty; give a value, or remove the key"):
        build_config({"output_dir": None})


def test_integer_key_given_infinity_is_a_located_error():
    with pytest.raises(ValueError, match=r"key 'max_steps' must be an integer, got inf"):
        build_config({"max_steps": float("inf")})


def test_lr_scheduler_type_is_checked_with_did_you_mean_and_unsupported_ones_explained():
    with pytest.raises(ValueError, match=r"lr_scheduler_type must be one of linear, .*got 'cosin'\. "
                                         r"Did you mean 'cosine'\?"):
        build_config({"lr_scheduler_type": "cosin"})
    with pytest.raises(ValueError, match=r"lr_scheduler_type 'reduce_lr_on_plateau' is not supported: "
                                         r"it steps on a metric"):
        build_config({"lr_scheduler_type": "reduce_lr_on_plateau"})


def test_scheduler_choices_cover_transformers_scheduler_types():
    from transformers import SchedulerType

    from mmr1.config import CHOICES, UNSUPPORTED_SCHEDULERS

    assert set(CHOICES["lr_scheduler_type"]) | set(UNSUPPORTED_SCHEDULERS) == {s.value for s in SchedulerType}


def test_attn_implementation_is_checked_and_null_allowed():
    with pytest.raises(ValueError, match=r"attn_implementation must be one of sdpa, eager, flash_attention_2, "
                                         r"flex_attention \(or null .*\), got 'flash_attention2'\. "
                                         r"Did you mean 'flash_attention_2'\?"):
        build_config({"attn_implementation": "flash_attention2"})
    assert build_config({"attn_implementation": None}).attn_implementation is None


def test_reward_timeout_must_exceed_a_rewards_own_timeout():
    with pytest.raises(ValueError, match=r"reward_timeout \(3 s\) must be above reward 'accuracy''s own "
                                         r"timeout option \(5 s\)"):
        build_config({"reward_timeout": 3, "reward_kwargs": {"accuracy": {"timeout": 5}}})
    assert build_config({"reward_timeout": 0, "reward_kwargs": {"accuracy": {"timeout": 5}}}).reward_timeout == 0


def test_a_rewards_budget_sits_between_its_timeout_and_reward_timeout():
    with pytest.raises(ValueError, match=r"budget \(150 s\) must be below reward_timeout \(120 s\)"):
        build_config({"reward_kwargs": {"accuracy": {"budget": 150}}})
    with pytest.raises(ValueError, match=r"budget \(2 s per call\) must be at least its timeout \(5 s"):
        build_config({"reward_kwargs": {"accuracy": {"timeout": 5, "budget": 2}}})
    ok = {"accuracy": {"timeout": 5, "budget": 30}}
    assert build_config({"reward_kwargs": ok}).reward_kwargs == ok
    assert build_config({"reward_timeout": 0, "reward_kwargs": {"accuracy": {"budget": 500}}}).reward_timeout == 0


def test_valid_defaults_still_pass():
    c = build_config({})
    assert (c.reward_timeout, c.max_nonfinite_steps) == (120.0, 3)


# ------------------------------------------------------------------------------------ reward options


def test_misspelled_reward_option_is_an_error_with_did_you_mean():
    with pytest.raises(RewardOptionError, match=r"reward 'accuracy' option 'timout' is not one of its named "
                                                r"options .*Did you mean 'timeout'\?"):
        build_rewards(["accuracy"], {"accuracy": {"timout": 1}})
    assert build_rewards(["format"], {"format": {"style": "x"}})[0].options == {"style": "x"}   # **kwargs takes it


def test_unknown_option_of_a_reward_without_kwargs(tmp_path):
    from mmr1.plugins import load_plugins

    path = tmp_path / "strict.py"
    path.write_text("from mmr1 import hookimpl\n"
                    "def strict(completions, solution=None, scale=1.0):\n    return [scale] * len(completions)\n"
                    "@hookimpl\ndef register_rewards(register):\n    register('strict_r', strict)\n")
    load_plugins([str(path)])
    with pytest.raises(RewardOptionError, match=r"option 'scal' is not an option of this reward \(options: "
                                                r"solution, scale\)\. Did you mean 'scale'\?"):
        build_rewards(["strict_r"], {"strict_r": {"scal": 2}})
    assert build_rewards(["strict_r"], {"strict_r": {"scale": 2}})[0](["a"]) == [2]


def test_an_option_never_shadows_a_column(tmp_path, tiny_vl, capsys):
    with pytest.raises(RewardOptionError, match=r"option 'prompts' of reward 'format' has the name of a column"):
        build_rewards(["format"], {"format": {"prompts": "x"}})
    # a dataset column (shapes rows have a solution): found by `mmr1 check` before any weights load
    path = _write(tmp_path / "run.json", _config(tiny_vl, tmp_path / "out", rewards=["accuracy"],
                                                 reward_kwargs={"accuracy": {"solution": "3"}}))
    code, out, _ = _cli(capsys, "check", path)
    assert code == 1
    assert "rewards: reward_kwargs: option 'solution' of reward 'accuracy' has the name of a column" in out
    # and at call time, for columns only a rollout passes
    reward = RewardFunction("format", lambda completions, **kw: [1.0] * len(completions), {"extra": 1})
    with pytest.raises(RewardOptionError, match="option 'extra' of reward 'format'"):
        RewardRunner([reward])(["a"], extra=[0])


# -------------------------------------------------------------------------------------- reward runner


def test_a_hung_reward_fails_its_call_and_the_run_goes_on(caplog):
    release = threading.Event()

    def hangs(completions, **kw):
        release.wait()
        return [1.0] * len(completions)

    runner = RewardRunner([RewardFunction("hangs", hangs), RewardFunction("ok", lambda c, **kw: [0.5] * len(c))],
                          timeout=2)
    try:
        with caplog.at_level(logging.WARNING, "mmr1.rewards"):
            first = runner(["a", "b"])
            second = runner(["a", "b"])           # the first call still hangs: fails at once, no new thread
        alive = [t for t in threading.enumerate() if t.name == "mmr1-reward-hangs"]
    finally:
        release.set()
    assert all(math.isnan(row[0]) and row[1] == 0.5 for row in first + second)
    assert runner.failures["hangs"] == 2 and runner.failures["ok"] == 0
    assert len(alive) == 1
    assert "reward 'hangs' failed: RewardTimeout: the call ran past reward_timeout (2 s)" in caplog.text
    assert not runner.last_all_failed


def test_system_exit_in_a_reward_is_contained_but_ctrl_c_is_not():
    def exits(completions, **kw):
        raise SystemExit(0)

    runner = RewardRunner([RewardFunction("exits", exits)])
    table = runner(["a"])
    assert math.isnan(table[0][0]) and runner.failures["exits"] == 1 and runner.last_all_failed

    def interrupted(completions, **kw):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        RewardRunner([RewardFunction("ctrl_c", interrupted)], timeout=0)(["a"])


def test_non_finite_reward_values_are_no_opinion_and_counted(caplog):
    runner = RewardRunner([RewardFunction("wild", lambda c, **kw: [float("inf"), 0.25, float("nan")])])
    with caplog.at_level(logging.WARNING, "mmr1.rewards"):
        table = runner(["a", "b", "c"])
    assert math.isnan(table[0][0]) and table[1][0] == 0.25 and math.isnan(table[2][0])
    assert runner.failures["wild"] == 1 and not runner.last_all_failed
    assert "reward 'wild' returned 2 non-finite value(s) (first inf for completion 0)" in caplog.text


@pytest.mark.parametrize("returned, message", [
    (lambda c: [1.0], "reward 'short' returned 1 values for 2 completions"),
    (lambda c: "1.0", "reward 'short' must return a list of 2 floats or None, got str"),
    (lambda c: ["yes", 1.0], "reward 'short' returned 'yes' (str); expected float or None"),
])
def test_a_malformed_reward_return_is_a_counted_failure_not_a_crash(caplog, returned, message):
    runner = RewardRunner([RewardFunction("short", lambda c, **kw: returned(c)),
                           RewardFunction("ok", lambda c, **kw: [1.0] * len(c))])
    with caplog.at_level(logging.WARNING, "mmr1.rewards"):
        table = runner(["a", "b"])
    assert [row[1] for row in table] == [1.0, 1.0] and all(math.isnan(row[0]) for row in table)
    assert runner.failures["short"] == 1
    assert message in caplog.text


# -------------------------------------------------------------------------------- finite or stop


def _nan_loss_on(monkeypatch, steps: set[int]):
    """Make the loss NaN on the given micro-step calls (1-based), through the trainer's policy_loss."""
    from mmr1.grpo import trainer as trainer_module

    original, calls = trainer_module.algo.policy_loss, [0]

    def poisoned(*args, **kwargs):
        loss, metrics = original(*args, **kwargs)
        calls[0] += 1
        return (loss * float("nan"), metrics) if calls[0] in steps else (loss, metrics)

    monkeypatch.setattr(trainer_module.algo, "policy_loss", poisoned)


def test_a_non_finite_step_is_skipped_counted_and_the_run_goes_on(tmp_path, tiny_vl, monkeypatch, caplog):
    from mmr1.grpo.trainer import GRPOTrainer

    _nan_loss_on(monkeypatch, {1})
    trainer = GRPOTrainer(build_config(_config(tiny_vl, tmp_path / "out", max_steps=3, lr_scheduler_type="linear")))
    with caplog.at_level(logging.WARNING, "mmr1.train"):
        history = trainer.train()
    assert [h["nonfinite_steps"] for h in history] == [1, 1, 1]
    assert "step 1: non-finite loss or gradient norm; the optimizer step is skipped" in caplog.text
    assert trainer.global_step == 3                                  # the skipped step counts
    assert trainer.scheduler.scheduler.last_epoch == 2               # but the schedule did not advance
    assert all(int(s["step"]) == 2 for s in trainer.optimizer.optimizer.state.values())
    assert all(torch.isfinite(p).all() for p in trainer.policy.parameters())
    assert (tmp_path / "out" / "final" / "model.safetensors").is_file()


def test_consecutive_non_finite_steps_stop_train_with_exit_3(tmp_path, tiny_vl, monkeypatch, capsys):
    _nan_loss_on(monkeypatch, {1, 2, 3, 4})
    path = _write(tmp_path / "run.json", _config(tiny_vl, tmp_path / "out", max_steps=4, max_nonfinite_steps=2))
    code, out, err = _cli(capsys, "train", path)
    assert code == 3
    assert ("mmr1 train: stopped: stopped at step 2: 2 optimizer step(s) in a row had a non-finite loss or "
            "gradient norm (max_nonfinite_steps=2)") in err
    assert "done" not in out
    assert not (tmp_path / "out" / "final").exists()


@pytest.mark.parametrize("max_steps, save_steps, what", [(1, 0, "final/"), (2, 1, "checkpoint-1")])
def test_non_finite_weights_are_never_saved(tmp_path, tiny_vl, max_steps, save_steps, what):
    """learning_rate inf slipped past validation: the weights go NaN at step 1; no file holds them."""
    from mmr1.grpo.trainer import GRPOTrainer, TrainingHalted

    config = build_config(_config(tiny_vl, tmp_path / "out", max_steps=max_steps, save_steps=save_steps))
    config = dataclasses.replace(config, learning_rate=float("inf"))
    with pytest.raises(TrainingHalted, match=rf"refusing to save {what}: weight '[\w.]+' has non-finite "
                                             r"values \(NaN or inf\), so nothing was written"):
        GRPOTrainer(config).train()
    out = tmp_path / "out"
    assert not (out / "final").exists() and not list(out.glob("checkpoint-*"))


def test_a_reward_raising_system_exit_does_not_end_training(tmp_path, tiny_vl, capsys):
    plugin = _plugin(tmp_path, "exits_r", "raise SystemExit(0)\n")
    path = _write(tmp_path / "run.json", _config(tiny_vl, tmp_path / "out", rewards=["vowel_share", "exits_r"],
                                                 plugins=[TEST_REWARDS, plugin]))
    code, out, _ = _cli(capsys, "train", path)
    assert code == 0 and "done: 2 steps" in out
    assert (tmp_path / "out" / "final" / "model.safetensors").is_file()
    metrics = [json.loads(x) for x in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["rewards/exits_r/failures"] == 2


def test_a_hanging_reward_does_not_stall_training(tmp_path, tiny_vl, capsys):
    plugin = _plugin(tmp_path, "sleeps_r", "time.sleep(5)\nreturn [1.0] * len(completions)\n")
    path = _write(tmp_path / "run.json", _config(tiny_vl, tmp_path / "out", rewards=["vowel_share", "sleeps_r"],
                                                 plugins=[TEST_REWARDS, plugin], reward_timeout=1))
    code, out, _ = _cli(capsys, "train", path)
    assert code == 0 and "done: 2 steps" in out
    metrics = [json.loads(x) for x in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["rewards/sleeps_r/failures"] == 2 and metrics[-1]["rewards/sleeps_r"] is None


def test_rewards_without_any_opinion_stop_train_with_exit_3(tmp_path, tiny_vl, capsys):
    plugin = _plugin(tmp_path, "broken_r", "raise RuntimeError('no model')\n")
    path = _write(tmp_path / "run.json", _config(tiny_vl, tmp_path / "out", rewards=["broken_r"],
                                                 plugins=[plugin], max_steps=5, max_nonfinite_steps=2))
    code, _, err = _cli(capsys, "train", path)
    assert code == 3
    assert ("mmr1 train: stopped: no reward gave an opinion: the run cannot learn. In 2 rollouts in a row "
            "(max_nonfinite_steps=2) every call of every reward (broken_r) failed") in err
    assert not (tmp_path / "out" / "final").exists()


RANK_SCRIPT = '''
import json, sys
import torch
import torch.distributed as dist
from mmr1.config import build_config
from mmr1.grpo import trainer as T

torch.set_num_threads(1)
original, seen = T.algo.policy_loss, []

def poisoned(*args, **kwargs):
    loss, metrics = original(*args, **kwargs)
    seen.append(1)
    if dist.get_rank() == 1 and len(seen) == 1:
        loss = loss + float("nan")        # the value only: the gradient stays finite
    return loss, metrics

T.algo.policy_loss = poisoned
data = json.load(open(sys.argv[1]))
trainer = T.GRPOTrainer(build_config(data))
trainer.train()
rank = trainer.accelerator.process_index
out = data["output_dir"]
torch.save({k: v.detach().cpu() for k, v in trainer.policy.state_dict().items()}, f"{out}/weights-{rank}.pt")
steps = sorted({int(s["step"]) for s in trainer.optimizer.optimizer.state.values()})
json.dump({"nonfinite_steps": trainer.nonfinite_steps, "adam_steps": steps}, open(f"{out}/rank-{rank}.json", "w"))
'''


def test_the_skip_decision_is_the_same_on_every_rank(tmp_path, tiny_vl):
    """Only rank 1 sees a NaN loss at step 1; both ranks skip it, so their weights stay equal."""
    from launching import run_processes

    script = tmp_path / "rank_run.py"
    script.write_text(RANK_SCRIPT)
    out = tmp_path / "out"
    config = _write(tmp_path / "run.json", _config(tiny_vl, out, per_device_train_batch_size=4))
    run_processes([str(script), str(config)], processes=2)
    ranks = [json.loads((out / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert ranks == [{"nonfinite_steps": 1, "adam_steps": [1]}] * 2
    w0, w1 = (torch.load(out / f"weights-{r}.pt") for r in (0, 1))
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
