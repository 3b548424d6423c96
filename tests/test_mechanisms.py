"""Mechanisms a user relies on without seeing them: epochs and prompt order, per-completion seeds,
sampling temperature, the end token in the completion mask, checkpoint order, pruning and contents,
and reward weights. Each test fails if its mechanism is switched off or turned around."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from mmr1.config import build_config
from mmr1.fixtures.shapes import make_shapes_rows
from mmr1.grpo.batching import PromptSampler
from mmr1.grpo.checkpoint import STATE_FILE, list_checkpoints, resolve_resume, save_checkpoint
from mmr1.rollout.base import SamplingParams
from mmr1.rollout.sampling import completion_seed, make_generators, sample_tokens
from mmr1.templates import Template

TEST_REWARDS = str(Path(__file__).parent / "helpers" / "test_rewards_plugin.py")


def _config(model, out, **over):
    data = {
        "model_name_or_path": model, "dataset": "shapes", "dataset_kwargs": {"n": 16, "seed": 5, "image_size": 56},
        "template": "demo", "rewards": ["accuracy", "format", "vowel_share"], "plugins": [TEST_REWARDS],
        "num_generations": 4, "per_device_train_batch_size": 8, "max_completion_length": 6, "max_steps": 1,
        "learning_rate": 5e-3, "seed": 11, "output_dir": str(out), "disable_tqdm": True, "log_completions": False,
    }
    return build_config({**data, **over})


# ------------------------------------------------------------------------------------------ epochs and order


def test_one_epoch_with_several_iterations_sees_every_prompt_once(tiny_vl, tmp_path):
    """num_train_epochs 1 over 8 rows: 8 / (8 completions / 4 generations) = 4 rollouts, each trained on
    num_iterations = 2 times, so 8 optimizer steps and every row drawn exactly once."""
    from mmr1.grpo.trainer import GRPOTrainer

    config = _config(tiny_vl, tmp_path / "out", max_steps=-1, num_train_epochs=1, num_iterations=2,
                     max_completion_length=3, dataset_kwargs={"n": 8, "seed": 5, "image_size": 56})
    trainer = GRPOTrainer(config)
    assert trainer.total_steps == 8
    trainer.train()
    assert trainer.global_step == 8
    assert trainer.sampler.consumed == 8 and trainer.sampler.epoch == 1.0


def test_prompt_sampler_reshuffles_every_epoch_and_resumes_from_its_count():
    sampler = PromptSampler(20, seed=3)
    epochs = [sampler.take(20) for _ in range(3)]
    assert all(sorted(e) == list(range(20)) for e in epochs)       # each epoch is a permutation
    assert len({tuple(e) for e in epochs}) == 3                     # and a different one each time
    resumed = PromptSampler(20, seed=3)
    resumed.consumed = 25
    assert resumed.take(10) == epochs[1][5:15]


# ------------------------------------------------------------------------------------------ sampling


def test_completion_seeds_differ_across_completions_steps_and_runs():
    seeds = [completion_seed(run, step, index) for run in (0, 1, 42) for step in range(6) for index in range(64)]
    assert len(set(seeds)) == len(seeds)


def test_sampling_temperature_sharpens_and_flattens_the_distribution():
    """Two tokens with logits 0 and 0.5: at temperature T token 0 has probability 1 / (1 + e^(0.5 / T))."""
    n = 400
    logits = torch.tensor([[0.0, 0.5]]).repeat(n, 1)

    def share_of_token_0(temperature):
        tokens = sample_tokens(logits.clone(), make_generators(list(range(n)), "cpu"), temperature)
        return (tokens == 0).float().mean().item()

    for temperature in (0.01, 1.0, 100.0):
        expected = 1 / (1 + math.exp(0.5 / temperature))            # 0, 0.378, 0.499
        assert share_of_token_0(temperature) == pytest.approx(expected, abs=0.1), temperature


def test_hf_rollout_mask_keeps_the_end_token_and_flags_only_unended_rows(tiny_vl):
    from mmr1.models.adapters import QwenVLAdapter
    from mmr1.rollout.hf import HFRollout

    adapter = QwenVLAdapter(QwenVLAdapter.load_processor(tiny_vl))
    model = QwenVLAdapter.load_model(tiny_vl, torch.float32)
    adapter.bind(model)
    row = make_shapes_rows(1, seed=2, image_size=56)[0]
    prompts = adapter.encode_prompts([Template("t").messages(row["problem"], 1)], [row["image"]])
    eos, end_at, max_tokens = adapter.eos_token_ids, 2, 6

    def hook(logits, t):
        logits[:, eos] = float("-inf")                      # no row ends by chance
        if t == end_at:                                     # row 0 must end with its third token
            logits[0] = float("-inf")
            logits[0, eos[0]] = 0.0
        return logits

    out = HFRollout(adapter).generate(model, prompts, torch.tensor([0, 0]),
                                      SamplingParams(1.0, max_tokens=max_tokens, seeds=[1, 2]), logits_hook=hook)
    assert out.completion_ids.shape == (2, max_tokens)
    assert out.completion_ids[0, end_at].item() == eos[0]
    assert out.completion_mask[0].tolist() == [1] * (end_at + 1) + [0] * (max_tokens - end_at - 1)
    assert out.completion_mask[1].tolist() == [1] * max_tokens
    assert out.is_truncated.tolist() == [False, True]


# ------------------------------------------------------------------------------------------ checkpoints


class _Accelerator:
    """What save_checkpoint needs from accelerate, for one process."""

    is_main_process = True
    num_processes = 1

    def wait_for_everyone(self):
        pass

    def get_state_dict(self, scorer):
        return {}

    def save_state(self, path):
        Path(path).mkdir(parents=True)
        (Path(path) / "optimizer.bin").write_text("optimizer")

    def unwrap_model(self, scorer):
        return scorer


class _Saves:
    def __init__(self, filename):
        self.filename = filename

    def save_pretrained(self, path, **kwargs):
        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / self.filename).write_text(self.filename)


def test_checkpoints_are_ordered_by_step_and_latest_is_the_highest(tmp_path):
    for step in (2, 10, 9):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / STATE_FILE).write_text(json.dumps({"global_step": step}))
    (tmp_path / "checkpoint-11").mkdir()                       # interrupted before its state was written
    (tmp_path / ".checkpoint-12.tmp").mkdir()
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-2", "checkpoint-9", "checkpoint-10"]
    assert resolve_resume("latest", tmp_path) == tmp_path / "checkpoint-10"
    assert resolve_resume(None, tmp_path) is None


def test_save_checkpoint_writes_every_part_and_keeps_the_newest(tmp_path):
    scorer = SimpleNamespace(model=_Saves("model.safetensors"))
    for step in (8, 9, 10, 11):
        state = {"global_step": step, "rollout_step": step, "prompts_consumed": 2 * step}
        path = save_checkpoint(_Accelerator(), scorer, _Saves("tokenizer.json"), state, tmp_path, step, total_limit=2)
        assert path == tmp_path / f"checkpoint-{step}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-10", "checkpoint-11"]
    newest = tmp_path / "checkpoint-11"
    assert (newest / "model" / "model.safetensors").is_file()
    assert (newest / "model" / "tokenizer.json").is_file()          # the folder loads as a model with its processor
    assert (newest / "accelerate" / "optimizer.bin").is_file()
    assert json.loads((newest / STATE_FILE).read_text()) == state


# ------------------------------------------------------------------------------------------ rewards


def test_reward_runner_keeps_none_as_no_opinion_and_passes_reward_kwargs():
    """accuracy has no opinion without a solution (NaN, left out of the baseline, not 0); format's
    answer_only option, given through reward_kwargs, accepts an answer without a think block."""
    from mmr1.grpo.rewards import RewardRunner, build_rewards

    runner = RewardRunner(build_rewards(["accuracy", "format"], {"format": {"answer_only": True}}))
    table = runner(["<answer>3</answer>", "<answer>4</answer>"], solution=["3", None])
    assert table[0] == [1.0, 1.0]
    assert math.isnan(table[1][0]) and table[1][1] == 1.0


def test_reward_weights_weight_the_total_reward(tiny_vl, tmp_path):
    """The rollout's reward is sum_j weight_j * reward_j per completion (no reward is None here)."""
    from mmr1.grpo.trainer import GRPOTrainer

    weights = [1.0, 1.0, 3.0]
    trainer = GRPOTrainer(_config(tiny_vl, tmp_path / "out", reward_weights=weights))
    _, stats = trainer.rollout()
    means = [stats[f"rewards/{name}"] for name in ("accuracy", "format", "vowel_share")]
    assert means[2] > 0                                             # so the weight of 3 matters
    assert stats["reward"] == pytest.approx(sum(w * m for w, m in zip(weights, means)), abs=1e-5)
