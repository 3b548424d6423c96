"""The algorithm registries of mmr1.grpo.algorithms: config takes its choices from them, every
registered name reaches its function (a spy put in the registry is called), duplicates are refused."""

from __future__ import annotations

import json

import pytest
import torch

from test_grpo_trainer import base_config

from mmr1.config import CHOICES, ConfigError, build_config
from mmr1.grpo import algorithms as algo
from mmr1.grpo.trainer import GRPOTrainer
from mmr1.registry import RegistryError

# config key -> the registry its values are the names of
CONFIG_REGISTRIES = {
    "loss_type": algo.LOSS_TYPES,
    "scale_rewards": algo.SCALE_REWARDS,
    "importance_sampling_level": algo.IMPORTANCE_SAMPLING_LEVELS,
    "kl_approximator": algo.KL_ESTIMATORS,
    "temperature_schedule": algo.TEMPERATURE_SCHEDULES,
}
ALL_REGISTRIES = [*CONFIG_REGISTRIES.values(), algo.POLICY_LOSSES, algo.ADVANTAGE_ESTIMATORS]
CONFIG_NAMES = [(key, name) for key, reg in CONFIG_REGISTRIES.items() for name in reg.choices]


def spy_on(monkeypatch, registry, name) -> list:
    """Replace ``registry``'s entry for ``name`` by a wrapper that records its keyword calls."""
    canonical, calls = registry.canonical(name), []
    real = registry.entries[canonical]

    def spy(**kwargs):
        calls.append(kwargs)
        return real(**kwargs)

    monkeypatch.setitem(registry.entries, canonical, spy)
    return calls


def run_config(config):
    """The public functions the trainer calls, with the option values taken from ``config``."""
    g = torch.Generator().manual_seed(0)
    logp = -torch.rand(4, 5, generator=g)
    old, ref = logp + 0.1 * torch.randn(4, 5, generator=g), logp + 0.2 * torch.randn(4, 5, generator=g)
    adv, _ = algo.group_advantages(torch.tensor([1.0, 0.0, 0.5, 2.0]), 4, config.scale_rewards)
    algo.policy_loss(logp, old, adv, torch.ones(4, 5), loss_type=config.loss_type, delta=config.delta,
                     importance_sampling_level=config.importance_sampling_level, ref_logp=ref, beta=0.1,
                     kl_estimator=algo.resolve_kl_estimator(config.kl_approximator))
    algo.temperature_at(3, 10, config.temperature_schedule, config.temperature_begin, config.temperature_end)


def test_config_choices_are_the_registries_names():
    for key, registry in CONFIG_REGISTRIES.items():
        assert CHOICES[key] is registry.choices
        assert list(registry.choices) == [*registry, *registry.aliases]


@pytest.mark.parametrize("key, name", CONFIG_NAMES, ids=[f"{k}={n}" for k, n in CONFIG_NAMES])
def test_every_registered_name_is_accepted_by_config_and_reaches_its_function(monkeypatch, key, name):
    calls = spy_on(monkeypatch, CONFIG_REGISTRIES[key], name)
    config = build_config({key: name})
    assert getattr(config, key) == name
    run_config(config)
    assert len(calls) == 1


@pytest.mark.parametrize("delta, surrogate", [(None, "clip"), (1.5, "two_sided")])
def test_delta_picks_the_two_sided_policy_loss(monkeypatch, delta, surrogate):
    calls = spy_on(monkeypatch, algo.POLICY_LOSSES, surrogate)
    run_config(build_config({"delta": delta}))
    assert len(calls) == 1 and calls[0].get("delta") == delta


def test_group_advantages_dispatches_to_the_named_estimator(monkeypatch):
    calls = spy_on(monkeypatch, algo.ADVANTAGE_ESTIMATORS, "grpo")
    algo.group_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0]), 2, "none", True)
    assert calls == [dict(rewards=calls[0]["rewards"], num_generations=2, scale_rewards="none",
                          no_mean_for_same_reward=True, eps=1e-4)]
    with pytest.raises(ValueError, match="Did you mean 'grpo'"):
        algo.group_advantages(torch.zeros(4), 2, estimator="grp")


def test_an_entry_registered_later_is_a_valid_config_value(monkeypatch):
    monkeypatch.setitem(algo.LOSS_TYPES.entries, "seq_sum", lambda **kw: kw["masked"].sum())
    monkeypatch.setitem(algo.LOSS_TYPES.meta, "seq_sum", {})
    assert build_config({"loss_type": "seq_sum"}).loss_type == "seq_sum"
    loss, _ = algo.policy_loss(torch.zeros(2, 3), None, torch.tensor([1.0, -2.0]), torch.ones(2, 3),
                               loss_type="seq_sum")
    assert float(loss) == pytest.approx(3.0)                     # -(1 * 3) - (-2 * 3)


def test_an_unknown_name_is_refused_with_a_suggestion():
    with pytest.raises(ConfigError, match=r"loss_type must be one of grpo, bnpo, dr_grpo, dapo.*Did you mean 'dapo'"):
        build_config({"loss_type": "dapoo"})
    for registry in ALL_REGISTRIES:
        first = next(iter(registry))
        message = str(registry.unknown(first + "x"))
        assert f"Did you mean {first!r}?" in message and all(name in message for name in registry)


@pytest.mark.parametrize("registry", ALL_REGISTRIES, ids=lambda r: r.kind)
def test_each_registry_refuses_a_name_registered_twice(registry):
    taken = [next(iter(registry)), *list(registry.aliases)[:1]]
    before = (dict(registry.entries), dict(registry.aliases))
    for name in taken:
        with pytest.raises(RegistryError, match=f"{name!r} is registered twice"):
            registry.register(name)(lambda **kw: None)
        with pytest.raises(RegistryError, match="registered twice"):
            registry.register("a_new_name", aliases=(name,))(lambda **kw: None)
    assert (registry.entries, registry.aliases) == before


@pytest.mark.parametrize("loss_type", list(algo.LOSS_TYPES))
def test_accumulated_loss_divides_by_the_steps_unless_the_loss_type_spans_the_step(loss_type):
    loss = torch.tensor(6.0)
    expected = 6.0 if loss_type == "dapo" else 1.5
    assert float(algo.accumulated_loss(loss, loss_type=loss_type, gradient_accumulation_steps=4)) == expected


def test_the_trainer_calls_the_entries_its_config_names(monkeypatch, tiny_vl, tmp_path):
    """One run naming a non-default entry of every registry: each one is called by the trainer."""
    named = {"loss_type": "bnpo", "scale_rewards": "batch", "importance_sampling_level": "sequence",
             "kl_approximator": "mse", "temperature_schedule": "linear"}
    calls = {key: spy_on(monkeypatch, CONFIG_REGISTRIES[key], name) for key, name in named.items()}
    calls["two_sided"] = spy_on(monkeypatch, algo.POLICY_LOSSES, "two_sided")
    calls["grpo"] = spy_on(monkeypatch, algo.ADVANTAGE_ESTIMATORS, "grpo")
    GRPOTrainer(build_config(base_config(tiny_vl, tmp_path / "out", beta=0.1, delta=1.5, max_steps=1,
                                         **named))).train()
    assert all(calls.values()), {k: len(v) for k, v in calls.items()}


@pytest.mark.parametrize("loss_type", ["grpo", "dapo"])
def test_two_accumulated_micro_batches_give_the_gradient_of_one_batch(tiny_vl, tmp_path, loss_type):
    """grpo (a mean of sequence means) and dapo (the step's token mean) are batch-size free, so 2 x 8
    completions accumulated must give the gradient of one batch of 16: the trainer backpropagates
    ``accumulated_loss``."""
    norms = []
    for batch, steps in ((8, 2), (16, 1)):
        out = tmp_path / f"b{batch}"
        GRPOTrainer(build_config(base_config(tiny_vl, out, loss_type=loss_type, per_device_train_batch_size=batch,
                                             gradient_accumulation_steps=steps, max_steps=1))).train()
        norms.append(json.loads((out / "metrics.jsonl").read_text().splitlines()[0])["grad_norm"])
    assert norms[0] == pytest.approx(norms[1], rel=1e-4)
