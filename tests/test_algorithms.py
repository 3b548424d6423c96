"""mmr1.grpo.algorithms against hand computations on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch

from mmr1.grpo.algorithms import (
    KL_ALIASES,
    KL_ESTIMATORS,
    LOSS_TYPES,
    combine_rewards,
    entropy_from_logits,
    group_advantages,
    kl_penalty,
    masked_mean,
    policy_loss,
    resolve_kl_estimator,
    selective_log_softmax,
    temperature_at,
    truncation_mask,
)

SQRT_1_3 = math.sqrt(1 / 3)  # unbiased std of [1, 0, 0, 1] (squared deviations 4 * 0.25 = 1, / (4 - 1))


def close(a, b, tol=1e-6):
    return torch.allclose(torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64), atol=tol)


# ---------------------------------------------------------------------------------------------- KL names


def test_resolve_kl_estimator_canonical_and_aliases():
    for name in KL_ESTIMATORS:
        assert resolve_kl_estimator(name) == name
    assert resolve_kl_estimator("kimikl") == "k2"
    assert resolve_kl_estimator("fullkimi") == "k2"
    assert resolve_kl_estimator("mse") == "k2"
    assert resolve_kl_estimator("kl") == "k1"
    assert resolve_kl_estimator(" K3 ") == "k3"
    assert set(KL_ALIASES.values()) <= set(KL_ESTIMATORS)


def test_resolve_kl_estimator_unknown_lists_valid_and_suggests():
    with pytest.raises(ValueError) as e:
        resolve_kl_estimator("kimi")
    msg = str(e.value)
    assert "'kimi'" in msg and "Did you mean 'kimikl'?" in msg
    for name in KL_ESTIMATORS:
        assert name in msg


# ---------------------------------------------------------------------------------------------- rewards


def test_combine_rewards_weights_and_nan():
    nan = float("nan")
    rewards = torch.tensor([[1.0, nan], [nan, nan], [0.5, 2.0]])
    # row 0: 1*1 (NaN skipped) = 1; row 1: all NaN -> 0; row 2: 1*0.5 + 0.5*2 = 1.5
    out = combine_rewards(rewards, torch.tensor([1.0, 0.5]))
    assert close(out, [1.0, 0.0, 1.5])
    # default weights are ones: row 2 = 0.5 + 2 = 2.5
    assert close(combine_rewards(rewards), [1.0, 0.0, 2.5])


def test_combine_rewards_shape_errors():
    with pytest.raises(ValueError, match=r"\(3,\).*\(2, 2\)"):
        combine_rewards(torch.zeros(2, 2), torch.ones(3))
    with pytest.raises(ValueError, match=r"\(4,\)"):
        combine_rewards(torch.zeros(4))


# ---------------------------------------------------------------------------------------------- advantages


def test_group_advantages_group_scaling():
    rewards = torch.tensor([1.0, 0, 0, 1, 1, 1, 1, 1])
    adv, stats = group_advantages(rewards, 4)
    # group 1: mean 0.5, std sqrt(1/3) = 0.57735 -> +-0.5 / 0.57745 = +-0.86587
    # group 2: all 1, std 0 -> (1 - 1) / 1e-4 = 0
    a = 0.5 / (SQRT_1_3 + 1e-4)
    assert close(adv, [a, -a, -a, a, 0, 0, 0, 0])
    assert abs(a - 0.86587) < 1e-5
    assert stats == pytest.approx({"reward_std_mean": SQRT_1_3 / 2, "frac_zero_std_groups": 0.5})
    assert all(type(v) is float for v in stats.values())


def test_group_advantages_batch_and_none_scaling():
    rewards = torch.tensor([1.0, 0, 0, 1, 1, 1, 1, 1])
    # batch: mean 0.75; squared deviations 6 * 0.0625 + 2 * 0.5625 = 1.5; / 7 -> std 0.46291
    batch_std = math.sqrt(1.5 / 7)
    adv, _ = group_advantages(rewards, 4, scale_rewards="batch")
    b = 0.5 / (batch_std + 1e-4)
    assert abs(b - 1.07989) < 1e-5
    assert close(adv, [b, -b, -b, b, 0, 0, 0, 0])
    adv, _ = group_advantages(rewards, 4, scale_rewards="none")
    assert close(adv, [0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0])


def test_group_advantages_no_mean_for_same_reward():
    rewards = torch.tensor([1.0, 0, 0, 1, 1, 1, 1, 1, -1, -1, -1, -1])
    adv, stats = group_advantages(rewards, 4, no_mean_for_same_reward=True)
    a = 0.5 / (SQRT_1_3 + 1e-4)
    # group 1 has spread: as usual (0.866 < 1, not clamped)
    # group 2 all 1: mean not subtracted -> 1 / (0 + 1e-4) = 10000 -> clamped to 1
    # group 3 all -1: -1 / 1e-4 -> clamped to -1
    assert close(adv, [a, -a, -a, a, 1, 1, 1, 1, -1, -1, -1, -1])
    assert stats["frac_zero_std_groups"] == pytest.approx(2 / 3)
    # the clamp also applies to groups with spread: "none" scaling of [0, 0, 0, 3]
    # mean 0.75 -> [-0.75, -0.75, -0.75, 2.25] -> clamp -> [-0.75, -0.75, -0.75, 1]
    adv, _ = group_advantages(torch.tensor([0.0, 0, 0, 3]), 4, scale_rewards="none", no_mean_for_same_reward=True)
    assert close(adv, [-0.75, -0.75, -0.75, 1.0])
    # without the option the same group is not clamped
    adv, _ = group_advantages(torch.tensor([0.0, 0, 0, 3]), 4, scale_rewards="none")
    assert close(adv, [-0.75, -0.75, -0.75, 2.25])


def test_group_advantages_nan_rewards_are_left_out():
    # valid [1, 0, 1]: mean 2/3; squared deviations 1/9 + 4/9 + 1/9 = 2/3; / 2 -> std sqrt(1/3)
    adv, _ = group_advantages(torch.tensor([1.0, float("nan"), 0.0, 1.0]), 4)
    s = SQRT_1_3 + 1e-4
    assert close(adv, [(1 / 3) / s, 0.0, (-2 / 3) / s, (1 / 3) / s])


def test_group_advantages_errors():
    with pytest.raises(ValueError, match=r"10 = 2 \* 4 \+ 2"):
        group_advantages(torch.zeros(10), 4)
    with pytest.raises(ValueError) as e:
        group_advantages(torch.zeros(8), 4, scale_rewards="groups")
    assert "Did you mean 'group'?" in str(e.value) and "batch" in str(e.value) and "none" in str(e.value)
    with pytest.raises(ValueError, match=r"\(2, 4\)"):
        group_advantages(torch.zeros(2, 4), 4)
    with pytest.raises(ValueError, match="num_generations"):
        group_advantages(torch.zeros(4), 1)


# ---------------------------------------------------------------------------------------------- KL


def test_kl_estimators_at_known_point():
    logp = torch.tensor([math.log(0.5)])
    ref = torch.tensor([math.log(0.25)])
    # d = ref - logp = log(0.5) = -0.693147
    assert close(kl_penalty(logp, ref, "k1"), [0.693147])  # logp - ref
    assert close(kl_penalty(logp, ref, "k2"), [0.5 * 0.693147**2])  # 0.240227
    assert close(kl_penalty(logp, ref, "k3"), [0.5 + 0.693147 - 1])  # exp(d) - d - 1 = 0.193147
    assert close(kl_penalty(logp, ref, "low_var_kl"), [0.193147])
    assert close(kl_penalty(logp, ref, "kimikl"), kl_penalty(logp, ref, "k2"))
    assert close(kl_penalty(logp, ref, "kl"), kl_penalty(logp, ref, "k1"))


def test_low_var_kl_clamps():
    logp = torch.tensor([0.0, -30.0])
    ref = torch.tensor([-30.0, 0.0])
    # k3 at d = -30: exp(-30) + 30 - 1 = 29; at d = +30: exp(30) - 31
    assert close(kl_penalty(logp, ref, "k3")[0], 29.0)
    # low_var_kl: d clamped to [-20, 20] (19 and exp(20) - 21) and then to [-10, 10]
    assert close(kl_penalty(logp, ref, "low_var_kl"), [10.0, 10.0])


def test_kl_errors():
    with pytest.raises(ValueError, match=r"\(2,\).*\(3,\)"):
        kl_penalty(torch.zeros(2), torch.zeros(3), "k3")
    with pytest.raises(ValueError, match="k3"):
        kl_penalty(torch.zeros(2), torch.zeros(2), "k4")


# ---------------------------------------------------------------------------------------------- entropy, log-probs


def test_entropy_matches_direct_formula_and_is_chunked():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 11, dtype=torch.float64, requires_grad=True)
    direct = -(torch.softmax(logits, -1) * torch.log_softmax(logits, -1)).sum(-1)
    got = entropy_from_logits(logits, chunk_size=4)  # 15 rows in chunks of 4
    assert got.shape == (3, 5)
    assert close(got, direct, 1e-10)
    g1 = torch.autograd.grad(got.sum(), logits)[0]
    g2 = torch.autograd.grad(direct.sum(), logits)[0]
    assert close(g1, g2, 1e-10)


def test_entropy_edge_cases():
    # uniform over 2 of 3 entries (the third masked with -inf) -> log 2; huge logits stay finite
    logits = torch.tensor([[0.0, 0.0, float("-inf")], [1000.0, 1000.0, -1000.0]])
    assert close(entropy_from_logits(logits), [math.log(2), math.log(2)])
    bf = torch.randn(4, 50).to(torch.bfloat16)
    out = entropy_from_logits(bf)
    assert out.dtype == torch.bfloat16
    assert close(out.float(), entropy_from_logits(bf.float()), 1e-2)


def test_selective_log_softmax_matches_log_softmax_gather():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 9, requires_grad=True)
    ids = torch.randint(0, 9, (2, 4))
    ref = torch.log_softmax(logits, -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    got = selective_log_softmax(logits, ids)
    assert got.shape == (2, 4) and got.dtype == torch.float32
    assert close(got, ref)
    assert close(torch.autograd.grad(got.sum(), logits)[0], torch.autograd.grad(ref.sum(), logits)[0])
    # any chunking and a 1-D row give the same numbers
    assert close(selective_log_softmax(logits, ids, chunk_size=5), ref)
    assert close(selective_log_softmax(logits[0, 0], ids[0, 0]), ref[0, 0])
    # bfloat16 logits: computed in float32
    out = selective_log_softmax(logits.detach().to(torch.bfloat16), ids)
    assert out.dtype == torch.float32
    ref_bf = torch.log_softmax(logits.detach().to(torch.bfloat16).float(), -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    assert close(out, ref_bf, 1e-5)


def test_custom_backwards_gradcheck_and_low_precision():
    torch.manual_seed(0)
    x = torch.randn(3, 4, 6, dtype=torch.float64, requires_grad=True)
    ids = torch.randint(0, 6, (3, 4))
    assert torch.autograd.gradcheck(lambda t: entropy_from_logits(t, chunk_size=5), (x,))
    assert torch.autograd.gradcheck(lambda t: selective_log_softmax(t, ids, chunk_size=5), (x,))
    # bfloat16 logits: gradients agree with the float32 computation on the same (rounded) values
    xb = x.detach().to(torch.bfloat16).requires_grad_(True)
    xf = xb.detach().float().requires_grad_(True)
    w = torch.randn(3, 4)
    for fn in (entropy_from_logits, lambda t: selective_log_softmax(t, ids)):
        (fn(xb).float() * w).sum().backward()
        (fn(xf) * w).sum().backward()
        assert xb.grad.dtype == torch.bfloat16
        assert close(xb.grad.float(), xf.grad, 2e-2)
        xb.grad = xf.grad = None
    # -inf logits: finite entropy gradient, zero on the excluded entries
    m = torch.tensor([[0.5, -1.0, float("-inf")]], requires_grad=True)
    entropy_from_logits(m).sum().backward()
    assert torch.isfinite(m.grad).all() and m.grad[0, 2] == 0


def test_log_prob_and_entropy_keep_no_full_size_intermediates():
    # the only full-size tensor kept for backward is the logits themselves (plain autograd of
    # log_softmax / softmax * log_softmax would keep several more copies)
    logits = torch.randn(4, 8, 1000, requires_grad=True)
    ids = torch.randint(0, 1000, (4, 8))
    for fn in (lambda t: entropy_from_logits(t, chunk_size=4), lambda t: selective_log_softmax(t, ids, chunk_size=4)):
        saved = {}  # storage -> bytes (views of the logits share its storage)

        def pack(t):
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            fn(logits).sum()
        big = [n for n in saved.values() if n >= 1000 * 4]
        assert big == [logits.untyped_storage().nbytes()], saved


def test_selective_log_softmax_shape_error():
    with pytest.raises(ValueError, match=r"\(2, 3, 5\).*\(2, 4\)"):
        selective_log_softmax(torch.zeros(2, 3, 5), torch.zeros(2, 4, dtype=torch.long))


def test_masked_mean_and_truncation_mask():
    x = torch.tensor([[1.0, 2, 3], [4, 5, 6]])
    mask = torch.tensor([[1, 1, 0], [0, 0, 0]])
    assert close(masked_mean(x, mask), 1.5)  # (1 + 2) / 2
    assert close(masked_mean(x, mask, dim=-1), [1.5, 0.0])  # an empty row gives 0, not NaN
    assert close(masked_mean(x, torch.tensor([1, 0, 1]), dim=0), [2.5, 0.0, 4.5])  # broadcast mask
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 2\)"):
        masked_mean(x, torch.ones(2, 2))

    cm = torch.tensor([[1, 1, 1], [1, 1, 0]])
    out = truncation_mask(cm, torch.tensor([True, False]))
    assert out.tolist() == [[0, 0, 0], [1, 1, 0]] and out.dtype == cm.dtype
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3,\)"):
        truncation_mask(cm, torch.tensor([True, False, True]))


# ---------------------------------------------------------------------------------------------- policy loss

# The 2x3 example: advantages [1, -2], mask [[1, 1, 1], [1, 0, 0]], old_logp None (ratio 1), so the
# per-token loss is -A: row 0 -> -1, -1, -1 (sum -3), row 1 -> 2 (sum 2); 4 tokens in all.
MASK = torch.tensor([[1.0, 1, 1], [1, 0, 0]])
ADV = torch.tensor([1.0, -2.0])


def _logp():
    return torch.full((2, 3), math.log(0.5), requires_grad=True)


@pytest.mark.parametrize(
    "loss_type, kwargs, expected, grad",
    [
        # mean of row means: (-1 + 2) / 2; d/dlogp: -A / len(row) / B
        ("grpo", {}, 0.5, [[-1 / 6, -1 / 6, -1 / 6], [1.0, 0, 0]]),
        # (-3 + 2) / 4 tokens; d/dlogp: -A / 4
        ("bnpo", {}, -0.25, [[-0.25, -0.25, -0.25], [0.5, 0, 0]]),
        # (-3 + 2) / (B * T) = -1 / 6
        ("dr_grpo", {}, -1 / 6, [[-1 / 6, -1 / 6, -1 / 6], [1 / 3, 0, 0]]),
        # (-3 + 2) / (B * max_completion_length) = -1 / 10
        ("dr_grpo", {"max_completion_length": 5}, -0.1, [[-0.1, -0.1, -0.1], [0.2, 0, 0]]),
        # default: tokens in this batch: -1 / 4
        ("dapo", {}, -0.25, [[-0.25, -0.25, -0.25], [0.5, 0, 0]]),
        # tokens of the whole optimizer step: -1 / 8
        ("dapo", {"num_items_in_batch": 8}, -0.125, [[-0.125, -0.125, -0.125], [0.25, 0, 0]]),
    ],
)
def test_loss_normalisation(loss_type, kwargs, expected, grad):
    logp = _logp()
    loss, metrics = policy_loss(logp, None, ADV, MASK, loss_type=loss_type, **kwargs)
    assert close(loss, expected)
    loss.backward()
    assert close(logp.grad, grad)
    assert metrics["ratio_mean"] == pytest.approx(1.0)
    assert metrics["clip_ratio/region_mean"] == 0.0
    assert all(type(v) is float for v in metrics.values())


def test_loss_with_kl_term():
    logp = _logp()
    ref = torch.full((2, 3), math.log(0.25))
    # k3 per token at this point = 0.193147; bnpo: -0.25 + 0.1 * 0.193147
    loss, metrics = policy_loss(logp, None, ADV, MASK, loss_type="bnpo", ref_logp=ref, beta=0.1)
    assert close(loss, -0.25 + 0.1 * 0.193147)
    assert metrics["kl"] == pytest.approx(0.193147, abs=1e-6)
    # k2 ("kimikl") instead: 0.5 * log(2)^2 = 0.240227
    loss, metrics = policy_loss(logp, None, ADV, MASK, loss_type="bnpo", ref_logp=ref, beta=0.1, kl_estimator="kimikl")
    assert close(loss, -0.25 + 0.1 * 0.240227)
    # beta 0: the KL is reported but not added
    loss, metrics = policy_loss(logp, None, ADV, MASK, loss_type="bnpo", ref_logp=ref, beta=0.0)
    assert close(loss, -0.25) and "kl" in metrics
    loss, metrics = policy_loss(logp, None, ADV, MASK, loss_type="bnpo")
    assert "kl" not in metrics and "entropy" not in metrics


def test_loss_with_entropy_bonus_uses_policy_normaliser():
    ent = torch.tensor([[2.0, 2.0, 2.0], [1.0, 9.0, 9.0]])  # masked positions must not count
    # per token -A - 0.01 * H: row 0 -> -1.02 each (sum -3.06), row 1 -> 2 - 0.01 = 1.99
    loss, metrics = policy_loss(_logp(), None, ADV, MASK, loss_type="grpo", entropy=ent, entropy_coef=0.01)
    assert close(loss, (-1.02 + 1.99) / 2)  # 0.485
    loss, metrics = policy_loss(_logp(), None, ADV, MASK, loss_type="bnpo", entropy=ent, entropy_coef=0.01)
    assert close(loss, (-3.06 + 1.99) / 4)  # -0.2675
    assert metrics["entropy"] == pytest.approx(7 / 4)  # (2 + 2 + 2 + 1) / 4


def test_clipping_zeroes_gradient_outside_the_band():
    # ratios: row 0 (A = +1) [1.5, 0.5, 1.0]; row 1 (A = -1) [1.5, 0.5, 1.0]; eps 0.2, bnpo over 6 tokens
    old = torch.zeros(2, 3)
    logp = torch.log(torch.tensor([[1.5, 0.5, 1.0], [1.5, 0.5, 1.0]])).requires_grad_(True)
    adv = torch.tensor([1.0, -1.0])
    mask = torch.ones(2, 3)
    loss, metrics = policy_loss(logp, old, adv, mask, loss_type="bnpo", epsilon_low=0.2)
    # per token -min(r A, clip(r) A): row 0: -min(1.5, 1.2) = -1.2 | -min(0.5, 0.8) = -0.5 | -1
    #                                row 1: -min(-1.5, -1.2) = 1.5 | -min(-0.5, -0.8) = 0.8 | 1
    assert close(loss, (-1.2 - 0.5 - 1 + 1.5 + 0.8 + 1) / 6)
    loss.backward()
    # clipped tokens (A > 0, r > 1.2) and (A < 0, r < 0.8) get no gradient; others -A * r / 6
    assert close(logp.grad, [[0.0, -0.5 / 6, -1 / 6], [1.5 / 6, 0.0, 1 / 6]])
    assert metrics["clip_ratio/high_mean"] == pytest.approx(1 / 6)
    assert metrics["clip_ratio/low_mean"] == pytest.approx(1 / 6)
    assert metrics["clip_ratio/region_mean"] == pytest.approx(2 / 6)
    assert metrics["ratio_mean"] == pytest.approx(6 / 6)

    # epsilon_high 0.6: 1.5 is inside [0.8, 1.6] for A > 0, so it now gets a gradient
    logp.grad = None
    loss, metrics = policy_loss(logp, old, adv, mask, loss_type="bnpo", epsilon_low=0.2, epsilon_high=0.6)
    loss.backward()
    assert close(logp.grad[0, 0], -1.5 / 6)
    assert metrics["clip_ratio/high_mean"] == 0.0

    # delta 1.3 caps the unclipped ratio: row 1 token 0 (A < 0, r = 1.5) -> -min(-1.3, -1.2) = 1.3, no gradient
    logp.grad = None
    loss, _ = policy_loss(logp, old, adv, mask, loss_type="bnpo", epsilon_low=0.2, delta=1.3)
    assert close(loss, (-1.2 - 0.5 - 1 + 1.3 + 0.8 + 1) / 6)
    loss.backward()
    assert close(logp.grad[1, 0], 0.0)


def test_gspo_sequence_ratio():
    old = torch.zeros(2, 3)
    logp = torch.tensor([[0.1, 0.2, 0.3], [-0.4, 5.0, 5.0]], requires_grad=True)
    mask = torch.tensor([[1.0, 1, 0], [1, 0, 0]])
    adv = torch.tensor([1.0, -1.0])
    loss, metrics = policy_loss(logp, old, adv, mask, loss_type="grpo", importance_sampling_level="sequence")
    r0 = math.exp((0.1 + 0.2) / 2)  # 1.161834, inside [0.8, 1.2]
    r1 = math.exp(-0.4)  # 0.670320 < 0.8 with A < 0: clipped -> per-token loss -(-0.8) = 0.8
    assert close(loss, (-r0 + 0.8) / 2)  # -0.180917
    loss.backward()
    # d/dlogp_t of -r0 = -r0 * (1/2 per token of the mean) * (1/2 from the mean over sequences)
    assert close(logp.grad, [[-r0 / 4, -r0 / 4, 0.0], [0.0, 0.0, 0.0]])
    assert metrics["ratio_mean"] == pytest.approx((r0 + r1) / 2)
    assert metrics["clip_ratio/low_mean"] == pytest.approx(0.5)


def test_token_level_advantages_are_accepted():
    loss, _ = policy_loss(_logp(), None, ADV.unsqueeze(1).expand(2, 3), MASK, loss_type="bnpo")
    assert close(loss, -0.25)


def test_dapo_gradient_accumulation_equals_one_big_batch():
    torch.manual_seed(0)
    B, T = 6, 5
    leaf = torch.randn(B, T, requires_grad=True)
    old = leaf.detach() + 0.1 * torch.randn(B, T)
    ref = leaf.detach() + 0.1 * torch.randn(B, T)
    adv = torch.randn(B)
    mask = torch.tensor([[1.0] * k + [0.0] * (T - k) for k in (5, 1, 3, 0, 4, 2)])
    ent_leaf = torch.rand(B, T, requires_grad=True)
    kw = dict(loss_type="dapo", epsilon_low=0.2, epsilon_high=0.28, beta=0.04, entropy_coef=0.01)

    full, _ = policy_loss(leaf, old, adv, mask, ref_logp=ref, entropy=ent_leaf, **kw)
    g_full = torch.autograd.grad(full, [leaf, ent_leaf])

    total = mask.sum()  # tokens of the whole optimizer step (15), the same for every micro-batch
    acc = 0
    for sl in (slice(0, 3), slice(3, 6)):  # two micro-batches with different token counts (9 and 6)
        part, _ = policy_loss(
            leaf[sl], old[sl], adv[sl], mask[sl], ref_logp=ref[sl], entropy=ent_leaf[sl],
            num_items_in_batch=total, **kw,
        )
        acc = acc + part
    g_acc = torch.autograd.grad(acc, [leaf, ent_leaf])
    assert close(acc, full)
    assert close(g_acc[0], g_full[0]) and close(g_acc[1], g_full[1])

    # bnpo, by contrast, averages each micro-batch's own token mean: not the big-batch gradient here
    big, _ = policy_loss(leaf, old, adv, mask, loss_type="bnpo")
    halves = sum(policy_loss(leaf[s], old[s], adv[s], mask[s], loss_type="bnpo")[0] for s in (slice(0, 3), slice(3, 6)))
    assert not close(halves / 2, big)


def test_half_precision_inputs_are_computed_in_float32():
    # 300 tokens: bfloat16 cannot even count them exactly (it rounds 300 * 1.0 sums past 256)
    torch.manual_seed(0)
    logp = (-torch.rand(3, 100)).to(torch.bfloat16).requires_grad_(True)
    old = (logp.detach().float() + 0.1 * torch.randn(3, 100)).to(torch.bfloat16)
    adv, mask = torch.tensor([1.0, -0.5, 2.0]), torch.ones(3, 100)
    loss, _ = policy_loss(logp, old, adv, mask, loss_type="bnpo")
    ref, _ = policy_loss(logp.detach().float(), old.float(), adv, mask, loss_type="bnpo")
    assert loss.dtype == torch.float32 and close(loss, ref)
    loss.backward()
    assert logp.grad.dtype == torch.bfloat16


def test_policy_loss_errors():
    logp = torch.zeros(2, 3)
    with pytest.raises(ValueError) as e:
        policy_loss(logp, None, ADV, MASK, loss_type="grpoo")
    assert "Did you mean 'grpo'?" in str(e.value)
    for name in LOSS_TYPES:
        assert name in str(e.value)
    with pytest.raises(ValueError) as e:
        policy_loss(logp, None, ADV, MASK, importance_sampling_level="seq")
    assert "token" in str(e.value) and "sequence" in str(e.value)
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 4\)"):
        policy_loss(logp, None, ADV, torch.ones(2, 4))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 3\)"):
        policy_loss(logp, torch.zeros(3, 3), ADV, MASK)
    with pytest.raises(ValueError, match=r"\(3,\).*\(2, 3\)"):
        policy_loss(logp, None, torch.zeros(3), MASK)
    with pytest.raises(ValueError, match="ref_logp"):
        policy_loss(logp, None, ADV, MASK, beta=0.1)
    with pytest.raises(ValueError, match="entropy"):
        policy_loss(logp, None, ADV, MASK, entropy_coef=0.1)
    with pytest.raises(ValueError, match="kimikl"):
        policy_loss(logp, None, ADV, MASK, ref_logp=logp, beta=0.1, kl_estimator="kimi")


# ---------------------------------------------------------------------------------------------- temperature


def test_temperature_schedule():
    assert temperature_at(7, 10) == 1.0
    assert temperature_at(7, 10, "constant", start=0.7, end=0.1) == 0.7
    # MMR1's linear recipe 0.1 -> 1.0 over 10 steps: 0.1 + 0.9 * step / 10
    assert temperature_at(0, 10, "linear", 0.1, 1.0) == pytest.approx(0.1)
    assert temperature_at(5, 10, "linear", 0.1, 1.0) == pytest.approx(0.55)
    assert temperature_at(10, 10, "linear", 0.1, 1.0) == pytest.approx(1.0)
    assert temperature_at(25, 10, "linear", 0.1, 1.0) == pytest.approx(1.0)  # held at the end
    with pytest.raises(ValueError) as e:
        temperature_at(0, 10, "cosine")
    assert "constant" in str(e.value) and "linear" in str(e.value)
    with pytest.raises(ValueError, match="positive"):
        temperature_at(0, 10, "linear", 0.0, 1.0)
    with pytest.raises(ValueError, match="total_steps"):
        temperature_at(0, 0, "linear", 0.1, 1.0)
