"""Pure tensor functions of GRPO: rewards -> advantages, KL estimators, policy losses.

Nothing here holds trainer state or talks to processes; the trainer passes in everything a function
needs (like verl's ``core_algos``). Names and semantics follow trl 1.16's ``GRPOTrainer`` where trl
has the feature, and MMR1 for its extras (KL estimator names, ``no_mean_for_same_reward``, entropy
regularisation, temperature schedule). Every function is unit-tested against a hand computation
(``tests/test_algorithms.py``) and the losses against trl's own ``_compute_loss``
(``tests/test_loss_vs_trl.py``).

Each choice of the computation is an entry of a registry keyed by the name the config uses:
``ADVANTAGE_ESTIMATORS``, ``SCALE_REWARDS``, ``KL_ESTIMATORS``, ``IMPORTANCE_SAMPLING_LEVELS``,
``POLICY_LOSSES``, ``LOSS_TYPES`` and ``TEMPERATURE_SCHEDULES``. An entry is a pure function with
keyword-only arguments, added with ``@REGISTRY.register("name")``; ``mmr1.config`` takes its valid
values from these registries.

Conventions: ``B`` completions per micro-batch, ``T`` completion tokens (right-padded), a ``mask``
of shape ``(B, T)`` with 1 where a token counts. Metrics are returned as plain Python floats.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from mmr1.registry import RegistryError, did_you_mean

__all__ = [
    "AlgorithmRegistry",
    "ADVANTAGE_ESTIMATORS",
    "SCALE_REWARDS",
    "KL_ESTIMATORS",
    "KL_ALIASES",
    "IMPORTANCE_SAMPLING_LEVELS",
    "POLICY_LOSSES",
    "LOSS_TYPES",
    "TEMPERATURE_SCHEDULES",
    "resolve_kl_estimator",
    "combine_rewards",
    "group_advantages",
    "kl_penalty",
    "entropy_from_logits",
    "selective_log_softmax",
    "masked_mean",
    "truncation_mask",
    "policy_loss",
    "accumulated_loss",
    "temperature_at",
]


# --------------------------------------------------------------------------------------------------
# registries


class AlgorithmRegistry:
    """Name -> pure function for one choice of the GRPO computation, in registration order.

    ``@registry.register("name", aliases=(...), **meta)`` adds a function; a name or alias taken
    already raises :class:`~mmr1.registry.RegistryError`. ``registry[name]`` is the function (an
    alias gives its target's), ``registry.meta_of(name)`` the keyword metadata, ``registry.choices``
    a live sequence of every accepted name (canonical names, then aliases) for config checks.
    Iterating yields the canonical names.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self.entries: dict[str, Callable] = {}
        self.meta: dict[str, dict] = {}
        self.aliases: dict[str, str] = {}
        self.choices = _Choices(self)

    def register(self, name: str, *, aliases: tuple[str, ...] = (), **meta) -> Callable:
        """A decorator adding the decorated function under ``name`` (and ``aliases``), with ``meta``."""

        def add(fn: Callable) -> Callable:
            for key in (name, *aliases):
                if key in self:
                    raise RegistryError(f"{self.kind} {key!r} is registered twice; give the new entry another name")
            self.entries[name] = fn
            self.meta[name] = meta
            self.aliases.update(dict.fromkeys(aliases, name))
            return fn

        return add

    def canonical(self, name: str) -> str:
        """``name`` itself or the entry it is an alias of; ValueError with a did-you-mean hint otherwise."""
        if name in self:
            return self.aliases.get(name, name)
        raise self.unknown(name)

    def unknown(self, name) -> ValueError:
        """The error for a name not registered: the valid names, aliases, and the closest match."""
        hint = ""
        if isinstance(name, str):
            hint = did_you_mean(name, self.choices) or did_you_mean(name.strip().lower(), self.choices)
        valid = ", ".join(self.entries)
        if self.aliases:
            valid += "; aliases: " + ", ".join(f"{a} (= {c})" for a, c in sorted(self.aliases.items()))
        return ValueError(f"unknown {self.kind} {name!r}.{hint} Valid: {valid}")

    def meta_of(self, name: str) -> dict:
        """The keyword metadata ``name`` (or the entry it is an alias of) was registered with."""
        return self.meta[self.canonical(name)]

    def __getitem__(self, name: str) -> Callable:
        return self.entries[self.canonical(name)]

    def __contains__(self, name) -> bool:
        return isinstance(name, str) and (name in self.entries or name in self.aliases)

    def __iter__(self):
        return iter(self.entries)


class _Choices(Sequence):
    """Every name a registry accepts, as it stands now (entries added later included)."""

    def __init__(self, registry: AlgorithmRegistry):
        self._registry = registry

    def _names(self) -> tuple[str, ...]:
        return (*self._registry.entries, *self._registry.aliases)

    def __getitem__(self, index):
        return self._names()[index]

    def __len__(self) -> int:
        return len(self._names())


ADVANTAGE_ESTIMATORS = AlgorithmRegistry("advantage estimator")
SCALE_REWARDS = AlgorithmRegistry("scale_rewards")
KL_ESTIMATORS = AlgorithmRegistry("KL estimator")
IMPORTANCE_SAMPLING_LEVELS = AlgorithmRegistry("importance_sampling_level")
POLICY_LOSSES = AlgorithmRegistry("policy loss")
LOSS_TYPES = AlgorithmRegistry("loss_type")
TEMPERATURE_SCHEDULES = AlgorithmRegistry("temperature schedule")
# MMR1's `kl_approximator` names, registered as aliases of the k1 and k2 entries
KL_ALIASES = KL_ESTIMATORS.aliases


# --------------------------------------------------------------------------------------------------
# helpers


def _same_shape(name_a: str, a: Tensor, name_b: str, b: Tensor) -> None:
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(
            f"shape mismatch: {name_a} has shape {tuple(a.shape)} but {name_b} has shape {tuple(b.shape)}"
        )


def _float(x: Tensor) -> float:
    return float(x.detach().item())


# --------------------------------------------------------------------------------------------------
# rewards and advantages


def combine_rewards(rewards: Tensor, weights: Tensor | None = None) -> Tensor:
    """Weighted sum of several reward functions' outputs per completion.

    ``rewards`` is ``(N, R)``: one column per reward function, NaN where that function returned
    ``None`` ("no opinion"). ``weights`` is ``(R,)`` (default all ones). Returns ``(N,)`` with
    ``sum_r weights[r] * rewards[n, r]`` over the non-NaN entries (trl's ``nansum``). A row whose
    entries are all NaN (no reward function had an opinion) gives 0. (trl 1.16 instead leaves such
    a completion out of its group's baseline with advantage 0; a caller wanting that sets those
    rows to NaN before ``group_advantages``, which ignores NaN rewards.)
    """
    if rewards.dim() != 2:
        raise ValueError(
            f"rewards must have shape (num_completions, num_reward_functions), got shape {tuple(rewards.shape)}"
        )
    if weights is None:
        weights = torch.ones(rewards.shape[1], dtype=rewards.dtype, device=rewards.device)
    else:
        weights = torch.as_tensor(weights, dtype=rewards.dtype, device=rewards.device)
        if weights.dim() != 1 or weights.shape[0] != rewards.shape[1]:
            raise ValueError(
                f"shape mismatch: reward weights have shape {tuple(weights.shape)} but rewards have shape "
                f"{tuple(rewards.shape)}; give one weight per reward function ({rewards.shape[1]})"
            )
    return (rewards * weights.unsqueeze(0)).nansum(dim=1)


def _nanstd(x: Tensor, dim: int | None = None) -> Tensor:
    """Unbiased (Bessel-corrected) std ignoring NaN; NaN where fewer than two values remain."""
    if dim is None:
        x = x.reshape(-1)
        dim = 0
    valid = ~torch.isnan(x)
    count = valid.sum(dim=dim, keepdim=True).to(x.dtype)
    mean = torch.nanmean(x, dim=dim, keepdim=True)
    sq = torch.where(valid, (x - mean) ** 2, torch.zeros_like(x)).sum(dim=dim, keepdim=True)
    var = sq / (count - 1)
    var = torch.where(count > 1, var, torch.full_like(var, float("nan")))
    return var.sqrt().squeeze(dim)




def group_advantages(
    rewards: Tensor,
    num_generations: int,
    scale_rewards: str = "group",
    no_mean_for_same_reward: bool = False,
    eps: float = 1e-4,
    *,
    estimator: str = "grpo",
) -> tuple[Tensor, dict]:
    """Advantages of ``(N,)`` rewards in groups of ``num_generations``, by the named estimator.

    Checks the shapes, then calls ``ADVANTAGE_ESTIMATORS[estimator]`` with every option as a
    keyword. Returns ``(advantages, stats)``; ``stats`` holds plain floats.
    """
    estimate = ADVANTAGE_ESTIMATORS[estimator]
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D (one value per completion), got shape {tuple(rewards.shape)}")
    if not isinstance(num_generations, int) or num_generations < 2:
        raise ValueError(f"num_generations must be an integer >= 2 (a group needs a baseline), got {num_generations!r}")
    n = rewards.shape[0]
    if n == 0 or n % num_generations != 0:
        raise ValueError(
            f"{n} rewards cannot be split into groups of num_generations={num_generations}: "
            f"{n} = {n // num_generations} * {num_generations} + {n % num_generations}; "
            f"the number of completions must be a positive multiple of num_generations"
        )
    rewards = rewards.float() if not rewards.is_floating_point() else rewards
    return estimate(rewards=rewards, num_generations=num_generations, scale_rewards=scale_rewards,
                    no_mean_for_same_reward=no_mean_for_same_reward, eps=eps)


@ADVANTAGE_ESTIMATORS.register("grpo")
def grpo_advantages(
    *, rewards: Tensor, num_generations: int, scale_rewards: str, no_mean_for_same_reward: bool, eps: float
) -> tuple[Tensor, dict]:
    """Group-relative advantages (GRPO), one per completion: ``(r - mean_g) / scale``.

    ``rewards`` is ``(N,)`` ordered so that each consecutive block of ``num_generations`` is one
    prompt's group; ``mean_g`` / ``std_g`` are the group's mean and unbiased std (``torch.std``'s
    default, as trl and MMR1 use). The scale is ``SCALE_REWARDS[scale_rewards]``.

    ``no_mean_for_same_reward`` (MMR1): the group mean is subtracted only in groups whose std is
    > 0, then every advantage is clamped to ``[-1, 1]``. A group of identical rewards therefore keeps
    its raw reward divided by the scale (``r / eps`` with group scaling), which the clamp turns into
    ``sign(r)``: an all-correct group is pushed up, an all-wrong (negative) group down.

    NaN rewards (a caller may mark completions no reward function could score) are left out of the
    group means and stds, as trl 1.16 does, and get advantage 0.

    ``stats``: ``reward_std_mean`` (mean of the per-group stds) and ``frac_zero_std_groups``
    (fraction of groups whose rewards are all equal).
    """
    scale = SCALE_REWARDS[scale_rewards]
    grouped = rewards.reshape(-1, num_generations)
    mean_g = torch.nanmean(grouped, dim=1)  # (num_groups,)
    std_g = _nanstd(grouped, dim=1)  # (num_groups,)
    zero_std = torch.isclose(std_g, torch.zeros_like(std_g))

    if no_mean_for_same_reward:
        # MMR1: `mean * (std != 0)`; a NaN std (fewer than two scorable rewards) also counts as "no spread"
        has_spread = (std_g > 0) & ~torch.isnan(std_g)
        centre = torch.where(has_spread, mean_g, torch.zeros_like(mean_g))
    else:
        centre = mean_g
    advantages = rewards - centre.repeat_interleave(num_generations)
    advantages = scale(
        advantages=advantages, rewards=rewards, group_std=std_g.repeat_interleave(num_generations), eps=eps
    )
    if no_mean_for_same_reward:
        advantages = advantages.clamp(-1.0, 1.0)
    advantages = torch.nan_to_num(advantages, nan=0.0)

    std_mean = torch.nanmean(std_g)
    stats = {
        "reward_std_mean": 0.0 if torch.isnan(std_mean) else _float(std_mean),
        "frac_zero_std_groups": _float(zero_std.float().mean()),
    }
    return advantages, stats


@SCALE_REWARDS.register("group")
def scale_by_group_std(*, advantages: Tensor, rewards: Tensor, group_std: Tensor, eps: float) -> Tensor:
    """``A / (std_g + eps)``, each completion's own group std (MMR1, trl's default)."""
    return advantages / (group_std + eps)


@SCALE_REWARDS.register("batch")
def scale_by_batch_std(*, advantages: Tensor, rewards: Tensor, group_std: Tensor, eps: float) -> Tensor:
    """``A / (std_batch + eps)``, one unbiased std over all N rewards."""
    return advantages / (_nanstd(rewards) + eps)


@SCALE_REWARDS.register("none")
def no_scale(*, advantages: Tensor, rewards: Tensor, group_std: Tensor, eps: float) -> Tensor:
    """``A`` unscaled: ``r - mean_g`` (Dr. GRPO)."""
    return advantages


# --------------------------------------------------------------------------------------------------
# KL estimators


def resolve_kl_estimator(name: str) -> str:
    """Canonical KL estimator name for ``name`` (case-insensitive; MMR1 aliases accepted).

    ``kimikl``, ``mse`` and ``fullkimi`` map to ``k2``, ``kl`` to ``k1``. An unknown name raises
    ValueError listing the valid names with a did-you-mean hint.
    """
    if not isinstance(name, str):
        raise ValueError(f"KL estimator must be a string, got {type(name).__name__} {name!r}")
    key = name.strip().lower()
    if key not in KL_ESTIMATORS:
        raise KL_ESTIMATORS.unknown(name)
    return KL_ESTIMATORS.canonical(key)


def kl_penalty(logp: Tensor, ref_logp: Tensor, estimator: str) -> Tensor:
    """Per-token estimate of KL(policy || reference) from sampled-token log-probs; same shape.

    ``KL_ESTIMATORS[estimator]`` (MMR1 aliases accepted, case-insensitive) of ``logp`` and ``ref_logp``.
    """
    name = resolve_kl_estimator(estimator)
    _same_shape("logp", logp, "ref_logp", ref_logp)
    return KL_ESTIMATORS[name](logp=logp, ref_logp=ref_logp)


@KL_ESTIMATORS.register("k1", aliases=("kl",))
def kl_k1(*, logp: Tensor, ref_logp: Tensor) -> Tensor:
    """``k1 = logp - ref_logp`` (= ``-d`` with ``d = ref_logp - logp``)."""
    return logp - ref_logp


# "fullkimi" is MMR1's k2 with the reference reset to the policy every step and a mean-only
# advantage: the estimator part is k2; the rest is trainer configuration.
@KL_ESTIMATORS.register("k2", aliases=("kimikl", "mse", "fullkimi"))
def kl_k2(*, logp: Tensor, ref_logp: Tensor) -> Tensor:
    """``k2 = 0.5 * d**2`` with ``d = ref_logp - logp`` (MMR1's "kimikl")."""
    return 0.5 * (ref_logp - logp).square()


@KL_ESTIMATORS.register("k3")
def kl_k3(*, logp: Tensor, ref_logp: Tensor) -> Tensor:
    """``k3 = exp(d) - d - 1`` with ``d = ref_logp - logp`` (trl's and DeepSeekMath's)."""
    d = ref_logp - logp
    return torch.exp(d) - d - 1


@KL_ESTIMATORS.register("low_var_kl")
def kl_low_var(*, logp: Tensor, ref_logp: Tensor) -> Tensor:
    """k3 with ``d`` clamped to ``[-20, 20]`` and the result to ``[-10, 10]`` (verl's)."""
    d = (ref_logp - logp).clamp(-20.0, 20.0)
    return (torch.exp(d) - d - 1).clamp(-10.0, 10.0)


# --------------------------------------------------------------------------------------------------
# per-token quantities


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _flat_rows(logits: Tensor, what: str) -> Tensor:
    if logits.dim() < 1 or logits.shape[-1] == 0:
        raise ValueError(
            f"{what}: logits must have a non-empty last (vocabulary) axis, got shape {tuple(logits.shape)}"
        )
    return logits.reshape(-1, logits.shape[-1])


class _RowLogSumExp(torch.autograd.Function):
    """``logsumexp`` over the last axis of ``(N, V)`` logits, ``chunk`` rows at a time, in float32
    or better. Backward recomputes ``softmax`` per chunk from the saved logits, so no full-size
    intermediate is kept for the backward pass (plain autograd would keep upcast copies)."""

    @staticmethod
    def forward(ctx, logits: Tensor, chunk: int) -> Tensor:
        work = _work_dtype(logits.dtype)
        lse = torch.cat([torch.logsumexp(c.to(work), dim=-1) for c in logits.split(chunk, dim=0)])
        ctx.save_for_backward(logits, lse)
        ctx.chunk = chunk
        return lse

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_lse: Tensor):
        logits, lse = ctx.saved_tensors
        grad = torch.empty_like(logits)
        work = lse.dtype
        for i in range(0, logits.shape[0], ctx.chunk):
            sl = slice(i, i + ctx.chunk)
            p = torch.exp(logits[sl].to(work) - lse[sl].unsqueeze(-1))
            grad[sl] = (p * grad_lse[sl].unsqueeze(-1)).to(logits.dtype)
        return grad, None


class _RowEntropy(torch.autograd.Function):
    """Entropy over the last axis of ``(N, V)`` logits, chunked, with a recomputing backward:
    ``dH/dx_j = -p_j * (log p_j + H)``."""

    @staticmethod
    def _chunk(c: Tensor, work: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
        logp = torch.log_softmax(c.to(work), dim=-1)
        p = logp.exp()
        plogp = torch.where(p > 0, p * logp, torch.zeros_like(p))  # -inf logits contribute 0
        return p, logp, -plogp.sum(-1)

    @staticmethod
    def forward(ctx, logits: Tensor, chunk: int) -> Tensor:
        work = _work_dtype(logits.dtype)
        ent = torch.cat([_RowEntropy._chunk(c, work)[2] for c in logits.split(chunk, dim=0)])
        ctx.save_for_backward(logits)
        ctx.chunk = chunk
        return ent

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_ent: Tensor):
        (logits,) = ctx.saved_tensors
        grad = torch.empty_like(logits)
        work = _work_dtype(logits.dtype)
        for i in range(0, logits.shape[0], ctx.chunk):
            sl = slice(i, i + ctx.chunk)
            p, logp, h = _RowEntropy._chunk(logits[sl], work)
            g = torch.where(p > 0, -p * (logp + h.unsqueeze(-1)), torch.zeros_like(p))
            grad[sl] = (g * grad_ent[sl].to(work).unsqueeze(-1)).to(logits.dtype)
        return grad, None


def entropy_from_logits(logits: Tensor, *, chunk_size: int = 128) -> Tensor:
    """Shannon entropy (nats) over the last axis: ``(..., V) -> (...)``.

    Computed from ``log_softmax`` (stable for large logits; ``-inf`` logits, e.g. a vocabulary
    restricted to image codes, contribute 0) over chunks of ``chunk_size`` rows of the flattened
    leading dimensions, so at most ``chunk_size x V`` probabilities exist at once, in the forward
    and in the backward (which recomputes them). Half-precision logits are computed in float32;
    the result has the logits' dtype. Differentiable (once).
    """
    flat = _flat_rows(logits, "entropy_from_logits")
    if flat.shape[0] == 0:
        return logits.new_zeros(logits.shape[:-1])
    ent = _RowEntropy.apply(flat, max(1, int(chunk_size)))
    return ent.to(logits.dtype).reshape(logits.shape[:-1])


def at_least_float32(x: Tensor) -> Tensor:
    """Half-precision tensors as float32; float32 and float64 unchanged (fp64 runs stay fp64)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def selective_log_softmax(logits: Tensor, ids: Tensor, *, chunk_size: int = 128) -> Tensor:
    """``log_softmax(logits)[..., ids]`` without materialising the full log-softmax.

    ``logits`` ``(..., V)``, ``ids`` ``(...)`` (integer) -> ``(...)``: the logit of each id minus
    the row's ``logsumexp``, the latter computed over ``chunk_size`` rows (tokens) at a time, with
    a backward that recomputes the softmax per chunk, so the extra memory beyond the logits is one
    chunk's worth of the vocabulary axis. float32/float64 logits keep their dtype; half-precision
    logits are computed in float32 and the result is float32 (``logsumexp`` in bfloat16 is too
    coarse for probability ratios).
    """
    if logits.dim() < 1 or tuple(logits.shape[:-1]) != tuple(ids.shape):
        raise ValueError(
            f"shape mismatch: logits have shape {tuple(logits.shape)}, so ids must have shape "
            f"{tuple(logits.shape[:-1])}, but ids have shape {tuple(ids.shape)}"
        )
    if ids.is_floating_point() or ids.is_complex():
        raise ValueError(f"ids must be an integer tensor, got dtype {ids.dtype}")
    flat = _flat_rows(logits, "selective_log_softmax")
    work = _work_dtype(logits.dtype)
    if flat.shape[0] == 0:
        return torch.zeros(ids.shape, dtype=work, device=logits.device)
    selected = flat.gather(-1, ids.reshape(-1, 1).long()).squeeze(-1).to(work)
    lse = _RowLogSumExp.apply(flat, max(1, int(chunk_size)))
    return (selected - lse).reshape(ids.shape)


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of ``x`` over positions where ``mask`` is nonzero (``mask`` broadcasts against ``x``).

    ``dim=None`` reduces everything. Where the mask is empty the result is 0, not NaN (the
    denominator is clamped to at least 1), matching trl's loss normalisers.
    """
    try:
        shape = torch.broadcast_shapes(x.shape, mask.shape)
    except RuntimeError:
        raise ValueError(
            f"shape mismatch: x has shape {tuple(x.shape)} and mask has shape {tuple(mask.shape)}, "
            f"which do not broadcast"
        ) from None
    m = mask.to(x.dtype if x.is_floating_point() else torch.float32).expand(shape)
    num = (x * m).sum() if dim is None else (x * m).sum(dim=dim)
    den = m.sum() if dim is None else m.sum(dim=dim)
    return num / den.clamp(min=1.0)


def truncation_mask(completion_mask: Tensor, is_truncated: Tensor) -> Tensor:
    """``mask_truncated_completions``: zero the whole row of every truncated completion.

    ``completion_mask`` ``(B, T)``, ``is_truncated`` ``(B,)`` (bool, True = hit the length limit
    without EOS). Returns a new mask of ``completion_mask``'s dtype.
    """
    if completion_mask.dim() != 2 or is_truncated.dim() != 1 or is_truncated.shape[0] != completion_mask.shape[0]:
        raise ValueError(
            f"shape mismatch: completion_mask has shape {tuple(completion_mask.shape)} and is_truncated has "
            f"shape {tuple(is_truncated.shape)}; expected (B, T) and (B,)"
        )
    keep = ~is_truncated.bool()
    return completion_mask * keep.unsqueeze(1).to(completion_mask.dtype)


# --------------------------------------------------------------------------------------------------
# the policy loss: ratio -> surrogate -> + KL -> - entropy -> aggregate


@IMPORTANCE_SAMPLING_LEVELS.register("token")
def token_log_ratio(*, log_ratio: Tensor, mask: Tensor) -> Tensor:
    """One log importance weight per token: ``logp - old_logp`` itself (``mask`` is not needed)."""
    return log_ratio


@IMPORTANCE_SAMPLING_LEVELS.register("sequence", per_sequence=True)
def sequence_log_ratio(*, log_ratio: Tensor, mask: Tensor) -> Tensor:
    """GSPO: one log weight per sequence, the masked mean of its token log-ratios, shape ``(B, 1)``.

    The gradient flows through that mean, as in the GSPO paper and trl.
    """
    return ((log_ratio * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).unsqueeze(-1)


class Surrogate(NamedTuple):
    """A policy loss's per-token value and the ratio its unclipped branch used (for the clip metrics)."""

    loss: Tensor
    unclipped: Tensor


def _clipped_objective(unclipped: Tensor, ratio: Tensor, advantages: Tensor, epsilon_low: float,
                       epsilon_high: float) -> Tensor:
    """``-min(unclipped * A, clip(ratio, 1 - epsilon_low, 1 + epsilon_high) * A)`` per token."""
    clipped = ratio.clamp(1.0 - epsilon_low, 1.0 + epsilon_high)
    return -torch.min(unclipped * advantages, clipped * advantages)


@POLICY_LOSSES.register("clip")
def clip_loss(*, ratio: Tensor, advantages: Tensor, epsilon_low: float, epsilon_high: float) -> Surrogate:
    """PPO's clipped surrogate: ``-min(r * A, clip(r, 1 - epsilon_low, 1 + epsilon_high) * A)``."""
    return Surrogate(_clipped_objective(ratio, ratio, advantages, epsilon_low, epsilon_high), ratio)


@POLICY_LOSSES.register("two_sided")
def two_sided_clip_loss(*, ratio: Tensor, advantages: Tensor, epsilon_low: float, epsilon_high: float,
                        delta: float) -> Surrogate:
    """Two-sided clipping (trl's ``delta``, INTELLECT-2): ``-min(min(r, delta) * A, clip(r) * A)``.

    ``delta`` caps the unclipped ratio from above; it is meant to be > ``1 + epsilon_high``.
    """
    capped = ratio.clamp(max=delta)
    return Surrogate(_clipped_objective(capped, ratio, advantages, epsilon_low, epsilon_high), capped)


@LOSS_TYPES.register("grpo")
def grpo_aggregate(*, masked: Tensor, mask: Tensor, max_completion_length: int | None,
                   num_items_in_batch: float | Tensor | None) -> Tensor:
    """Mean over each sequence's tokens, then mean over sequences: ``mean_i(sum_t l_it / |o_i|)``."""
    return (masked.sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()


@LOSS_TYPES.register("bnpo")
def bnpo_aggregate(*, masked: Tensor, mask: Tensor, max_completion_length: int | None,
                   num_items_in_batch: float | Tensor | None) -> Tensor:
    """Token mean over this micro-batch: ``sum l / sum mask``."""
    return masked.sum() / mask.sum().clamp(min=1.0)


@LOSS_TYPES.register("dr_grpo")
def dr_grpo_aggregate(*, masked: Tensor, mask: Tensor, max_completion_length: int | None,
                      num_items_in_batch: float | Tensor | None) -> Tensor:
    """``sum l / (B * max_completion_length)`` (default ``T``, the padded width): no length bias."""
    B, T = mask.shape
    length = T if max_completion_length is None else max_completion_length
    if length <= 0:
        raise ValueError(f"max_completion_length must be positive, got {length}")
    return masked.sum() / (B * length)


@LOSS_TYPES.register("dapo", step_normalised=True)
def dapo_aggregate(*, masked: Tensor, mask: Tensor, max_completion_length: int | None,
                   num_items_in_batch: float | Tensor | None) -> Tensor:
    """``sum l / num_items_in_batch``: the token count of the whole optimizer step (default this
    micro-batch's), so micro-batch losses add up to the step's token mean."""
    if num_items_in_batch is None:
        denom = mask.sum()
    else:
        denom = torch.as_tensor(num_items_in_batch, dtype=masked.dtype, device=masked.device)
    return masked.sum() / denom.clamp(min=1.0)


def accumulated_loss(loss: Tensor, *, loss_type: str, gradient_accumulation_steps: int) -> Tensor:
    """The micro-batch ``loss`` as it enters ``backward()`` when ``gradient_accumulation_steps``
    micro-batches make one optimizer step: ``loss / steps`` (as trl does), or ``loss`` itself for a
    loss type registered with ``step_normalised=True`` (dapo), whose denominator already counts the
    whole step's tokens."""
    if LOSS_TYPES.meta_of(loss_type).get("step_normalised", False):
        return loss
    return loss / gradient_accumulation_steps


def policy_loss(
    logp: Tensor,
    old_logp: Tensor | None,
    advantages: Tensor,
    mask: Tensor,
    *,
    loss_type: str = "dapo",
    epsilon_low: float = 0.2,
    epsilon_high: float | None = None,
    importance_sampling_level: str = "token",
    ref_logp: Tensor | None = None,
    beta: float = 0.0,
    kl_estimator: str = "k3",
    entropy: Tensor | None = None,
    entropy_coef: float = 0.0,
    max_completion_length: int | None = None,
    num_items_in_batch: float | Tensor | None = None,
    delta: float | None = None,
) -> tuple[Tensor, dict]:
    """Clipped surrogate GRPO loss of one micro-batch, with trl 1.16's normalisations.

    Composes the registries' entries: ``ratio = exp(IMPORTANCE_SAMPLING_LEVELS[level](logp -
    old_logp))``; per token ``POLICY_LOSSES["clip"]`` (``"two_sided"`` when ``delta`` is given),
    plus ``beta * kl`` (``kl_penalty(logp, ref_logp, kl_estimator)``) when ``beta != 0``, minus
    ``entropy_coef * entropy`` when ``entropy_coef != 0``; then ``LOSS_TYPES[loss_type]`` over the
    masked tokens (grpo: sequence means, then their mean; bnpo: token mean; dr_grpo: sum / (B *
    ``max_completion_length``); dapo: sum / ``num_items_in_batch``). ``old_logp=None`` means a single
    update per generation (ratio 1, gradient of the plain policy gradient).

    The entropy bonus goes through the same aggregation as the policy term (MMR1 adds it per
    token), so under dapo it also accumulates exactly; trl 1.16 instead always takes a token mean
    over the micro-batch (the two agree for bnpo, and for dapo without accumulation). Pass an
    ``entropy`` that carries gradient (``entropy_from_logits`` of the live logits) for the bonus to
    act. Half-precision inputs are computed in float32 (token counts are not exact in bfloat16).

    Gradient accumulation. The returned loss is the micro-batch loss; backpropagate
    ``accumulated_loss(loss, loss_type=..., gradient_accumulation_steps=...)``. For dapo pass as
    ``num_items_in_batch`` the number of completion tokens (after masking) of the whole optimizer
    step, over all accumulation micro-batches and all processes: summing the micro-batch gradients
    then equals the gradient of one big batch whose loss is the token mean. Under DDP, which
    averages gradients over P processes, pass that global count divided by P. trl 1.16 computes
    exactly this number: its normaliser is ``num_items_in_batch_trl / num_processes *
    gradient_accumulation_steps / steps_per_generation``, where ``num_items_in_batch_trl`` counts
    the tokens of a whole generation batch on all processes; pass that normaliser here to reproduce
    trl. The other loss types ignore ``num_items_in_batch``.

    Returns ``(loss, metrics)``; metrics are plain floats: ``clip_ratio/low_mean`` (fraction of
    tokens with ``ratio < 1 - epsilon_low`` and A < 0), ``clip_ratio/high_mean`` (``ratio > 1 +
    epsilon_high`` and A > 0), ``clip_ratio/region_mean`` (either), ``ratio_mean``, ``kl`` (mean
    per-token KL, when ``ref_logp`` is given) and ``entropy`` (mean, when ``entropy`` is given).
    Token metrics are masked means over this micro-batch; with sequence-level ratios the clip and
    ratio metrics are means over sequences (as trl logs them).
    """
    aggregate = LOSS_TYPES[loss_type]
    log_weight = IMPORTANCE_SAMPLING_LEVELS[importance_sampling_level]
    surrogate_options = {} if delta is None else {"delta": delta}
    surrogate_loss = POLICY_LOSSES["clip" if delta is None else "two_sided"]
    adv = _checked_advantages(logp, old_logp, advantages, mask, ref_logp, entropy)
    if beta != 0.0 and ref_logp is None:
        raise ValueError(f"beta={beta} needs ref_logp (reference log-probs); pass ref_logp or set beta=0")
    if entropy_coef != 0.0 and entropy is None:
        raise ValueError(f"entropy_coef={entropy_coef} needs the per-token entropy; pass entropy or set entropy_coef=0")
    if epsilon_high is None:
        epsilon_high = epsilon_low

    work = _work_dtype(logp.dtype)
    logp = logp.to(work)
    m = mask.to(work)
    adv = adv.to(work)
    old_logp = logp.detach() if old_logp is None else old_logp.to(work)
    ref_logp = None if ref_logp is None else ref_logp.to(work)
    entropy = None if entropy is None else entropy.to(work)

    ratio = torch.exp(log_weight(log_ratio=logp - old_logp, mask=m))
    surrogate = surrogate_loss(ratio=ratio, advantages=adv, epsilon_low=epsilon_low, epsilon_high=epsilon_high,
                               **surrogate_options)
    per_token = surrogate.loss
    per_token_kl = None if ref_logp is None else kl_penalty(logp, ref_logp, kl_estimator)
    if beta != 0.0:
        per_token = per_token + beta * per_token_kl
    if entropy is not None and entropy_coef != 0.0:
        per_token = per_token - entropy_coef * entropy
    # the mask broadcasts a (B, 1) sequence-level loss over the tokens
    loss = aggregate(masked=per_token * m, mask=m, max_completion_length=max_completion_length,
                     num_items_in_batch=num_items_in_batch)

    per_sequence = IMPORTANCE_SAMPLING_LEVELS.meta_of(importance_sampling_level).get("per_sequence", False)
    metrics = _loss_metrics(ratio, surrogate.unclipped, adv, m, epsilon_low, epsilon_high, per_sequence)
    metrics.update(_means(m, kl=per_token_kl, entropy=entropy))
    return loss, metrics


def _checked_advantages(logp: Tensor, old_logp: Tensor | None, advantages: Tensor, mask: Tensor,
                        ref_logp: Tensor | None, entropy: Tensor | None) -> Tensor:
    """Checks every input's shape against ``logp`` ``(B, T)``; the advantages as ``(B, 1)`` or ``(B, T)``."""
    if logp.dim() != 2:
        raise ValueError(f"logp must have shape (B, T), got shape {tuple(logp.shape)}")
    _same_shape("logp", logp, "mask", mask)
    for name, x in (("old_logp", old_logp), ("ref_logp", ref_logp), ("entropy", entropy)):
        if x is not None:
            _same_shape("logp", logp, name, x)
    if advantages.dim() == 1:
        if advantages.shape[0] != logp.shape[0]:
            raise ValueError(
                f"shape mismatch: advantages have shape {tuple(advantages.shape)} but logp has shape "
                f"{tuple(logp.shape)}; expected one advantage per completion ({logp.shape[0]},)"
            )
        return advantages.unsqueeze(1)
    if tuple(advantages.shape) == tuple(logp.shape):
        return advantages
    raise ValueError(
        f"shape mismatch: advantages have shape {tuple(advantages.shape)} but logp has shape "
        f"{tuple(logp.shape)}; expected ({logp.shape[0]},) or {tuple(logp.shape)}"
    )


@torch.no_grad()
def _loss_metrics(ratio: Tensor, unclipped: Tensor, adv: Tensor, m: Tensor, epsilon_low: float,
                  epsilon_high: float, per_sequence: bool) -> dict:
    """Clip fractions (read on the unclipped branch's ratio) and the mean ratio, as trl logs them."""
    low = ((unclipped < 1.0 - epsilon_low) & (adv < 0)).to(m.dtype)
    high = ((unclipped > 1.0 + epsilon_high) & (adv > 0)).to(m.dtype)
    region = torch.clamp(low + high, max=1.0)

    def metric_mean(x: Tensor) -> float:
        if per_sequence and x.shape[-1] == 1:  # one value per sequence
            return _float(x.mean()) if x.numel() else 0.0
        return _float(masked_mean(x, m))

    return {
        "clip_ratio/low_mean": metric_mean(low),
        "clip_ratio/high_mean": metric_mean(high),
        "clip_ratio/region_mean": metric_mean(region),
        "ratio_mean": metric_mean(ratio),
    }


@torch.no_grad()
def _means(m: Tensor, **per_token: Tensor | None) -> dict:
    """Masked means of the given per-token quantities; those that are None are left out."""
    return {name: _float(masked_mean(x, m)) for name, x in per_token.items() if x is not None}


# --------------------------------------------------------------------------------------------------
# schedules


def temperature_at(
    step: int, total_steps: int, schedule: str = "constant", start: float = 1.0, end: float = 1.0
) -> float:
    """Sampling temperature at ``step``: ``TEMPERATURE_SCHEDULES[schedule]`` (MMR1's ``temperature_func``).

    ``start`` and ``end`` must be positive numbers.
    """
    temperature = TEMPERATURE_SCHEDULES[schedule]
    for name, value in (("start", start), ("end", end)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"temperature {name} must be a positive number, got {value!r}")
    return temperature(step=step, total_steps=total_steps, start=start, end=end)


@TEMPERATURE_SCHEDULES.register("constant")
def constant_temperature(*, step: int, total_steps: int, start: float, end: float) -> float:
    """``start`` at every step."""
    return float(start)


@TEMPERATURE_SCHEDULES.register("linear")
def linear_temperature(*, step: int, total_steps: int, start: float, end: float) -> float:
    """``start + (end - start) * step / total_steps``, the step clamped to ``[0, total_steps]``
    (MMR1's linear recipe uses start 0.1, end 1.0)."""
    if total_steps <= 0:
        raise ValueError(f"a linear temperature schedule needs total_steps > 0, got {total_steps}")
    frac = min(max(step / total_steps, 0.0), 1.0)
    return float(start + (end - start) * frac)
