"""Every GRPO training option changes what the trainer computes: each test fails if its option is ignored.

Trainer-level tests run ``GRPOTrainer(build_config(...)).train()`` on the tiny Qwen2.5-VL and record
what reaches the loss with a spy around ``mmr1.grpo.algorithms.policy_loss`` (its inputs and the loss
it returned), the rollout backend's ``generate`` (sampling parameters and completions) and the
scorer's raw logits. Expected values are computed here from the recorded inputs with the formulas
written out independently (``expected_loss``, ``expected_advantages``, ``KL_FORMULAS``), taking the
option values from the config, never from what the trainer passed on. Each test also checks that
the option makes a difference on the very batch it looks at, so a no-op could not pass.
"""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path

import pytest
import torch

from test_grpo_trainer import base_config

from mmr1.config import build_config
from mmr1.grpo import algorithms as algo
from mmr1.grpo.trainer import GRPOTrainer
from mmr1.models.adapters import QwenVLAdapter
from mmr1.rollout.hf import HFRollout

TOL = dict(atol=2e-6, rtol=1e-5)     # float32 loss against a float64 recomputation
ADV_EPS = 1e-4                      # the group_advantages std offset

# KL(policy || reference) per token from d = ref_logp - logp, by the project's estimator names.
KL_FORMULAS = {
    "k1": lambda d: -d,
    "k2": lambda d: 0.5 * d ** 2,
    "k3": lambda d: torch.exp(d) - d - 1,
    "low_var_kl": lambda d: (torch.exp(d.clamp(-20, 20)) - d.clamp(-20, 20) - 1).clamp(-10, 10),
}
KL_NAMES = {"k1": "k1", "kl": "k1", "k2": "k2", "kimikl": "k2", "mse": "k2", "fullkimi": "k2",
            "k3": "k3", "low_var_kl": "low_var_kl"}


# ------------------------------------------------------------------------------------------ recording


class Spy:
    """Records every policy_loss call, every rollout, group_advantages inputs and the scorer's logits."""

    def __init__(self, monkeypatch):
        self.monkeypatch = monkeypatch
        self.calls, self.rollouts, self.rewards, self.logits = [], [], [], []
        self.eos_rate = None          # set to make completions end early (an EOS bias in sampling only)
        self.backward_layer_calls = 0
        self._in_backward = False
        real_loss, signature = algo.policy_loss, inspect.signature(algo.policy_loss)

        def policy_loss(*args, **kwargs):
            loss, metrics = real_loss(*args, **kwargs)
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            call = {k: v.detach().clone() if isinstance(v, torch.Tensor) else v for k, v in bound.arguments.items()}
            entropy = bound.arguments["entropy"]
            call.update(loss=loss.detach().clone(), metrics=dict(metrics), logits_index=len(self.logits) - 1,
                        entropy_has_grad=entropy is not None and entropy.requires_grad)
            self.calls.append(call)
            return loss, metrics

        real_adv = algo.group_advantages

        def group_advantages(rewards, num_generations, *args, **kwargs):
            self.rewards.append(rewards.detach().clone())
            return real_adv(rewards, num_generations, *args, **kwargs)

        real_generate = HFRollout.generate

        def generate(backend, model, prompts, prompt_index, sampling, logits_hook=None):
            if self.eos_rate is not None:
                logits_hook = _eos_bias(backend.adapter.eos_token_ids[0], self.eos_rate)
            out = real_generate(backend, model, prompts, prompt_index, sampling, logits_hook=logits_hook)
            self.rollouts.append((sampling, out))
            return out

        monkeypatch.setattr(algo, "policy_loss", policy_loss)
        monkeypatch.setattr(algo, "group_advantages", group_advantages)
        monkeypatch.setattr(HFRollout, "generate", generate)

    def attach(self, trainer):
        """Record the scorer's raw logits and count layer forwards that run inside ``backward``."""
        trainer.scorer.register_forward_hook(lambda m, args, out: self.logits.append(out.detach().clone()))
        for name, module in trainer.policy.named_modules():
            if name.endswith(".mlp") and (".layers." in name or ".blocks." in name):
                module.register_forward_pre_hook(self._count_layer)   # a pre-hook: recomputation may stop early
        real_backward = trainer.accelerator.backward

        def backward(loss, **kwargs):
            self._in_backward = True
            try:
                return real_backward(loss, **kwargs)
            finally:
                self._in_backward = False

        self.monkeypatch.setattr(trainer.accelerator, "backward", backward)

    def _count_layer(self, module, args):
        self.backward_layer_calls += int(self._in_backward)


def _eos_bias(eos: int, rate: float):
    def hook(logits, step):
        logits[:, eos] = logits.logsumexp(-1) + math.log(rate / (1 - rate))   # P(eos) about `rate`
        return logits
    return hook


@pytest.fixture
def spy(monkeypatch):
    return Spy(monkeypatch)


def train(spy, model, out, **options):
    """Build the trainer from a config, attach the spy, train; returns (trainer, history)."""
    trainer = GRPOTrainer(build_config(base_config(model, out, **options)))
    spy.attach(trainer)
    return trainer, trainer.train()


# ------------------------------------------------------------------------------------------ formulas


def expected_loss(call, config, num_items=None, **override):
    """The GRPO micro-batch loss from a recorded call's tensors and the *config's* option values."""
    o = {k: getattr(config, k) for k in ("loss_type", "epsilon", "epsilon_high", "delta", "importance_sampling_level",
                                          "beta", "kl_approximator", "entropy_weight", "max_completion_length")}
    o.update(override)
    logp, m = call["logp"].double(), call["mask"].double()
    adv = call["advantages"].double()[:, None]
    old = logp if call["old_logp"] is None else call["old_logp"].double()
    log_ratio = logp - old
    if o["importance_sampling_level"] == "sequence":
        log_ratio = (log_ratio * m).sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp(min=1)
    ratio = torch.exp(log_ratio)
    high = o["epsilon"] if o["epsilon_high"] is None else o["epsilon_high"]
    clipped = ratio.clamp(1 - o["epsilon"], 1 + high)
    capped = ratio if o["delta"] is None else torch.minimum(ratio, torch.tensor(o["delta"], dtype=ratio.dtype))
    per_token = -torch.minimum(capped * adv, clipped * adv).expand_as(logp)
    if o["beta"]:
        kl = KL_FORMULAS[KL_NAMES[o["kl_approximator"]]]
        per_token = per_token + o["beta"] * kl(call["ref_logp"].double() - logp)
    if o["entropy_weight"]:
        per_token = per_token - o["entropy_weight"] * call["entropy"].double()
    total = (per_token * m).sum()
    if o["loss_type"] == "grpo":
        return ((per_token * m).sum(1) / m.sum(1).clamp(min=1)).mean()
    if o["loss_type"] == "bnpo":
        return total / m.sum().clamp(min=1)
    if o["loss_type"] == "dr_grpo":
        return total / (logp.shape[0] * o["max_completion_length"])
    return total / max(float(m.sum() if num_items is None else num_items), 1.0)      # dapo


def expected_advantages(total, G, scale, no_mean):
    """(r - group mean) / scale, from the combined rewards, written out as MMR1 defines it."""
    groups = total.double().view(-1, G)
    mean, std = groups.mean(1, keepdim=True), groups.std(1, keepdim=True)
    centre = torch.where(std > 0, mean, torch.zeros_like(mean)) if no_mean else mean
    adv = groups - centre
    if scale == "group":
        adv = adv / (std + ADV_EPS)
    elif scale == "batch":
        adv = adv / (total.double().std() + ADV_EPS)
    if no_mean:
        adv = adv.clamp(-1, 1)
    return adv.reshape(-1)


def scored_logp(spy, call, ids, temperature):
    """log_softmax(raw scorer logits / temperature) at ``ids``, for the scorer output this call was built from."""
    raw = spy.logits[call["logits_index"]].double()
    return torch.log_softmax(raw / temperature, -1).gather(-1, ids[..., None]).squeeze(-1)


def assert_loss(call, expected):
    torch.testing.assert_close(call["loss"].double(), expected, **TOL)


def differs(a, b, margin=1e-4):
    return abs(float(a) - float(b)) > margin


def _weights(trainer):
    return {n: p.detach().clone() for n, p in trainer.policy.named_parameters()}


# ------------------------------------------------------------------------------------------ pure function


@pytest.mark.parametrize("name", sorted(KL_NAMES))
def test_policy_loss_adds_beta_times_the_estimators_mean_kl(name):
    """policy_loss(beta) - policy_loss(0) is beta x the token-mean of the named estimator's KL."""
    g = torch.Generator().manual_seed(0)
    logp = -torch.rand(4, 6, generator=g, dtype=torch.float64) * 3
    ref = logp + torch.linspace(-4, 4, 24, dtype=torch.float64).view(4, 6)   # d beyond low_var_kl's clamp
    mask = (torch.arange(6)[None] < torch.tensor([[6], [2], [4], [5]])).double()
    adv, beta = torch.randn(4, generator=g, dtype=torch.float64), 0.3
    plain, _ = algo.policy_loss(logp, None, adv, mask, loss_type="bnpo")
    with_kl, metrics = algo.policy_loss(logp, None, adv, mask, loss_type="bnpo", ref_logp=ref, beta=beta,
                                        kl_estimator=name)
    kl = {k: (f(ref - logp) * mask).sum() / mask.sum() for k, f in KL_FORMULAS.items()}
    torch.testing.assert_close(with_kl - plain, beta * kl[KL_NAMES[name]])
    assert metrics["kl"] == pytest.approx(float(kl[KL_NAMES[name]]))
    assert all(differs(kl[KL_NAMES[name]], v) for k, v in kl.items() if k != KL_NAMES[name])
    assert differs(with_kl, plain)


# ------------------------------------------------------------------------------------------ beta / KL


@pytest.mark.parametrize("name", sorted(KL_NAMES))
def test_beta_adds_the_named_kl_estimator_to_the_trainer_loss(spy, tiny_vl, tmp_path, name):
    """With beta the trainer's loss is the plain loss + beta x mean KL(policy || reference) of the named estimator."""
    # the second pass over a rollout at a low temperature: log-ratios to the reference beyond low_var_kl's clamp
    trainer, _ = train(spy, tiny_vl, tmp_path / "out", beta=0.5, kl_approximator=name, loss_type="bnpo",
                       num_iterations=2, temperature=0.15, learning_rate=0.02, max_steps=2)
    c = trainer.config
    first, last = spy.calls
    torch.testing.assert_close(first["ref_logp"], first["logp"], atol=1e-5, rtol=0)   # reference = initial policy
    assert_loss(last, expected_loss(last, c))
    d = last["ref_logp"].double() - last["logp"].double()
    mean_kl = {k: float((f(d) * last["mask"]).sum() / last["mask"].sum()) for k, f in KL_FORMULAS.items()}
    assert last["metrics"]["kl"] == pytest.approx(mean_kl[KL_NAMES[name]], rel=1e-4, abs=1e-6)
    assert differs(expected_loss(last, c), expected_loss(last, c, beta=0.0))
    for other in KL_FORMULAS:                               # this batch tells every estimator apart
        if other != KL_NAMES[name]:
            assert differs(expected_loss(last, c), expected_loss(last, c, kl_approximator=other)), other
    if name == "fullkimi":
        assert trainer.ref_model is None
        assert all(torch.equal(call["ref_logp"], call["old_logp"]) for call in spy.calls)
    else:
        assert trainer.ref_model is not None


def test_fullkimi_uses_mean_only_advantages(spy, tiny_vl, tmp_path):
    """fullkimi subtracts the group mean but does not divide by the std, whatever scale_rewards says."""
    train(spy, tiny_vl, tmp_path / "out", beta=0.1, kl_approximator="fullkimi", scale_rewards="group", max_steps=1)
    total = spy.rewards[0]
    expected = expected_advantages(total, 4, "none", False)
    torch.testing.assert_close(spy.calls[0]["advantages"].double(), expected, **TOL)
    assert differs((expected - expected_advantages(total, 4, "group", False)).abs().max(), 0.0)


# ------------------------------------------------------------------------------------------ ratio and clipping


@pytest.mark.parametrize("level", ["token", "sequence"])
def test_importance_sampling_level_sets_the_ratio(spy, tiny_vl, tmp_path, level):
    """sequence: one ratio per completion (geometric mean of its token ratios); token: one per token."""
    trainer, _ = train(spy, tiny_vl, tmp_path / "out", importance_sampling_level=level, num_iterations=2,
                       loss_type="grpo", epsilon=0.1)
    c = trainer.config
    second = spy.calls[1]                                   # second pass over the rollout: old != new
    log_ratio = second["logp"].double() - second["old_logp"].double()
    m = second["mask"].double()
    assert differs(log_ratio.abs().max(), 0.0)
    token_ratio_mean = float((log_ratio.exp() * m).sum() / m.sum())
    sequence_ratio_mean = float(((log_ratio * m).sum(1) / m.sum(1)).exp().mean())
    logged = {"token": token_ratio_mean, "sequence": sequence_ratio_mean}[level]
    assert second["metrics"]["ratio_mean"] == pytest.approx(logged, rel=1e-5)
    assert_loss(second, expected_loss(second, c))
    other = {"token": "sequence", "sequence": "token"}[level]
    assert differs(expected_loss(second, c), expected_loss(second, c, importance_sampling_level=other))
    assert differs(token_ratio_mean, sequence_ratio_mean)


@pytest.mark.parametrize("options, without", [
    ({"epsilon": 0.05}, {"epsilon": 0.2}),
    ({"epsilon": 0.05, "epsilon_high": 0.5}, {"epsilon_high": None}),
    ({"epsilon": 0.05, "delta": 1.1}, {"delta": None}),
], ids=["epsilon", "epsilon_high", "delta"])
def test_clip_options_reach_the_loss(spy, tiny_vl, tmp_path, options, without):
    """epsilon / epsilon_high bound the clipped ratio and delta caps the unclipped one, in the trainer's loss."""
    trainer, _ = train(spy, tiny_vl, tmp_path / "out", num_iterations=2, loss_type="bnpo", **options)
    c = trainer.config
    second = spy.calls[1]
    assert second["metrics"]["clip_ratio/region_mean"] > 0
    assert_loss(second, expected_loss(second, c))
    assert differs(expected_loss(second, c), expected_loss(second, c, **without), margin=1e-5)


# ------------------------------------------------------------------------------------------ loss types


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
def test_loss_type_sets_the_normalisation(spy, tiny_vl, tmp_path, loss_type):
    """Each loss_type's aggregation reaches the trainer; dapo divides by the tokens of the whole optimizer step."""
    spy.eos_rate = 0.15
    trainer, _ = train(spy, tiny_vl, tmp_path / "out", loss_type=loss_type, gradient_accumulation_steps=2,
                       max_steps=1)
    c = trainer.config
    assert len(spy.calls) == 2                               # two micro-steps, one optimizer step
    step_tokens = sum(float(call["mask"].sum()) for call in spy.calls)
    lengths = torch.cat([call["mask"].sum(1) for call in spy.calls])
    assert len(set(lengths.tolist())) > 1                    # completions of different lengths
    for call in spy.calls:
        assert_loss(call, expected_loss(call, c, num_items=step_tokens))
    first = spy.calls[0]
    values = {t: float(expected_loss(first, c, num_items=step_tokens, loss_type=t))
              for t in ("grpo", "bnpo", "dr_grpo", "dapo")}
    assert all(differs(values[loss_type], v, margin=1e-5) for t, v in values.items() if t != loss_type), values


# ------------------------------------------------------------------------------------------ masking and rewards


@pytest.mark.parametrize("mask_truncated", [False, True])
def test_mask_truncated_completions_drops_truncated_rows(spy, tiny_vl, tmp_path, mask_truncated):
    """With the option a completion that hit max_completion_length has an all-zero loss mask."""
    spy.eos_rate = 0.1
    trainer, _ = train(spy, tiny_vl, tmp_path / "out", mask_truncated_completions=mask_truncated,
                       max_completion_length=6, max_steps=1, loss_type="bnpo")
    _, out = spy.rollouts[0]
    call = spy.calls[0]
    truncated = out.is_truncated
    assert truncated.any() and not truncated.all()
    keep = (~truncated).long()[:, None] if mask_truncated else torch.ones_like(truncated, dtype=torch.long)[:, None]
    assert torch.equal(call["mask"].long(), out.completion_mask.long() * keep)
    assert_loss(call, expected_loss(call, trainer.config))
    full = dict(call, mask=out.completion_mask)
    assert differs(expected_loss(call, trainer.config), expected_loss(full, trainer.config)) == mask_truncated


@pytest.fixture
def first_group_constant(tmp_path):
    """A reward plugin: 1.0 for the first four completions (the first prompt's group), the vowel share elsewhere."""
    from mmr1.plugins import reset_plugin_manager

    plugin = tmp_path / "first_group_constant.py"
    plugin.write_text(
        "from mmr1 import hookimpl\n"
        "def first_group_constant(completions, **kw):\n"
        "    return [1.0 if i < 4 else sum(ch in 'aeiou' for ch in c) / max(len(c), 1)\n"
        "            for i, c in enumerate(completions)]\n"
        "@hookimpl\n"
        "def register_rewards(register):\n"
        "    register('first_group_constant', first_group_constant)\n")
    yield str(plugin)
    reset_plugin_manager()


@pytest.mark.parametrize("no_mean", [False, True])
@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_scale_rewards_and_no_mean_set_the_advantages(spy, tiny_vl, tmp_path, first_group_constant, scale, no_mean):
    """The advantages reaching the loss are the combined rewards centred and scaled as the config says."""
    train(spy, tiny_vl, tmp_path / "out", scale_rewards=scale, no_mean_for_same_reward=no_mean,
          rewards=["first_group_constant"], plugins=[first_group_constant], max_steps=1)
    total = spy.rewards[0]
    assert torch.all(total[:4] == 1.0) and total[4:].std() > 0   # one group without spread, one with
    expected = expected_advantages(total, 4, scale, no_mean)
    torch.testing.assert_close(spy.calls[0]["advantages"].double(), expected, **TOL)
    for other_scale in ("group", "batch", "none"):
        for other_no_mean in (False, True):
            if (other_scale, other_no_mean) != (scale, no_mean):
                other = expected_advantages(total, 4, other_scale, other_no_mean)
                assert differs((expected - other).abs().max(), 0.0), (other_scale, other_no_mean)


# ------------------------------------------------------------------------------------------ entropy


def test_entropy_weight_enters_the_loss_and_the_gradient(spy, tiny_vl, tmp_path):
    """entropy_weight subtracts weight x the policy's entropy (with gradient), so the update changes."""
    plain, _ = train(spy, tiny_vl, tmp_path / "plain", max_steps=1, loss_type="bnpo")
    assert not spy.calls[0]["entropy_has_grad"]
    trainer, _ = train(spy, tiny_vl, tmp_path / "bonus", max_steps=1, loss_type="bnpo", entropy_weight=0.5)
    call = spy.calls[-1]
    logits = spy.logits[call["logits_index"]].double() / trainer.config.temperature
    entropy = -(torch.softmax(logits, -1) * torch.log_softmax(logits, -1)).sum(-1)
    torch.testing.assert_close(call["entropy"].double(), entropy, atol=1e-5, rtol=1e-5)
    assert call["entropy_has_grad"]
    assert_loss(call, expected_loss(call, trainer.config))
    assert differs(expected_loss(call, trainer.config), expected_loss(call, trainer.config, entropy_weight=0.0))
    before, after = _weights(plain), _weights(trainer)
    assert any(not torch.equal(before[n], after[n]) for n in before)


# ------------------------------------------------------------------------------------------ temperature


@pytest.mark.parametrize("schedule", ["constant", "linear"])
def test_temperature_schedule_drives_rollout_and_loss(spy, tiny_vl, tmp_path, schedule):
    """Each step's temperature (linear: begin + (end - begin) x step / total) is sampled, logged and scored with."""
    begin, end, steps = 0.5, 1.5, 4
    _, history = train(spy, tiny_vl, tmp_path / "out", temperature_schedule=schedule, temperature=0.7,
                       temperature_begin=begin, temperature_end=end, max_steps=steps)
    if schedule == "linear":
        expected = [begin + (end - begin) * step / steps for step in range(steps)]
    else:
        expected = [0.7] * steps
    assert [sampling.temperature for sampling, _ in spy.rollouts] == pytest.approx(expected)
    assert [h["temperature"] for h in history] == pytest.approx(expected)
    for call, (_, out), temperature in zip(spy.calls, spy.rollouts, expected, strict=True):
        logp = scored_logp(spy, call, out.completion_ids, temperature)
        torch.testing.assert_close(call["logp"].double(), logp, atol=1e-5, rtol=1e-5)
        if temperature != 1.0:
            assert differs((logp - scored_logp(spy, call, out.completion_ids, 1.0)).abs().max(), 0.0)


# ------------------------------------------------------------------------------------------ model options


def test_gradient_checkpointing_recomputes_layers_in_backward(spy, tiny_vl, tmp_path):
    """With gradient_checkpointing the layers really run again inside backward; the update stays the same."""
    plain, _ = train(spy, tiny_vl, tmp_path / "plain", max_steps=1, shared_prefix=False)
    assert spy.backward_layer_calls == 0
    checkpointed, _ = train(spy, tiny_vl, tmp_path / "gc", max_steps=1, gradient_checkpointing=True)
    assert checkpointed.policy.is_activation_checkpointing
    assert spy.backward_layer_calls > 0
    a, b = _weights(plain), _weights(checkpointed)
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=1e-5)


def _part(name: str) -> str:
    if name.startswith("model.visual.merger."):
        return "projector"
    return "vision" if name.startswith("model.visual.") else "language"


@pytest.mark.parametrize("train_parts, freeze_vision, parts", [
    ("all", False, {"vision", "projector", "language"}),
    ("all", True, {"projector", "language"}),
    ("language_model", False, {"language"}),
    ("projector", False, {"projector"}),
    ("projector+language_model", False, {"projector", "language"}),
    ("projector+language_model", True, {"projector", "language"}),
])
def test_train_parts_change_exactly_their_parameters(tiny_vl, tmp_path, train_parts, freeze_vision, parts):
    """Only the selected parts are trainable and move; every other parameter stays bit-identical."""
    trainer = GRPOTrainer(build_config(base_config(tiny_vl, tmp_path / "out", train_parts=train_parts,
                                                   freeze_vision_tower=freeze_vision, max_steps=1)))
    before = _weights(trainer)
    assert {_part(n) for n in before} == {"vision", "projector", "language"}
    trainable = {n for n, p in trainer.policy.named_parameters() if p.requires_grad}
    assert trainable == {n for n in before if _part(n) in parts}
    trainer.train()
    after = _weights(trainer)
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed == trainable


def test_lora_trains_only_adapters_and_saves_the_merged_model(tiny_vl, tmp_path, monkeypatch):
    """use_peft: only LoRA weights train, the base stays bit-identical, and final/ holds base + merged LoRA delta."""
    trainer = GRPOTrainer(build_config(base_config(tiny_vl, tmp_path / "out", use_peft=True, lora_r=4,
                                                   lora_target_modules=["q_proj", "v_proj"], max_steps=2)))
    before, after = _weights(trainer), {}
    trainable = {n for n, p in trainer.policy.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n for n in trainable)
    assert trainable < set(before)
    save_final = trainer.save_final                          # it merges the adapters in place: look before that

    def snapshot_then_save():
        after.update(_weights(trainer))
        save_final()

    monkeypatch.setattr(trainer, "save_final", snapshot_then_save)
    trainer.train()
    assert {n for n in before if not torch.equal(before[n], after[n])} <= trainable
    assert any(not torch.equal(before[n], after[n]) for n in trainable)
    base = QwenVLAdapter.load_model(tiny_vl, torch.float32).state_dict()
    final = QwenVLAdapter.load_model(tmp_path / "out" / "final", torch.float32).state_dict()
    assert final.keys() == base.keys()
    changed = {n for n in base if not torch.equal(base[n], final[n])}
    targets = {n for n in base if n.startswith("model.language_model.")
               and n.endswith(("q_proj.weight", "v_proj.weight"))}
    assert targets and changed == targets


# ------------------------------------------------------------------------------------------ checkpoints


def _checkpoints(out: Path) -> dict[str, int]:
    return {p.name: json.loads((p / "mmr1_state.json").read_text())["global_step"]
            for p in sorted(out.glob("checkpoint-*"))}


@pytest.mark.parametrize("limit, kept", [(None, {"checkpoint-2": 2, "checkpoint-4": 4}), (1, {"checkpoint-4": 4})])
def test_train_saves_every_save_steps_within_save_total_limit(spy, tiny_vl, tmp_path, limit, kept):
    """train() alone writes checkpoint-N every save_steps steps before the last; save_total_limit keeps the newest."""
    train(spy, tiny_vl, tmp_path / "out", save_steps=2, max_steps=5, save_total_limit=limit)
    assert _checkpoints(tmp_path / "out") == kept
    assert (tmp_path / "out" / "final" / "config.json").is_file()


# ------------------------------------------------------------------------------------------ rollout reuse


@pytest.mark.parametrize("iterations", [1, 2])
def test_num_iterations_passes_over_each_rollout(spy, tiny_vl, tmp_path, iterations):
    """num_iterations optimizer passes share one rollout; later passes see ratios against the rollout's log-probs."""
    trainer, _ = train(spy, tiny_vl, tmp_path / "out", num_iterations=iterations, max_steps=4)
    assert trainer.global_step == 4 and len(spy.calls) == 4
    assert len(spy.rollouts) == 4 // iterations
    for k, call in enumerate(spy.calls):
        out = spy.rollouts[k // iterations][1]
        assert torch.equal(call["mask"].long(), out.completion_mask.long())
        torch.testing.assert_close(call["logp"].double(), scored_logp(spy, call, out.completion_ids, 1.0),
                                   atol=1e-5, rtol=1e-5)
        if iterations == 1:
            assert call["old_logp"] is None
            continue
        ratio_is_one = torch.allclose(call["logp"], call["old_logp"], atol=1e-5)
        assert ratio_is_one == (k % iterations == 0)       # the first pass is on-policy, the second is not
        assert (call["metrics"]["ratio_mean"] == pytest.approx(1.0, abs=1e-5)) == ratio_is_one


@pytest.mark.parametrize("steps_per_generation", [None, 2])
def test_steps_per_generation_shares_one_rollout_between_optimizer_steps(spy, tiny_vl, tmp_path, steps_per_generation):
    """steps_per_generation micro-batches of one rollout each take their own optimizer step."""
    trainer, _ = train(spy, tiny_vl, tmp_path / "out", steps_per_generation=steps_per_generation, max_steps=4)
    spg = steps_per_generation or 1
    assert trainer.global_step == 4 and len(spy.calls) == 4
    assert len(spy.rollouts) == 4 // spg
    assert all(out.completion_ids.shape[0] == 8 * spg for _, out in spy.rollouts)
    for k, call in enumerate(spy.calls):
        out = spy.rollouts[k // spg][1]
        part = slice((k % spg) * 8, (k % spg + 1) * 8)
        assert torch.equal(call["mask"].long(), out.completion_mask[part].long())
        torch.testing.assert_close(call["logp"].double(), scored_logp(spy, call, out.completion_ids[part], 1.0),
                                   atol=1e-5, rtol=1e-5)
        assert (call["old_logp"] is None) == (spg == 1)    # a later micro-step is off-policy
    if spg > 1:
        second = spy.calls[1]
        assert not torch.allclose(second["logp"], second["old_logp"], atol=1e-5)
