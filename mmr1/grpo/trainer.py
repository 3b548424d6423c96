"""The GRPO loop: rollout -> rewards -> advantages -> optimizer passes. Read it top to bottom.

Everything that can be checked without a model (config, plugin names, batch arithmetic, data) is
checked in :func:`prepare` before any weights load.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mmr1.config import TrainConfig
from mmr1.grpo import algorithms as algo
from mmr1.grpo.batching import BatchPlan, PromptSampler, plan_batches
from mmr1.grpo.checkpoint import load_checkpoint, resolve_resume, save_checkpoint
from mmr1.grpo.rewards import RewardRunner, build_rewards, check_option_columns, dataset_columns
from mmr1.rollout.base import SamplingParams
from mmr1.rollout.sampling import completion_seed

log = logging.getLogger("mmr1.train")


class TrainingHalted(RuntimeError):
    """The run stopped itself: non-finite steps or weights, or rewards without any opinion."""


class PolicyScorer(nn.Module):
    """Wraps the policy so that one ``forward`` (both shared-prefix passes) is what DDP/DeepSpeed see."""

    def __init__(self, model, adapter):
        super().__init__()
        self.model = model
        self.adapter = adapter

    def forward(self, prompts, prompt_index, completion_ids, completion_mask, shared_prefix=True):
        return self.adapter.completion_logits(self.model, prompts, prompt_index, completion_ids,
                                              completion_mask, shared_prefix=shared_prefix)


@dataclass
class Prepared:
    """What :func:`prepare` resolved before any model loads."""

    config: TrainConfig
    plan: BatchPlan
    template: object
    rewards: list
    dataset: object
    adapter_cls: type
    backend_cls: type


def prepare(config: TrainConfig, num_processes: int = 1) -> Prepared:
    """Load plugins and resolve every name, check batch arithmetic, load the data; no weights."""
    from mmr1.models.adapters import resolve_adapter
    from mmr1.plugins import get_dataset, get_rollout_backend, load_plugins
    from mmr1.templates import resolve_template

    load_plugins(config.plugins, base_dir=config.config_dir)
    plan = plan_batches(num_processes, config.per_device_train_batch_size, config.num_generations,
                        config.gradient_accumulation_steps, config.steps_per_generation, config.num_iterations)
    template = resolve_template(config.template, config.system_prompt_template, config.question_template,
                                config.answer_template)
    rewards = build_rewards(config.rewards, config.reward_kwargs)
    backend_cls = get_rollout_backend(config.rollout_backend)
    loader = get_dataset(config.dataset)
    dataset = loader(path=_data_path(config, config.dataset_path), **config.dataset_kwargs)
    dataset = dataset.subsample(config.train_sample_size, config.seed)
    check_option_columns(rewards, dataset_columns(dataset))
    if not config.model_name_or_path:
        raise ValueError("model_name_or_path is not set (a local folder or a hub id)")
    adapter_cls = resolve_adapter(config.model_name_or_path, config.model_adapter)
    return Prepared(config, plan, template, rewards, dataset, adapter_cls, backend_cls)


def _data_path(config: TrainConfig, path: str | None) -> str | None:
    """Data paths in a config are relative to the config file's folder, like plugin paths."""
    if path is None or Path(path).is_absolute() or config.config_path is None:
        return path
    candidate = config.config_dir / path
    return str(candidate) if candidate.exists() or not Path(path).exists() else path


def _dtype(name: str, use_gpu: bool, bf16: bool | None):
    if name == "auto":
        return torch.bfloat16 if (bf16 if bf16 is not None else use_gpu) else torch.float32
    return getattr(torch, name)


def _freeze(model, config: TrainConfig) -> None:
    """Apply ``freeze_vision_tower`` / ``train_parts``."""
    names = {n for n, _ in model.named_parameters()}
    vision = {n for n in names if ".visual." in f".{n}" or "vision_tower" in n}
    projector = {n for n in vision if "merger" in n or "projector" in n}
    trainable = {
        "all": names,
        "language_model": names - vision,
        "projector": projector,
        "projector+language_model": (names - vision) | projector,
    }[config.train_parts]
    if config.freeze_vision_tower:
        trainable = trainable - (vision - projector)
    for n, p in model.named_parameters():
        p.requires_grad_(n in trainable)


def _apply_lora(model, config: TrainConfig):
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=config.lora_target_modules, task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


class GRPOTrainer:
    """Own GRPO loop on torch + accelerate (DDP, DeepSpeed and FSDP through accelerate configs)."""

    def __init__(self, config: TrainConfig, accelerator=None, prepared: Prepared | None = None):
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        self.config = c = config
        report_to = [] if c.report_to in ("none", ["none"], None) else c.report_to
        self.accelerator = accelerator or Accelerator(log_with=report_to or None, project_dir=c.output_dir)
        acc = self.accelerator
        self.prepared = prepared or prepare(c, acc.num_processes)
        self.plan, self.template = self.prepared.plan, self.prepared.template
        self.dataset = self.prepared.dataset
        self.rewards = RewardRunner(self.prepared.rewards, timeout=c.reward_timeout)
        self.reward_weights = torch.tensor(c.reward_weights or [1.0] * len(c.rewards), dtype=torch.float32)
        set_seed(c.seed)

        # -- model, reference, optimizer ------------------------------------------------------
        use_gpu = acc.device.type == "cuda"
        dtype = _dtype(c.torch_dtype, use_gpu, c.bf16)
        adapter_cls = self.prepared.adapter_cls
        processor = adapter_cls.load_processor(c.model_name_or_path, c.min_pixels, c.max_pixels)
        self.adapter = adapter_cls(processor, c.min_pixels, c.max_pixels)
        self.adapter.configure(c)
        model = adapter_cls.load_model(c.model_name_or_path, dtype, c.attn_implementation)
        self.kl_estimator = algo.resolve_kl_estimator(c.kl_approximator)
        self.full_kimi = c.kl_approximator == "fullkimi"
        self.ref_model = None
        if c.beta > 0 and not self.full_kimi and not c.use_peft:
            self.ref_model = adapter_cls.load_model(c.model_name_or_path, dtype, c.attn_implementation)
            self.ref_model.requires_grad_(False).eval().to(acc.device)
        _freeze(model, c)
        if c.use_peft:
            model = _apply_lora(model, c)
        self.shared_prefix = c.shared_prefix and not c.gradient_checkpointing
        if c.shared_prefix and c.gradient_checkpointing:
            log.warning("gradient_checkpointing disables the KV cache, so completions are scored as full "
                        "prompt+completion rows (shared_prefix off): slower updates, less activation memory")
        if c.gradient_checkpointing:
            if hasattr(model, "activation_checkpointing_enable"):        # transformers >= 5.2x
                model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.config.use_cache = False
        model.train()        # from_pretrained returns eval mode, where checkpointing (and dropout) never act
        self.adapter.bind(model)
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("no trainable parameters: check train_parts / freeze_vision_tower / use_peft")
        optimizer = torch.optim.AdamW(params, lr=c.learning_rate, betas=(c.adam_beta1, c.adam_beta2),
                                      weight_decay=c.weight_decay)
        self.total_steps = self._total_steps()
        from transformers import get_scheduler

        warmup = c.warmup_steps or math.ceil(c.warmup_ratio * self.total_steps)
        scheduler = get_scheduler(c.lr_scheduler_type, optimizer, num_warmup_steps=warmup,
                                  num_training_steps=self.total_steps)
        self.scorer, self.optimizer, self.scheduler = acc.prepare(PolicyScorer(model, self.adapter), optimizer, scheduler)
        self.processor = processor
        self.backend = self.prepared.backend_cls(self.adapter, acc, config=c)
        self.sampler = PromptSampler(len(self.dataset), c.seed)
        self.global_step, self.rollout_step = 0, 0
        self.nonfinite_steps, self._nonfinite_in_a_row, self._opinionless_in_a_row = 0, 0, 0
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

    def _encode(self, rows: list[dict], prompt_ids: list[int]):
        """PromptBatch for the given unique prompt rows (images load here, lazily)."""
        from mmr1.data import load_images

        messages, images = [], []
        for p in prompt_ids:
            row = rows[p]
            imgs = load_images(row.get("image", [])) if self.adapter.takes_images else []
            messages.append(self.template.messages(row["problem"], len(imgs)))
            images.append(imgs)
        batch = self.adapter.encode_prompts(messages, images, self.config.max_prompt_length)
        return batch.to(self.accelerator.device), messages, images

    def _reward_columns(self, rows, prompt_of, messages_of, images_of) -> dict:
        columns: dict[str, list] = {"prompts": [messages_of[p] for p in prompt_of],
                                    "images": [images_of[p] for p in prompt_of]}
        for k in sorted(dataset_columns(rows)):
            columns[k] = [rows[p].get(k) for p in prompt_of]
        return columns

    # -- one rollout ----------------------------------------------------------------------------
    def rollout(self) -> tuple[dict, dict]:
        """Generate, score and compute advantages for one rollout; returns the local buffer and its stats."""
        c, acc, plan = self.config, self.accelerator, self.plan
        G = c.num_generations
        t0 = time.perf_counter()
        row_ids = self.sampler.take(plan.prompts_per_rollout)
        rows = [self.dataset[i] for i in row_ids]
        local = plan.rank_indices(acc.process_index)               # global completion indices
        prompt_of_global = [i // G for i in local]
        unique = sorted(set(prompt_of_global))
        position = {p: k for k, p in enumerate(unique)}
        prompts, messages, images = self._encode(rows, unique)
        prompt_index = torch.tensor([position[p] for p in prompt_of_global], device=acc.device)
        temperature = self._temperature()
        seeds = [completion_seed(c.seed, self.rollout_step, i) for i in local]
        sampling = SamplingParams(temperature, c.top_p, c.top_k, c.max_completion_length,
                                  c.repetition_penalty, seeds=seeds)
        out = self.backend.generate(self.policy, prompts, prompt_index, sampling)
        t1 = time.perf_counter()

        messages_of = dict(zip(unique, messages))
        images_of = dict(zip(unique, images))
        columns = self._reward_columns(rows, prompt_of_global, messages_of, images_of)
        columns.update(out.extras)
        columns["completion_ids"] = [ids[m.bool()].tolist() for ids, m in zip(out.completion_ids, out.completion_mask)]
        table = torch.tensor(self.rewards(out.texts, **columns), dtype=torch.float32)   # (n_local, R)
        self._check_opinions()
        t2 = time.perf_counter()

        # gather every process's rewards in global completion order
        gathered = acc.gather(table.to(acc.device)).cpu()
        order = torch.tensor([i for r in range(acc.num_processes) for i in plan.rank_indices(r)])
        global_table = torch.empty_like(gathered)
        global_table[order] = gathered
        total = algo.combine_rewards(global_table, self.reward_weights) * c.reward_scale
        total[torch.isnan(global_table).all(1)] = float("nan")   # no reward had an opinion: out of the baseline
        scale = "none" if self.full_kimi else c.scale_rewards
        advantages, adv_stats = algo.group_advantages(total, G, scale, c.no_mean_for_same_reward)
        local_adv = advantages[torch.tensor(local)].to(acc.device)

        mask = out.completion_mask
        if c.mask_truncated_completions:
            mask = algo.truncation_mask(mask, out.is_truncated)
        buffer = {"prompts": prompts, "prompt_index": prompt_index, "ids": out.completion_ids,
                  "mask": mask, "advantages": local_adv, "temperature": temperature,
                  "old_logp": None, "ref_logp": None}
        need_old = c.num_iterations > 1 or plan.steps_per_generation > plan.gradient_accumulation_steps
        if need_old or self.full_kimi:
            buffer["old_logp"] = self._score_no_grad(self.scorer, buffer)
        if self.full_kimi:
            buffer["ref_logp"] = buffer["old_logp"]
        elif c.beta > 0:
            buffer["ref_logp"] = self._reference_logp(buffer)
        t3 = time.perf_counter()

        lengths = mask.sum(1).float()
        stats = {
            "reward": total.nanmean().item(),
            "reward_std": total[~torch.isnan(total)].std().item() if (~torch.isnan(total)).sum() > 1 else 0.0,
            "advantages/mean": advantages.mean().item(), "advantages/abs_mean": advantages.abs().mean().item(),
            "frac_reward_zero_std": adv_stats.get("frac_zero_std_groups", 0.0),
            "completion_length": acc.gather(lengths.to(acc.device)).float().mean().item(),
            "truncated_fraction": acc.gather(out.is_truncated.float().to(acc.device)).mean().item(),
            "temperature": temperature,
            "time/rollout": t1 - t0, "time/reward": t2 - t1, "time/reference": t3 - t2,
        }
        for j, name in enumerate(self.rewards.names):
            col = global_table[:, j]
            ok = ~torch.isnan(col)
            stats[f"rewards/{name}"] = col[ok].mean().item() if ok.any() else float("nan")
            stats[f"rewards/{name}/failures"] = self.rewards.failures[name]
        if acc.is_main_process and c.log_completions:
            self._log_completions(out.texts[: c.num_completions_to_log], table, local_adv, rows,
                                  prompt_of_global)
        self.rollout_step += 1
        return buffer, stats

    @torch.no_grad()
    def _score_no_grad(self, scorer, buffer) -> torch.Tensor:
        chunks = []
        for s in range(self.plan.steps_per_generation):
            sl = self._micro_slice(s)
            logits = scorer(buffer["prompts"], buffer["prompt_index"][sl], buffer["ids"][sl],
                            buffer["mask"][sl], shared_prefix=self.shared_prefix)
            chunks.append(algo.selective_log_softmax(algo.at_least_float32(logits) / buffer["temperature"], buffer["ids"][sl]))
        return torch.cat(chunks)

    @torch.no_grad()
    def _reference_logp(self, buffer) -> torch.Tensor:
        if self.ref_model is not None:
            return self._score_no_grad(PolicyScorer(self.ref_model, self.adapter), buffer)
        with self.policy.disable_adapter():                  # LoRA: the base model is the reference
            return self._score_no_grad(self.scorer, buffer)

    def _micro_slice(self, micro_step: int) -> slice:
        n = self.plan.per_device
        return slice(micro_step * n, (micro_step + 1) * n)

    # -- optimisation ---------------------------------------------------------------------------
    def _token_normalisers(self, buffer) -> list[float]:
        """dapo: completion tokens of each optimizer step over all processes, divided by num_processes."""
        acc, plan = self.accelerator, self.plan
        per_micro = torch.stack([buffer["mask"][self._micro_slice(s)].sum() for s in range(plan.steps_per_generation)])
        per_micro = acc.reduce(per_micro.float().to(acc.device), reduction="sum").cpu()
        ga = plan.gradient_accumulation_steps
        per_step = per_micro.view(-1, ga).sum(1)
        return [max(float(x), 1.0) / acc.num_processes for x in per_step]

    def update(self, buffer) -> list[dict]:
        """``num_iterations`` passes over the rollout; an optimizer step every GA micro-steps."""
        c, acc, plan = self.config, self.accelerator, self.plan
        ga = plan.gradient_accumulation_steps
        normalisers = self._token_normalisers(buffer)
        logs, window_finite = [], True
        for _ in range(c.num_iterations):
            for s in range(plan.steps_per_generation):
                sl = self._micro_slice(s)
                last = (s + 1) % ga == 0
                t0 = time.perf_counter()
                context = acc.no_sync(self.scorer) if not last and acc.num_processes > 1 else contextlib.nullcontext()
                with context:
                    logits = self.scorer(buffer["prompts"], buffer["prompt_index"][sl], buffer["ids"][sl],
                                         buffer["mask"][sl], shared_prefix=self.shared_prefix)
                    logits = algo.at_least_float32(logits) / buffer["temperature"]
                    ids, mask = buffer["ids"][sl], buffer["mask"][sl]
                    logp = algo.selective_log_softmax(logits, ids)
                    entropy = algo.entropy_from_logits(logits if c.entropy_weight else logits.detach())
                    loss, metrics = algo.policy_loss(
                        logp, None if buffer["old_logp"] is None else buffer["old_logp"][sl],
                        buffer["advantages"][sl], mask, c.loss_type, c.epsilon, c.epsilon_high,
                        c.importance_sampling_level,
                        None if buffer["ref_logp"] is None else buffer["ref_logp"][sl],
                        c.beta, self.kl_estimator, entropy, c.entropy_weight, c.max_completion_length,
                        normalisers[s // ga] if c.loss_type == "dapo" else None, c.delta)
                    if c.loss_type != "dapo":
                        loss = loss / ga
                    acc.backward(loss)
                metrics.update(loss=loss.item() * (1 if c.loss_type == "dapo" else ga),
                               **{"time/update": time.perf_counter() - t0})
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
        """Stop after ``max_nonfinite_steps`` rollouts in a row where every reward call failed."""
        if not self._any_rank(not self.rewards.last_all_failed):
            self._opinionless_in_a_row += 1
        else:
            self._opinionless_in_a_row = 0
        if self._opinionless_in_a_row >= self.config.max_nonfinite_steps:
            raise TrainingHalted(
                f"no reward gave an opinion: the run cannot learn. In {self._opinionless_in_a_row} rollouts in a "
                f"row (max_nonfinite_steps={self.config.max_nonfinite_steps}) every call of every reward "
                f"({', '.join(self.rewards.names)}) failed; see the warnings of the mmr1.rewards logger above")

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
    def train(self) -> list[dict]:
        from tqdm.auto import tqdm

        c, acc = self.config, self.accelerator
        self.output_dir.mkdir(parents=True, exist_ok=True)
        resume = resolve_resume(c.resume_from_checkpoint, c.output_dir)
        if resume is not None:
            state = load_checkpoint(acc, resume)
            self.global_step, self.rollout_step = state["global_step"], state["rollout_step"]
            self.sampler.consumed = state["prompts_consumed"]
            acc.print(f"resumed from {resume} at step {self.global_step}")
        if acc.is_main_process and c.report_to not in ("none", ["none"]):
            acc.init_trackers(c.run_name or "mmr1", config={k: v for k, v in c.to_dict().items()
                                                            if isinstance(v, (int, float, str, bool))})
        bar = tqdm(total=self.total_steps, initial=self.global_step, disable=c.disable_tqdm or not acc.is_main_process,
                   desc="GRPO", dynamic_ncols=True)
        next_save = self._next_save()
        while self.global_step < self.total_steps:
            t0 = time.perf_counter()
            buffer, stats = self.rollout()
            logs = self.update(buffer)
            stats.update(_mean_logs(logs))
            stats["nonfinite_steps"] = self.nonfinite_steps
            stats["time/step"] = time.perf_counter() - t0
            stats["step"], stats["epoch"] = self.global_step, round(self.sampler.epoch, 4)
            self.history.append(stats)
            if acc.is_main_process and (self.global_step % c.logging_steps == 0 or self.global_step >= self.total_steps):
                self._log_metrics(stats)
            bar.update(self.global_step - bar.n)
            bar.set_postfix(reward=f"{stats['reward']:.3f}", s_per_step=f"{stats['time/step']:.2f}")
            if next_save is not None and self.global_step >= next_save and self.global_step < self.total_steps:
                self.save()
                next_save = self._next_save()
        bar.close()
        self.save_final()
        acc.end_training()
        return self.history

    def _next_save(self):
        s = self.config.save_steps
        return None if not s else (self.global_step // s + 1) * s

    def state(self) -> dict:
        return {"global_step": self.global_step, "rollout_step": self.rollout_step,
                "prompts_consumed": self.sampler.consumed, "total_steps": self.total_steps}

    def save(self):
        """Checkpoints are taken at rollout boundaries, where the data position fully describes the state."""
        self._check_weights(f"checkpoint-{self.global_step}")
        return save_checkpoint(self.accelerator, self.scorer, self.processor, self.state(), self.output_dir,
                               self.global_step, self.config.save_total_limit)

    def save_final(self) -> None:
        acc = self.accelerator
        self._check_weights("final/")
        acc.wait_for_everyone()
        if acc.is_main_process:
            final = self.output_dir / "final"
            tmp = self.output_dir / ".final.tmp"
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
            model = self.policy
            if self.config.use_peft:
                model = model.merge_and_unload()
            model.save_pretrained(tmp, safe_serialization=True)
            self.processor.save_pretrained(tmp)
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
        acc.wait_for_everyone()

    # -- logging --------------------------------------------------------------------------------
    def _log_metrics(self, stats: dict) -> None:
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(_jsonable(stats)) + "\n")
        if self.config.report_to not in ("none", ["none"]):
            self.accelerator.log({k: v for k, v in stats.items() if isinstance(v, (int, float))}, step=self.global_step)

    def _log_completions(self, texts, table, advantages, rows, prompt_of) -> None:
        with self.completions_path.open("a") as f:
            for n, text in enumerate(texts):
                row = rows[prompt_of[n]]
                record = {"step": self.global_step, "problem": row.get("problem"), "solution": row.get("solution"),
                          "completion": text, "advantage": float(advantages[n]),
                          "rewards": {name: _nan_none(table[n, j].item()) for j, name in enumerate(self.rewards.names)}}
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
