"""policy_loss against trl 1.16's own GRPOTrainer._compute_loss on identical random inputs.

trl keeps its loss inside a trainer method. We call the unbound method with a stand-in ``self``
(a SimpleNamespace holding exactly the attributes the method reads) whose
``_get_per_token_logps_and_entropies`` returns our tensors instead of running a model, and whose
accelerator is a single process (gather/reduce are the identity). Everything after that call is
trl's own arithmetic: ratio, clipping, KL, normalisation, entropy bonus and its clip metrics. Both
the loss value and the gradient with respect to the log-probs are compared.
"""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

trl_grpo = pytest.importorskip("trl.trainer.grpo_trainer")

from mmr1.grpo.algorithms import policy_loss  # noqa: E402

TOL = 1e-6


def make_inputs(seed: int, B: int = 6, T: int = 7, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([T, 1, 3, 0, 5, T][:B])  # includes an empty (fully masked) completion
    mask = (torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)).to(torch.int64)
    logp = (-torch.rand(B, T, generator=g, dtype=dtype) * 3).requires_grad_(True)
    # old / ref log-probs close enough that some ratios fall inside the clip band and some outside
    old = logp.detach() + 0.3 * torch.randn(B, T, generator=g, dtype=dtype)
    ref = logp.detach() + 0.3 * torch.randn(B, T, generator=g, dtype=dtype)
    adv = torch.randn(B, generator=g, dtype=dtype)
    entropy = torch.rand(B, T, generator=g, dtype=dtype) * 2
    return SimpleNamespace(logp=logp, old=old, ref=ref, adv=adv, mask=mask, entropy=entropy, B=B, T=T)


def trl_loss(
    x,
    *,
    loss_type,
    epsilon_low=0.2,
    epsilon_high=None,
    beta=0.0,
    importance_sampling_level="token",
    use_old=True,
    entropy_coef=0.0,
    delta=None,
    max_completion_length=None,
    num_items_in_batch=None,
    num_processes=1,
    grad_accum=1,
    steps_per_generation=1,
):
    """Run trl's _compute_loss on ``x`` and return (loss, d loss / d logp, metrics)."""
    logp = x.logp
    if logp.grad is not None:
        logp.grad = None
    trainer = SimpleNamespace(
        _get_per_token_logps_and_entropies=lambda *a, **k: (logp, x.entropy, None),
        aux_loss_enabled=False,
        top_entropy_quantile=1.0,
        off_policy_mask_threshold=None,
        importance_sampling_level=importance_sampling_level,
        beta=beta,
        loss_type=loss_type,
        epsilon_low=epsilon_low,
        epsilon_high=epsilon_low if epsilon_high is None else epsilon_high,
        use_vllm=False,
        vllm_importance_sampling_correction=False,
        model=SimpleNamespace(training=True),
        current_gradient_accumulation_steps=grad_accum,
        max_completion_length=x.T if max_completion_length is None else max_completion_length,
        _entropy_bonus_enabled=entropy_coef != 0.0,
        entropy_coef=entropy_coef,
        use_adaptive_entropy=False,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        args=SimpleNamespace(use_bias_correction_kl=False, delta=delta, steps_per_generation=steps_per_generation),
        accelerator=SimpleNamespace(
            num_processes=num_processes,
            sync_gradients=True,
            gather=lambda t: t,
            gather_for_metrics=lambda t: t,
            reduce=lambda t, reduction="sum": t,
        ),
    )
    inputs = {
        "prompt_ids": torch.zeros(x.B, 1, dtype=torch.long),
        "prompt_mask": torch.ones(x.B, 1, dtype=torch.long),
        "completion_ids": torch.zeros(x.B, x.T, dtype=torch.long),
        "completion_mask": x.mask,
        "advantages": x.adv,
        "num_items_in_batch": torch.tensor(
            float(x.mask.sum()) if num_items_in_batch is None else float(num_items_in_batch), dtype=x.logp.dtype
        ),
    }
    if use_old:
        inputs["old_per_token_logps"] = x.old
    if beta != 0.0:
        inputs["ref_per_token_logps"] = x.ref
    loss = trl_grpo.GRPOTrainer._compute_loss(trainer, None, inputs)
    (grad,) = torch.autograd.grad(loss, logp)
    metrics = {k: v[-1] for k, v in trainer._metrics["train"].items()}
    return loss.detach(), grad, metrics


def ours(x, *, use_old=True, **kw):
    logp = x.logp
    loss, metrics = policy_loss(
        logp,
        x.old if use_old else None,
        x.adv,
        x.mask,
        ref_logp=x.ref if kw.get("beta", 0.0) != 0.0 else None,
        entropy=x.entropy,
        **kw,
    )
    (grad,) = torch.autograd.grad(loss, logp)
    return loss.detach(), grad, metrics


def assert_same(a, b):
    (la, ga, ma), (lb, gb, mb) = a, b
    assert torch.allclose(la, lb, atol=TOL, rtol=0), (la.item(), lb.item())
    assert torch.allclose(ga, gb, atol=TOL, rtol=0), (ga - gb).abs().max().item()
    for key in ("clip_ratio/low_mean", "clip_ratio/high_mean", "clip_ratio/region_mean", "kl", "entropy"):
        if key in ma and key in mb:
            assert ma[key] == pytest.approx(mb[key], abs=TOL), key


LOSS_TYPES = ["grpo", "bnpo", "dr_grpo", "dapo"]


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
@pytest.mark.parametrize("use_old", [True, False], ids=["old_logp", "single_update"])
def test_plain(loss_type, use_old):
    x = make_inputs(0)
    assert_same(
        ours(x, loss_type=loss_type, use_old=use_old),
        trl_loss(x, loss_type=loss_type, use_old=use_old),
    )


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_beta_k3(loss_type):
    x = make_inputs(1)
    assert_same(
        ours(x, loss_type=loss_type, beta=0.04, kl_estimator="k3"),
        trl_loss(x, loss_type=loss_type, beta=0.04),
    )


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_epsilon_high(loss_type):
    x = make_inputs(2)
    assert_same(
        ours(x, loss_type=loss_type, epsilon_low=0.2, epsilon_high=0.28),
        trl_loss(x, loss_type=loss_type, epsilon_low=0.2, epsilon_high=0.28),
    )


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_sequence_level_gspo_with_kl(loss_type):
    x = make_inputs(3)
    kw = dict(loss_type=loss_type, epsilon_low=3e-4, epsilon_high=4e-4, beta=0.02)
    assert_same(
        ours(x, importance_sampling_level="sequence", **kw),
        trl_loss(x, importance_sampling_level="sequence", **kw),
    )


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_two_sided_delta(loss_type):
    x = make_inputs(4)
    assert_same(ours(x, loss_type=loss_type, delta=1.25), trl_loss(x, loss_type=loss_type, delta=1.25))


def test_dr_grpo_max_completion_length():
    x = make_inputs(5)
    assert_same(
        ours(x, loss_type="dr_grpo", max_completion_length=16),
        trl_loss(x, loss_type="dr_grpo", max_completion_length=16),
    )


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo"])
def test_gradient_accumulation_scaling_non_dapo(loss_type):
    # trl divides these losses by the accumulation steps; our micro-batch loss leaves that to the caller
    x = make_inputs(6)
    la, ga, ma = ours(x, loss_type=loss_type)
    lb, gb, mb = trl_loss(x, loss_type=loss_type, grad_accum=4)
    assert_same((la / 4, ga / 4, ma), (lb, gb, mb))


def test_dapo_normaliser_mapping_multi_process_accumulation():
    # trl: num_items_in_batch counts a whole generation batch on all processes; its normaliser is
    # num_items_in_batch / num_processes * grad_accum / steps_per_generation. That normaliser is ours.
    x = make_inputs(7)
    trl_items, procs, accum, spg = 123.0, 2, 2, 4
    assert_same(
        ours(x, loss_type="dapo", num_items_in_batch=trl_items / procs * accum / spg),
        trl_loss(
            x, loss_type="dapo", num_items_in_batch=trl_items, num_processes=procs,
            grad_accum=accum, steps_per_generation=spg,
        ),
    )


@pytest.mark.parametrize("loss_type", ["bnpo", "dapo"])
def test_entropy_bonus_where_normalisers_coincide(loss_type):
    # trl's bonus is a token mean of the entropy over the micro-batch; ours uses the policy term's
    # normaliser. They coincide for bnpo, and for dapo when num_items_in_batch is this batch's count.
    x = make_inputs(8)
    kw = dict(loss_type=loss_type, beta=0.04, epsilon_high=0.28, entropy_coef=0.01)
    assert_same(ours(x, **kw), trl_loss(x, **kw))
