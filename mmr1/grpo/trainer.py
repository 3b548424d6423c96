"""The GRPO loop: rollout -> rewards -> advantages -> optimizer passes. Read it top to bottom.

Everything that can be checked without a model (config, plugin names, batch arithmetic, data) is
checked in :func:`mmr1.grpo.setup.prepare` before any weights load, the same checks as ``mmr1 check``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import select
import signal
import threading
import time
from pathlib import Path

import torch
from torch import nn

from mmr1.config import TrainConfig
from mmr1.grpo import algorithms as algo
from mmr1.grpo.batching import PromptSampler
from mmr1.grpo.build import (build_accelerator, build_optimizer, build_scheduler, load_policy, log_to_trackers,
                              precision, report_to, start_trackers)
from mmr1.grpo.checkpoint import (check_launch, check_output_dir, list_checkpoints, load_checkpoint, remove_stale_tmp,
                                  resolve_resume, save_checkpoint, save_final)
from mmr1.grpo.rewards import RewardRunner, TrainerState, dataset_columns, reward_columns
from mmr1.grpo.setup import Prepared, data_path, prepare  # noqa: F401 - prepare is this module's API too
from mmr1.grpo.trajectory import Trajectory
from mmr1.rollout.base import SamplingParams
from mmr1.rollout.sampling import completion_seed
from mmr1.templates import encode_rows

log = logging.getLogger("mmr1.train")


class TrainingHalted(RuntimeError):
    """The run stopped itself: non-finite steps or weights, or rewards without any opinion."""


class OutputWriteError(TrainingHalted):
    """A checkpoint, ``final/`` or a log could not be written to output_dir (full disk, read-only, no permission)."""


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped :meth:`GRPOTrainer.train` (a ``KeyboardInterrupt``: ``except Exception`` passes it).

    After the first signal the rollout in progress finishes and ``checkpoint`` is written at that rollout boundary
    (``saved``), unless one for this step exists already or no step was taken. After a second signal the run is
    abandoned at once (``aborted``): nothing more is written and ``checkpoint`` is the last complete one, if any.
    ``resume_spec`` is the value of ``resume_from_checkpoint`` that continues from it (``latest`` when it is the newest
    checkpoint in output_dir); ``exit_code`` is the shell's 128 + signal number (130 SIGINT, 143 SIGTERM).
    """

    def __init__(self, signum: int, message: str, checkpoint: Path | None, resume_spec: str | None,
                 saved: bool = False, aborted: bool = False):
        self.signum, self.message, self.checkpoint, self.resume_spec = signum, message, checkpoint, resume_spec
        self.saved, self.aborted = saved, aborted
        self.exit_code = 128 + signum
        hint = (f"; resume with resume_from_checkpoint: {resume_spec}" if resume_spec
                else "; nothing to resume: run the same command again")
        super().__init__(message + hint)


class PolicyScorer(nn.Module):
    """Wraps the policy so that one ``forward`` (both shared-prefix passes) is what DDP/DeepSpeed see."""

    def __init__(self, model, adapter):
        super().__init__()
        self.model = model
        self.adapter = adapter

    def forward(self, prompts, prompt_index, completion_ids, completion_mask, shared_prefix=True):
        return self.adapter.completion_logits(self.model, prompts, prompt_index, completion_ids,
                                              completion_mask, shared_prefix=shared_prefix)


class GRPOTrainer:
    """Own GRPO loop on torch + accelerate (DDP, DeepSpeed and FSDP through accelerate configs)."""

    def __init__(self, config: TrainConfig, accelerator=None, prepared: Prepared | None = None):
        from accelerate.utils import set_seed

        self.config = c = config
        self.accelerator = accelerator or build_accelerator(c)
        acc = self.accelerator
        check_launch(acc, c, generates=True)
        self.prepared = prepared or prepare(c, acc.num_processes, progress=acc.is_main_process)
        self.plan, self.template = self.prepared.plan, self.prepared.template
        self.dataset = self.prepared.dataset
        self.rewards = RewardRunner(self.prepared.rewards, timeout=c.reward_timeout)
        self.reward_weights = torch.tensor(c.reward_weights or [1.0] * len(c.rewards), dtype=torch.float32)
        set_seed(c.seed)

        # -- model, reference, optimizer ------------------------------------------------------
        dtype = precision(c, acc.device.type == "cuda").weights
        adapter_cls = self.prepared.adapter_cls
        processor = self.prepared.processor or adapter_cls.load_processor(c.model_name_or_path, c.min_pixels,
                                                                          c.max_pixels)
        self.adapter = adapter_cls(processor, c.min_pixels, c.max_pixels)
        self.adapter.configure(c)
        model = load_policy(adapter_cls, c, dtype)
        self.kl_estimator = algo.resolve_kl_estimator(c.kl_approximator)
        self.full_kimi = c.kl_approximator == "fullkimi"
        self.ref_model = None
        if c.beta > 0 and not self.full_kimi and not c.use_peft:
            self.ref_model = adapter_cls.load_model(c.model_name_or_path, dtype, c.attn_implementation)
            self.ref_model.requires_grad_(False).eval().to(acc.device)
        self.shared_prefix = c.shared_prefix and not c.gradient_checkpointing
        if c.shared_prefix and c.gradient_checkpointing:
            log.warning("gradient_checkpointing disables the KV cache, so completions are scored as full "
                        "prompt+completion rows (shared_prefix off): slower updates, less activation memory")
        self.adapter.bind(model)
        optimizer = build_optimizer(model, c)
        self.total_steps = self._total_steps()
        scheduler = build_scheduler(optimizer, c, self.total_steps)
        self.scorer, self.optimizer, self.scheduler = acc.prepare(PolicyScorer(model, self.adapter), optimizer, scheduler)
        self.processor = processor
        self.backend = self.prepared.backend_cls(self.adapter, acc, config=c)
        self.sampler = PromptSampler(len(self.dataset), c.seed)
        self.global_step, self.rollout_step = 0, 0
        self.nonfinite_steps, self._nonfinite_in_a_row, self._opinionless_in_a_row = 0, 0, 0
        self._failing_in_a_row: list[int] = []        # per reward: rollouts in a row it failed everywhere
        self.output_dir = Path(c.output_dir)
        self.metrics_path = self.output_dir / "metrics.jsonl"
        self.completions_path = self.output_dir / "completions.jsonl"
        self.history: list[dict] = []

    # -- helpers --------------------------------------------------------------------------------
    @property
    def policy(self):
        """The bare policy model (for generation and saving)."""
        return self.accelerator.unwrap_model(self.scorer).model

    def _total_steps(self) -> int:
        c = self.config
        if c.max_steps > 0:
            return c.max_steps
        rollouts = math.ceil(c.num_train_epochs * len(self.dataset) / self.plan.prompts_per_rollout)
        return max(1, rollouts * self.plan.optimizer_steps_per_rollout)

    def _temperature(self) -> float:
        c = self.config
        if c.temperature_schedule == "constant":
            return c.temperature
        return algo.temperature_at(self.global_step, self.total_steps, c.temperature_schedule,
                                   c.temperature_begin, c.temperature_end)

    def _trainer_state(self) -> TrainerState:
        return TrainerState(
            global_step=self.global_step, max_steps=self.total_steps, epoch=self.sampler.epoch,
            num_train_epochs=self.config.num_train_epochs, rollout_step=self.rollout_step,
            is_world_process_zero=self.accelerator.is_main_process)

    # -- one rollout ----------------------------------------------------------------------------
    def rollout(self) -> tuple[Trajectory, dict]:
        """One rollout, top to bottom: sample -> encode -> generate -> score -> gather -> advantages -> reference.

        Returns this process's :class:`Trajectory` and the rollout's stats (rewards over all processes).
        """
        c, acc, plan = self.config, self.accelerator, self.plan
        G = c.num_generations
        t0 = time.perf_counter()
        rows = [self.dataset[i] for i in self.sampler.take(plan.prompts_per_rollout)]          # sample
        local = plan.rank_indices(acc.process_index)               # this process's global completion indices
        prompt_of = [i // G for i in local]
        unique = sorted(set(prompt_of))
        prompts, messages, images = encode_rows(self.adapter, self.template, [rows[p] for p in unique],  # encode
                                                c.max_prompt_length)
        prompts = prompts.to(acc.device)
        position = {p: k for k, p in enumerate(unique)}
        prompt_index = torch.tensor([position[p] for p in prompt_of], device=acc.device)
        temperature = self._temperature()
        out = self._generate(prompts, prompt_index, local, temperature)                        # generate
        t1 = time.perf_counter()

        columns = reward_columns(self.adapter, [rows[p] for p in unique], prompts, messages, images,
                                 prompt_index.tolist(), out, keys=dataset_columns(rows))
        table = self._score(out, {**columns, "trainer_state": self._trainer_state()})         # score
        t2 = time.perf_counter()

        global_table = self._gather_rewards(table)                                             # gather
        total = algo.combine_rewards(global_table, self.reward_weights) * c.reward_scale       # advantages
        total[torch.isnan(global_table).all(1)] = float("nan")   # no reward had an opinion: out of the baseline
        scale = "none" if self.full_kimi else c.scale_rewards
        advantages, adv_stats = algo.group_advantages(total, G, scale, c.no_mean_for_same_reward)
        mask = out.completion_mask
        if c.mask_truncated_completions:
            mask = algo.truncation_mask(mask, out.is_truncated)
        trajectory = Trajectory(prompts, prompt_index, out.completion_ids, mask,
                                advantages[torch.tensor(local)].to(acc.device), temperature)
        self._add_log_probs(trajectory)                                                        # reference
        t3 = time.perf_counter()

        stats = self._rollout_stats(total, advantages, adv_stats, global_table, mask, out.is_truncated, temperature)
        stats.update({"time/rollout": t1 - t0, "time/reward": t2 - t1, "time/reference": t3 - t2})
        if acc.is_main_process and c.log_completions:
            self._log_completions(out.texts[: c.num_completions_to_log], table, trajectory.advantages, rows,
                                  prompt_of)
        self.rollout_step += 1
        return trajectory, stats

    def _generate(self, prompts, prompt_index, local: list[int], temperature: float):
        """The backend's completions, one seed per global completion index (independent of batch layout)."""
        c = self.config
        seeds = [completion_seed(c.seed, self.rollout_step, i) for i in local]
        sampling = SamplingParams(temperature, c.top_p, c.top_k, c.max_completion_length,
                                  c.repetition_penalty, seeds=seeds)
        with self.accelerator.autocast():            # the bare policy is outside accelerate's forward wrapper
            return self.backend.generate(self.policy, prompts, prompt_index, sampling)

    def _score(self, out, columns: dict) -> torch.Tensor:
        """This process's reward table, (completions, rewards); NaN where a reward had no opinion."""
        table = torch.tensor(self.rewards(out.texts, **columns), dtype=torch.float32)
        self._check_opinions()
        return table

    def _gather_rewards(self, table: torch.Tensor) -> torch.Tensor:
        """Every process's reward rows, in global completion order."""
        acc, plan = self.accelerator, self.plan
        gathered = acc.gather(table.to(acc.device)).cpu()
        order = torch.tensor([i for r in range(acc.num_processes) for i in plan.rank_indices(r)])
        global_table = torch.empty_like(gathered)
        global_table[order] = gathered
        return global_table

    def _add_log_probs(self, trajectory: Trajectory) -> None:
        """The sampling policy's log-probs where the update needs them, and the reference's for the KL term."""
        c, plan = self.config, self.plan
        need_old = c.num_iterations > 1 or plan.steps_per_generation > plan.gradient_accumulation_steps
        if need_old or self.full_kimi:
            trajectory.old_logp = self._score_no_grad(self.scorer, trajectory)
        if self.full_kimi:
            trajectory.ref_logp = trajectory.old_logp
        elif c.beta > 0:
            trajectory.ref_logp = self._reference_logp(trajectory)

    def _rollout_stats(self, total, advantages, adv_stats, global_table, mask, is_truncated, temperature) -> dict:
        acc = self.accelerator
        finite = ~torch.isnan(total)
        stats = {
            "reward": total.nanmean().item(),
            "reward_std": total[finite].std().item() if finite.sum() > 1 else 0.0,
            "advantages/mean": advantages.mean().item(), "advantages/abs_mean": advantages.abs().mean().item(),
            "frac_reward_zero_std": adv_stats.get("frac_zero_std_groups", 0.0),
            "completion_length": acc.gather(mask.sum(1).float().to(acc.device)).float().mean().item(),
            "truncated_fraction": acc.gather(is_truncated.float().to(acc.device)).mean().item(),
            "temperature": temperature,
        }
        for j, name in enumerate(self.rewards.names):
            col = global_table[:, j]
            ok = ~torch.isnan(col)
            stats[f"rewards/{name}"] = col[ok].mean().item() if ok.any() else float("nan")
            stats[f"rewards/{name}/failures"] = self.rewards.failures[name]
        stats.update(self.rewards.logged_metrics(taken=stats))                # log_metric (this process's)
        return stats

    def _logits(self, scorer, mb: Trajectory) -> torch.Tensor:
        """Scaled logits of ``mb``'s completion tokens (float32 at least, divided by the rollout's temperature)."""
        logits = scorer(mb.prompts, mb.prompt_index, mb.completion_ids, mb.completion_mask,
                        shared_prefix=self.shared_prefix)
        return algo.at_least_float32(logits) / mb.temperature

    @torch.no_grad()
    def _score_no_grad(self, scorer, trajectory: Trajectory) -> torch.Tensor:
        chunks = []
        with self.accelerator.autocast():            # the reference model is not prepared: autocast here
            for s in range(self.plan.steps_per_generation):
                mb = trajectory.micro(self._micro_slice(s))
                chunks.append(algo.selective_log_softmax(self._logits(scorer, mb), mb.completion_ids))
        return torch.cat(chunks)

    @torch.no_grad()
    def _reference_logp(self, trajectory: Trajectory) -> torch.Tensor:
        if self.ref_model is not None:
            return self._score_no_grad(PolicyScorer(self.ref_model, self.adapter), trajectory)
        with self.policy.disable_adapter():                  # LoRA: the base model is the reference
            return self._score_no_grad(self.scorer, trajectory)

    def _micro_slice(self, micro_step: int) -> slice:
        n = self.plan.per_device
        return slice(micro_step * n, (micro_step + 1) * n)

    # -- optimisation ---------------------------------------------------------------------------
    def _token_normalisers(self, trajectory: Trajectory) -> list[float]:
        """``num_items_in_batch`` of each optimizer step: its completion tokens over all processes / num_processes."""
        acc, plan = self.accelerator, self.plan
        per_micro = torch.stack([trajectory.completion_mask[self._micro_slice(s)].sum()
                                 for s in range(plan.steps_per_generation)])
        per_micro = acc.reduce(per_micro.float().to(acc.device), reduction="sum").cpu()
        ga = plan.gradient_accumulation_steps
        per_step = per_micro.view(-1, ga).sum(1)
        return [max(float(x), 1.0) / acc.num_processes for x in per_step]

    def update(self, trajectory: Trajectory) -> list[dict]:
        """``num_iterations`` passes over the rollout; an optimizer step every GA micro-steps."""
        c, acc, plan = self.config, self.accelerator, self.plan
        ga = plan.gradient_accumulation_steps
        normalisers = self._token_normalisers(trajectory)
        logs, window_finite = [], True
        for _ in range(c.num_iterations):
            for s in range(plan.steps_per_generation):
                mb = trajectory.micro(self._micro_slice(s))
                last = (s + 1) % ga == 0
                t0 = time.perf_counter()
                context = acc.no_sync(self.scorer) if not last and acc.num_processes > 1 else contextlib.nullcontext()
                with context:
                    logits = self._logits(self.scorer, mb)
                    logp = algo.selective_log_softmax(logits, mb.completion_ids)
                    entropy = algo.entropy_from_logits(logits if c.entropy_weight else logits.detach())
                    loss, metrics = algo.policy_loss(
                        logp, mb.old_logp, mb.advantages, mb.completion_mask, loss_type=c.loss_type,
                        epsilon_low=c.epsilon, epsilon_high=c.epsilon_high, delta=c.delta,
                        importance_sampling_level=c.importance_sampling_level,
                        ref_logp=mb.ref_logp,
                        beta=c.beta, kl_estimator=self.kl_estimator,
                        entropy=entropy, entropy_coef=c.entropy_weight,
                        max_completion_length=c.max_completion_length, num_items_in_batch=normalisers[s // ga])
                    acc.backward(algo.accumulated_loss(loss, loss_type=c.loss_type, gradient_accumulation_steps=ga))
                metrics.update(loss=loss.item(), **{"time/update": time.perf_counter() - t0})
                logs.append(metrics)
                window_finite = (window_finite if s % ga else True) and math.isfinite(metrics["loss"])
                if last:
                    grad_norm = None
                    if c.max_grad_norm and c.max_grad_norm > 0:
                        grad_norm = acc.clip_grad_norm_(self.scorer.parameters(), c.max_grad_norm)
                    if self._all_ranks_finite(window_finite, grad_norm):
                        self.optimizer.step()
                        self.scheduler.step()
                        self._nonfinite_in_a_row = 0
                    else:
                        self._skip_step()
                    self.optimizer.zero_grad(set_to_none=True)
                    self.global_step += 1
                    logs[-1]["grad_norm"] = float(grad_norm) if grad_norm is not None else float("nan")
                    logs[-1]["learning_rate"] = self.scheduler.get_last_lr()[0]
                    if self._nonfinite_in_a_row >= c.max_nonfinite_steps:
                        raise TrainingHalted(self._nonfinite_message())
                    if self.global_step >= self.total_steps:
                        return logs
        return logs

    # -- finite or stop -------------------------------------------------------------------------
    def _any_rank(self, flag: bool) -> bool:
        """True if ``flag`` holds on any process (the same answer on every rank)."""
        acc = self.accelerator
        if acc.num_processes == 1:
            return flag
        return acc.reduce(torch.tensor([float(flag)], device=acc.device), reduction="sum").item() > 0

    def _all_ranks_finite(self, loss_finite: bool, grad_norm) -> bool:
        """Loss and gradient norm finite on every process (the gradients themselves when not clipping)."""
        if grad_norm is not None:
            finite = loss_finite and math.isfinite(float(grad_norm))
        else:
            finite = loss_finite and all(bool(torch.isfinite(p.grad).all()) for p in self.scorer.parameters()
                                         if p.grad is not None)
        return not self._any_rank(not finite)

    def _skip_step(self) -> None:
        """Drop a step with a non-finite loss or gradient: no optimizer or scheduler step; counted."""
        self.nonfinite_steps += 1
        self._nonfinite_in_a_row += 1
        log.warning("step %d: non-finite loss or gradient norm; the optimizer step is skipped (%d in a row, "
                    "the run stops at max_nonfinite_steps=%d)", self.global_step + 1, self._nonfinite_in_a_row,
                    self.config.max_nonfinite_steps)

    def _nonfinite_message(self) -> str:
        n = self._nonfinite_in_a_row
        return (f"stopped at step {self.global_step}: {n} optimizer step(s) in a row had a non-finite loss or "
                f"gradient norm (max_nonfinite_steps={self.config.max_nonfinite_steps}); they were skipped, so the "
                f"weights are those from before them, and nothing more is saved. Lower learning_rate, use "
                f"torch_dtype float32, or check the rewards and the data")

    def _check_opinions(self) -> None:
        """Stop after ``max_nonfinite_steps`` rollouts in a row where every reward failed on every completion, or
        where one reward did (on every process): training on without it would quietly change the objective."""
        acc, runner, limit = self.accelerator, self.rewards, self.config.max_nonfinite_steps
        failed = torch.tensor([float(f) for f in runner.last_failed] + [float(runner.last_all_failed)])
        if acc.num_processes > 1:
            failed = acc.reduce(failed.to(acc.device), reduction="sum").cpu() / acc.num_processes
        everywhere = (failed >= 1.0).tolist()
        self._opinionless_in_a_row = self._opinionless_in_a_row + 1 if everywhere[-1] else 0
        if self._opinionless_in_a_row >= limit:
            raise TrainingHalted(
                f"no reward gave an opinion: the run cannot learn. In {self._opinionless_in_a_row} rollouts in a "
                f"row (max_nonfinite_steps={limit}) every call of every reward "
                f"({', '.join(runner.names)}) failed; see the warnings of the mmr1.rewards logger above")
        in_a_row = self._failing_in_a_row or [0] * len(runner.names)
        self._failing_in_a_row = [k + 1 if bad else 0 for k, bad in zip(in_a_row, everywhere[:-1])]
        for name, k in zip(runner.names, self._failing_in_a_row):
            if k >= limit:
                raise TrainingHalted(
                    f"reward {name!r} failed on every completion in {k} rollouts in a row "
                    f"(max_nonfinite_steps={limit}); the other rewards still scored, but training on without it "
                    f"would quietly change the objective. See the warnings of the mmr1.rewards logger above for its "
                    f"error (counted in rewards/{name}/failures); fix the reward or remove it from rewards")

    def _check_weights(self, what: str) -> None:
        """Refuse to save non-finite weights: raise TrainingHalted naming the first bad tensor."""
        acc = self.accelerator
        named = list(self.policy.named_parameters())
        if not named:
            return
        device = named[0][1].device
        finite = torch.stack([torch.isfinite(p.detach()).all().to(device) for _, p in named]).cpu()
        first = int((~finite).nonzero()[0]) if not finite.all() else len(named)
        if acc.num_processes > 1:
            first = int(acc.gather(torch.tensor([first], device=acc.device)).min())
        if first < len(named):
            raise TrainingHalted(
                f"refusing to save {what}: weight {named[first][0]!r} has non-finite values (NaN or inf), so "
                f"nothing was written to {self.output_dir}. Lower learning_rate, use torch_dtype float32, or "
                f"resume from an earlier checkpoint")

    # -- the loop -------------------------------------------------------------------------------
    # Set by train(): the signal (SIGINT / SIGTERM) that arrived after the last step (final/ is complete), else None.
    stop_signal = None
    _last_checkpoint: tuple[int, Path] | None = None     # (step, folder) of the newest checkpoint of this run
    _activity = "before the first step"                  # what train() is doing, for the signal messages

    def train(self) -> list[dict]:
        """Run to ``total_steps``; SIGINT / SIGTERM stop at the next rollout boundary with a checkpoint.

        See :class:`TrainingInterrupted` and :class:`_SignalGuard`. Raises :class:`OutputWriteError` when a
        checkpoint, ``final/`` or a log cannot be written, and ``OutputDirError`` when output_dir cannot be.
        """
        from tqdm.auto import tqdm

        c, acc = self.config, self.accelerator
        self.stop_signal, self._last_checkpoint, self._activity = None, None, "before the first step"
        guard = _SignalGuard(self._abort, announce=acc.is_main_process, doing=lambda: self._activity)
        guard.install()                  # from here on (a checkpoint loading included) a signal is handled
        bar = None
        try:
            check_output_dir(self.output_dir)
            self.output_dir.mkdir(parents=True, exist_ok=True)
            if acc.is_main_process:
                removed = remove_stale_tmp(self.output_dir)
                if removed:
                    log.warning("removed %d temporary folder(s) left in %s by an interrupted save: %s",
                                len(removed), self.output_dir, ", ".join(removed))
            acc.wait_for_everyone()
            resume = resolve_resume(c.resume_from_checkpoint, c.output_dir)
            if resume is not None:
                state = load_checkpoint(acc, resume)
                self.global_step, self.rollout_step = state["global_step"], state["rollout_step"]
                self.sampler.consumed = state["prompts_consumed"]
                self._last_checkpoint = (self.global_step, Path(resume))
                acc.print(f"resumed from {resume} at step {self.global_step}")
            elif c.resume_from_checkpoint == "latest" and acc.is_main_process:
                log.warning("resume_from_checkpoint: latest: no checkpoint in %s; starting from step 0",
                            self.output_dir)
            if c.resume_from_checkpoint and acc.is_main_process:
                self._truncate_logs(self.global_step)
            start_trackers(acc, c, "mmr1")
            bar = tqdm(total=self.total_steps, initial=self.global_step,
                       disable=c.disable_tqdm or not acc.is_main_process, desc="GRPO", dynamic_ncols=True)
            next_save = self._next_save()
            while self.global_step < self.total_steps:
                signum = self._stop_signal_on_any_rank(guard)     # the same answer on every rank
                if signum:
                    bar.close()
                    raise self._interrupted(signum)
                self._activity = f"during step {self.global_step + 1} of {self.total_steps}"
                t0 = time.perf_counter()
                try:
                    trajectory, stats = self.rollout()
                except OSError as exc:
                    if exc.errno not in _DISK_ERRNOS:
                        raise
                    raise OutputWriteError(self._write_failure(Path(exc.filename or self.completions_path).name,
                                                               exc)) from exc
                logs = self.update(trajectory)
                stats.update(_mean_logs(logs))
                stats["nonfinite_steps"] = self.nonfinite_steps
                stats["time/step"] = time.perf_counter() - t0
                stats["step"], stats["epoch"] = self.global_step, round(self.sampler.epoch, 4)
                self.history.append(stats)
                if acc.is_main_process and (self.global_step % c.logging_steps == 0
                                            or self.global_step >= self.total_steps):
                    self._log_metrics(stats)
                bar.update(self.global_step - bar.n)
                bar.set_postfix(reward=f"{stats['reward']:.3f}", s_per_step=f"{stats['time/step']:.2f}")
                self._activity = f"after step {self.global_step} of {self.total_steps}"
                if next_save is not None and self.global_step >= next_save and self.global_step < self.total_steps:
                    self.save()
                    next_save = self._next_save()
            bar.close()
            self.save_final()
            self.stop_signal = guard.signum          # arrived after the last step: nothing was cut short
            acc.end_training()
        finally:
            guard.uninstall()
            if bar is not None:
                bar.close()
        return self.history

    def _next_save(self):
        s = self.config.save_steps
        return None if not s else (self.global_step // s + 1) * s

    def _stop_signal_on_any_rank(self, guard) -> int:
        """The stop signal any process received (0: none): every rank gets the same number, so all stop together."""
        acc = self.accelerator
        local = guard.signum or 0
        if acc.num_processes == 1:
            return local
        return int(acc.gather(torch.tensor([local], device=acc.device)).max().item())

    def _resume_spec(self, checkpoint: Path | None) -> str | None:
        """``latest`` when ``checkpoint`` is the newest in output_dir (what 'latest' finds), else its path."""
        if checkpoint is None:
            return None
        found = list_checkpoints(self.output_dir)
        return "latest" if found and found[-1].resolve() == Path(checkpoint).resolve() else str(checkpoint)

    def _interrupted(self, signum: int) -> TrainingInterrupted:
        """At a rollout boundary after a stop signal: checkpoint this step (unless one exists) and say where."""
        name, step, total = signal.Signals(signum).name, self.global_step, self.total_steps
        saved = False
        if self._last_checkpoint is not None and self._last_checkpoint[0] == step:
            path = self._last_checkpoint[1]
            message = f"interrupted by {name} at step {step} of {total}; the checkpoint {path} holds this state"
        elif step == 0:
            path = None
            message = f"interrupted by {name} before the first step; nothing was trained, nothing to save"
        else:
            path, saved = self.save(), True
            message = f"interrupted by {name} after step {step} of {total}; checkpoint written to {path}"
        self.accelerator.end_training()
        return TrainingInterrupted(signum, message, path, self._resume_spec(path), saved=saved)

    def _abort(self, signum: int) -> TrainingInterrupted:
        """A second signal: give up at once; name the last complete checkpoint (a half-written one is a temp folder)."""
        found = list_checkpoints(self.output_dir)
        path = found[-1] if found else None
        last = (f"the last complete checkpoint is {path}" if path
                else f"there is no complete checkpoint in {self.output_dir}")
        message = (f"aborted by a second {signal.Signals(signum).name} {self._activity}: nothing more was saved; "
                   f"{last}")
        return TrainingInterrupted(signum, message, path, self._resume_spec(path), aborted=True)

    def state(self) -> dict:
        return {"global_step": self.global_step, "rollout_step": self.rollout_step,
                "prompts_consumed": self.sampler.consumed, "total_steps": self.total_steps}

    def save(self):
        """Checkpoints are taken at rollout boundaries, where the data position fully describes the state.

        A stop signal arriving meanwhile waits for the checkpoint to be complete (see :class:`_SignalGuard`). An
        ``OSError`` (full disk, read-only folder) removes the half-written temp folder and raises
        :class:`OutputWriteError` on every process, naming the last complete checkpoint.
        """
        name = f"checkpoint-{self.global_step}"
        self._check_weights(name)
        before, self._activity = self._activity, f"while writing {name}"
        try:
            path = save_checkpoint(self.accelerator, self.scorer, self.processor, self.state(), self.output_dir,
                                   self.global_step, self.config.save_total_limit, any_rank=self._any_rank)
        except OSError as exc:
            raise OutputWriteError(self._write_failure(name, exc)) from exc
        finally:
            self._activity = before
        self._last_checkpoint = (self.global_step, path)
        return path

    def save_final(self) -> None:
        """``final/`` via ``.final.tmp`` renamed into place (LoRA merged); an ``OSError`` is an :class:`OutputWriteError`."""
        self._check_weights("final/")
        self._activity = "while writing final/"
        self.accelerator.wait_for_everyone()
        try:
            save_final(self.accelerator, self.scorer, self.processor, self.output_dir, merge_lora=self.config.use_peft,
                       any_rank=self._any_rank)
        except OSError as exc:
            raise OutputWriteError(self._write_failure("final/", exc)) from exc
        self._activity = "after writing final/"

    def _write_failure(self, what: str, exc: OSError) -> str:
        """One line: what could not be written where, why, the fix, and the last complete checkpoint."""
        reason = exc.strerror or str(exc)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            fix = "free space or point output_dir elsewhere"
        elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            fix = f"make {self.output_dir} writable or point output_dir elsewhere"
        else:
            fix = f"check {self.output_dir} or point output_dir elsewhere"
        found = list_checkpoints(self.output_dir)
        if found:
            last = (f"the last complete checkpoint is {found[-1]} (resume from it with resume_from_checkpoint: "
                    f"{self._resume_spec(found[-1])})")
        else:
            last = "there is no complete checkpoint" + ("" if self.config.save_steps else
                                                        " (save_steps: 0 saves only at the end)")
        return f"could not write {what} to {self.output_dir}: {reason}; {fix}; {last}"

    def _truncate_logs(self, step: int) -> None:
        """On resume: keep the log records the checkpoint accounts for, so no step is logged twice.

        metrics.jsonl keeps records with ``step <= step`` (a record is written after its step); completions.jsonl
        keeps ``step < step`` (a rollout logs the step count before its update, so the resumed run writes
        ``step`` again). Unreadable lines (a write cut by a kill) go too.
        """
        for path, keep in ((self.metrics_path, lambda s: s <= step), (self.completions_path, lambda s: s < step)):
            if not path.is_file():
                continue
            kept, dropped = [], 0
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    ok = keep(int(json.loads(line)["step"]))
                except (ValueError, KeyError, TypeError):
                    ok = False
                if ok:
                    kept.append(line + "\n")
                else:
                    dropped += 1
            if dropped:
                tmp = path.with_name(path.name + ".tmp")
                tmp.write_text("".join(kept), encoding="utf-8")
                os.replace(tmp, path)
                log.warning("%s: dropped %d record(s) past step %d, the step this run starts from", path, dropped,
                            step)

    # -- logging --------------------------------------------------------------------------------
    def _log_metrics(self, stats: dict) -> None:
        try:
            with self.metrics_path.open("a") as f:
                f.write(json.dumps(_jsonable(stats)) + "\n")
        except OSError as exc:
            raise OutputWriteError(self._write_failure(self.metrics_path.name, exc)) from exc
        if report_to(self.config):
            log_to_trackers(self.accelerator, stats, self.global_step)

    def _log_completions(self, texts, table, advantages, rows, prompt_of) -> None:
        with self.completions_path.open("a") as f:
            for n, text in enumerate(texts):
                row = rows[prompt_of[n]]
                record = {"step": self.global_step, "problem": row.get("problem"), "solution": row.get("solution"),
                          "completion": text, "advantage": float(advantages[n]),
                          "rewards": {name: _nan_none(table[n, j].item()) for j, name in enumerate(self.rewards.names)}}
                if self.rewards.extra:                                         # columns from log_extra
                    record["extra"] = {k: v[n] for k, v in self.rewards.extra.items()}
                f.write(json.dumps(_jsonable(record)) + "\n")


def _nan_none(x):
    return None if isinstance(x, float) and math.isnan(x) else x


def _jsonable(d):
    if isinstance(d, dict):
        return {k: _jsonable(v) for k, v in d.items()}
    if isinstance(d, float):
        return _nan_none(d)
    if isinstance(d, (str, int, bool)) or d is None:
        return d
    if isinstance(d, (list, tuple)):
        return [_jsonable(v) for v in d]
    return str(d)


def _mean_logs(logs: list[dict]) -> dict:
    out = {}
    keys = {k for entry in logs for k in entry if not k.startswith("_")}
    for k in keys:
        values = [entry[k] for entry in logs if k in entry and isinstance(entry[k], (int, float))]
        if values:
            out[k] = sum(values) / len(values) if not k.startswith("time/") else sum(values)
    return out


#: errno values of a write that fails for want of space or permission (turned into OutputWriteError).
_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


class _SignalGuard:
    """What SIGINT and SIGTERM do while :meth:`GRPOTrainer.train` runs (installed from the main thread only).

    * The first one asks for a stop: the handler only records it (and prints one line on the main process), so the
      rollout in progress, a checkpoint or ``final/`` being written, all finish. ``train`` checks the request at
      every rollout boundary, reduced over processes, checkpoints there and raises :class:`TrainingInterrupted`.
    * Another one, arriving more than ``repeat_window`` seconds after the first, aborts at once: the handler raises
      ``on_abort(signum)`` wherever the main thread is. Repeats within the window count as the first (``torchrun``
      forwarding a signal a scheduler also sent to every process, a key bounce).
    * Python runs handlers only between bytecodes of the main thread; if that thread is stuck in C code (say a
      collective waiting for a dead peer) a watcher thread, woken through ``signal.set_wakeup_fd``, ends the
      process with ``os._exit(128 + signal)`` ``hard_exit_after`` seconds after such a second signal.
    """

    signals = (signal.SIGINT, signal.SIGTERM)
    repeat_window = 1.0
    hard_exit_after = 5.0

    def __init__(self, on_abort, announce: bool = True, doing=lambda: ""):
        self.on_abort, self.announce, self.doing = on_abort, announce, doing
        self.signum, self.first_at = None, 0.0
        self._old, self._old_wakeup, self._pipe, self._closed = {}, None, None, threading.Event()

    def install(self) -> bool:
        if threading.current_thread() is not threading.main_thread():
            log.debug("train() is not on the main thread: SIGINT / SIGTERM keep their handlers")
            return False
        for s in self.signals:
            self._old[s] = signal.signal(s, self._handle)
        self._start_watcher()
        return True

    def uninstall(self) -> None:
        for s, old in self._old.items():
            signal.signal(s, old if old is not None else signal.SIG_DFL)
        self._old = {}
        if self._pipe is not None:
            self._closed.set()
            with contextlib.suppress(ValueError, OSError):
                signal.set_wakeup_fd(self._old_wakeup if self._old_wakeup is not None else -1)
            os.close(self._pipe[1])          # the watcher reads EOF, closes its end and returns
            self._pipe = None
            # joined, not left as a daemon: one still waking up while the interpreter finalizes is ended with
            # pthread_exit, which can abort the process ("terminate called without an active exception")
            self._thread.join(timeout=5)

    def _handle(self, signum, frame) -> None:
        now = time.monotonic()
        if self.signum is None:
            self.signum, self.first_at = signum, now
            if self.announce:
                name, doing = signal.Signals(signum).name, self.doing()
                then = ("final/ is finished, then the run ends" if "final/" in doing else
                        "the step in progress finishes, then a checkpoint is written and the run stops")
                _write_stderr(f"mmr1: {name} received {doing}: {then}; send {name} again to abort at once "
                              f"without saving\n")
            return
        if now - self.first_at < self.repeat_window:
            return
        raise self.on_abort(signum)

    def _start_watcher(self) -> None:
        r, w = os.pipe()
        os.set_blocking(w, False)
        try:
            self._old_wakeup = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        except (ValueError, OSError):
            os.close(r)
            os.close(w)
            return
        self._pipe = (r, w)
        self._thread = threading.Thread(target=self._watch, args=(r,), name="mmr1-signal-watch", daemon=True)
        self._thread.start()

    def _watch(self, r: int) -> None:
        first, deadline, last = None, None, 0
        try:
            while True:
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                ready, _, _ = select.select([r], [], [], timeout)
                if not ready:                        # the deadline passed and train() never got back
                    if self._closed.is_set():
                        return
                    _write_stderr(f"mmr1: {signal.Signals(last).name} again and the main thread is stuck: "
                                  f"exiting now without saving\n")
                    os._exit(128 + last)
                data = os.read(r, 64)
                if not data:
                    return
                for signum in data:
                    if signum not in self.signals:
                        continue
                    now = time.monotonic()
                    if first is None:
                        first = now
                    elif deadline is None and now - first >= self.repeat_window:
                        deadline, last = now + self.hard_exit_after, signum
        finally:
            os.close(r)


def _write_stderr(text: str) -> None:
    """Unbuffered, so that a signal handler never re-enters a buffered stream the main thread is writing."""
    with contextlib.suppress(OSError):
        os.write(2, text.encode("utf-8", "replace"))
