"""Supervised fine-tuning of chat models (``mmr1 sft`` on a vision-language config): the loss is on the answer tokens.

Uses the same adapter path as GRPO scoring (the prompt, with its images, is run once; the answer tokens are scored
after it), so what SFT teaches is exactly what GRPO later samples from. The accelerator, the model (dtype, frozen
parts, LoRA, checkpointing), AdamW, the scheduler and the checkpoints are built as GRPO builds them.

Config keys used: those of the model and data groups, per_device_train_batch_size (rows per device per micro-step),
gradient_accumulation_steps, learning_rate, lr_scheduler_type, lr_scheduler_kwargs, warmup_steps, warmup_ratio,
weight_decay, adam_beta1/2, max_grad_norm, max_steps, num_train_epochs, seed, output_dir, logging_steps, save_steps,
save_total_limit, resume_from_checkpoint, report_to, run_name, disable_tqdm.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from pathlib import Path

import torch

from mmr1.config import TrainConfig
from mmr1.grpo import algorithms as algo


def answer_ids(adapter, texts: list[str], device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded token ids of answers, each followed by the end-of-turn token, and their mask."""
    end = adapter.eos_token_ids[-1]
    seqs = [adapter.tokenizer(t, add_special_tokens=False)["input_ids"] + [end] for t in texts]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), adapter.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    return ids.to(device), mask.to(device)


def sft_step(adapter, scorer, rows, template, answers: list[str], tokens=None, targets=None) -> torch.Tensor:
    """Token cross-entropy of ``answers`` (already in template form) given the rows' prompts, summed and divided by
    ``tokens`` (default: the answer tokens of this batch, i.e. the mean). ``scorer`` is a
    :class:`~mmr1.grpo.trainer.PolicyScorer`, possibly wrapped by accelerate; ``targets``: the answers'
    :func:`answer_ids`, when the caller has them already."""
    from mmr1.templates import encode_rows

    device = next(scorer.parameters()).device
    prompts = encode_rows(adapter, template, rows)[0].to(device)
    ids, mask = answer_ids(adapter, answers, device) if targets is None else (t.to(device) for t in targets)
    index = torch.arange(len(rows), device=device)
    logits = scorer(prompts, index, ids, mask)
    logp = algo.selective_log_softmax(algo.at_least_float32(logits), ids)
    return -(logp * mask).sum() / (mask.sum() if tokens is None else tokens)


class RandomBatches:
    """Rows drawn with replacement from ``Random(seed)``, then each one's answer ``answer_fn(row, rng)``.

    One optimizer step draws ``rows_per_step`` rows in one go; :meth:`take` returns them as the micro-batches of one
    process. The stream depends only on the seed and the step, so skipping ``k`` steps replays them exactly.
    """

    def __init__(self, rows, template, seed: int, answer_fn=None):
        self.rows, self.template = rows, template
        self.rng = random.Random(seed)
        self.answer_fn = answer_fn or (lambda row, _rng: row["solution"])

    def take(self, per_device: int, micro_steps: int, process: int, processes: int) -> list[tuple[list, list]]:
        """``micro_steps`` (rows, answers) pairs for ``process``: micro-step ``k`` holds global slot
        ``k * processes + process``."""
        batch = [self.rows[self.rng.randrange(len(self.rows))] for _ in range(per_device * micro_steps * processes)]
        answers = [self.template.format_answer(self.answer_fn(r, self.rng)) for r in batch]
        slots = [slice((k * processes + process) * per_device, (k * processes + process + 1) * per_device)
                 for k in range(micro_steps)]
        return [(batch[s], answers[s]) for s in slots]


def total_steps(config: TrainConfig, num_rows: int, processes: int) -> int:
    """``max_steps``, else ``num_train_epochs`` passes over the rows at the global batch per optimizer step."""
    if config.max_steps > 0:
        return config.max_steps
    per_step = config.per_device_train_batch_size * config.gradient_accumulation_steps * processes
    return max(1, math.ceil(config.num_train_epochs * num_rows / per_step))


def fit(adapter, scorer, optimizer, scheduler, accelerator, batches: RandomBatches, config: TrainConfig, steps: int,
        start: int = 0, on_step=None, progress=None) -> list[float]:
    """Optimizer steps ``start + 1 .. steps``; returns the loss of each. ``on_step(step, stats)`` runs after each.

    A step sums ``gradient_accumulation_steps`` micro-batches of ``per_device_train_batch_size`` rows per process,
    each divided by the answer tokens of the whole step (all processes), so accumulation and process count leave the
    update unchanged; then gradients are clipped to ``max_grad_norm`` (0: off) and the scheduler steps.
    """
    acc, c = accelerator, config
    ga, n = c.gradient_accumulation_steps, acc.num_processes
    for _ in range(start):
        batches.take(c.per_device_train_batch_size, ga, acc.process_index, n)
    losses = []
    scorer.train()
    steps_iter = range(start, steps)
    for step in progress(steps_iter) if progress else steps_iter:
        t0 = time.perf_counter()
        micro = batches.take(c.per_device_train_batch_size, ga, acc.process_index, n)
        targets = [answer_ids(adapter, answers, "cpu") for _, answers in micro]
        tokens = None
        if ga > 1 or n > 1:
            local = sum(int(mask.sum()) for _, mask in targets)
            tokens = acc.reduce(torch.tensor(float(local), device=acc.device), reduction="sum").item() / n
        loss_sum = 0.0
        for k, ((rows, answers), target) in enumerate(zip(micro, targets)):
            last = k == ga - 1
            sync = acc.no_sync(scorer) if not last and n > 1 else contextlib.nullcontext()
            with sync:
                loss = sft_step(adapter, scorer, rows, batches.template, answers, tokens, target)
                acc.backward(loss)
            loss_sum += loss.item()
        grad_norm = None
        if c.max_grad_norm and c.max_grad_norm > 0:
            grad_norm = acc.clip_grad_norm_(scorer.parameters(), c.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if n > 1:
            loss_sum = acc.reduce(torch.tensor(loss_sum, device=acc.device), reduction="mean").item()
        losses.append(loss_sum)
        if on_step is not None:
            on_step(step + 1, {"step": step + 1, "loss": loss_sum, "learning_rate": scheduler.get_last_lr()[0],
                               "grad_norm": float(grad_norm) if grad_norm is not None else None,
                               "time/step": time.perf_counter() - t0})
    return losses


def warm_start(adapter, model, rows, template, steps: int, batch_size: int = 16, lr: float = 1e-3,
               answer_fn=None, seed: int = 0, progress=None) -> list[float]:
    """Train ``model`` in place for ``steps`` SFT steps on random batches; ``answer_fn(row, rng)`` gives each target.

    One process, constant ``lr``, AdamW with torch's default weight decay 0.01, gradients clipped to 1.0; nothing is
    written. Returns the loss of each step.
    """
    from mmr1.grpo.build import build_accelerator, build_optimizer, build_scheduler
    from mmr1.grpo.trainer import PolicyScorer

    config = TrainConfig(per_device_train_batch_size=batch_size, learning_rate=lr, weight_decay=0.01,
                         max_grad_norm=1.0)
    acc = build_accelerator(config)
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config, steps)
    batches = RandomBatches(rows, template, seed, answer_fn)
    return fit(adapter, PolicyScorer(model, adapter), optimizer, scheduler, acc, batches, config, steps,
               progress=progress)


def run_vlm_sft(config: TrainConfig, accelerator=None) -> dict:
    """``mmr1 sft`` on a chat-model config (see the module doc): metrics.jsonl, checkpoint-N/ and final/ in output_dir.

    Returns ``{"final": path, "steps": n, "losses": [this run's steps]}`` on every process.
    """
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    from mmr1.grpo.build import (build_accelerator, build_optimizer, build_scheduler, load_policy, log_to_trackers,
                                 precision, start_trackers)
    from mmr1.grpo.checkpoint import (check_launch, load_checkpoint, remove_stale_tmp, resolve_resume,
                                      save_checkpoint, save_final)
    from mmr1.grpo.setup import prepare
    from mmr1.grpo.trainer import PolicyScorer

    c = config
    acc = accelerator or build_accelerator(c)
    check_launch(acc, c, generates=False)
    prepared = prepare(c, acc.num_processes, progress=acc.is_main_process)
    set_seed(c.seed)
    adapter_cls = prepared.adapter_cls
    processor = prepared.processor or adapter_cls.load_processor(c.model_name_or_path, c.min_pixels, c.max_pixels)
    adapter = adapter_cls(processor, c.min_pixels, c.max_pixels)
    adapter.configure(c)
    model = load_policy(adapter_cls, c, precision(c, acc.device.type == "cuda").weights)
    adapter.bind(model)
    rows = list(prepared.dataset)
    steps = total_steps(c, len(rows), acc.num_processes)
    optimizer = build_optimizer(model, c)
    scheduler = build_scheduler(optimizer, c, steps)
    scorer, optimizer, scheduler = acc.prepare(PolicyScorer(model, adapter), optimizer, scheduler)

    out = Path(c.output_dir)
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_tmp(out)
    acc.wait_for_everyone()
    start = 0
    resume = resolve_resume(c.resume_from_checkpoint, out)
    if resume is not None:
        start = load_checkpoint(acc, resume)["global_step"]
        acc.print(f"resumed from {resume} at step {start}")
    trackers = start_trackers(acc, c, "mmr1-sft")

    def on_step(step: int, stats: dict) -> None:
        if acc.is_main_process and (step % max(1, c.logging_steps) == 0 or step >= steps):
            with (out / "metrics.jsonl").open("a") as f:
                f.write(json.dumps(stats) + "\n")
            if trackers:
                log_to_trackers(acc, stats, step)
        if c.save_steps and step % c.save_steps == 0 and step < steps:
            save_checkpoint(acc, scorer, processor, {"global_step": step, "total_steps": steps}, out, step,
                            c.save_total_limit)

    def bar(steps_iter):
        return tqdm(steps_iter, total=steps, initial=start, desc="SFT", dynamic_ncols=True,
                    disable=c.disable_tqdm or not acc.is_local_main_process)

    losses = fit(adapter, scorer, optimizer, scheduler, acc, RandomBatches(rows, prepared.template, c.seed), c,
                 steps, start, on_step, bar)
    final = save_final(acc, scorer, processor, out, merge_lora=c.use_peft)
    acc.end_training()
    return {"final": str(final), "steps": steps, "losses": losses}
