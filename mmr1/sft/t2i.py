"""SimpleAR pretrain / SFT: next-token loss on image tokens after a caption, with CFG dropout.

Every example is ``<|t2i|> prefix caption <|soi|> codes <|eoi|>`` built by
:func:`mmr1.imagegen.sequence.build_t2i_example` (``p_drop_cond`` replaces the text by
``<|t2i_uncond|>`` for classifier-free guidance; ``sample_short`` picks short or long captions);
the loss is on the visual tokens and ``<|eoi|>`` only. Data comes from the ``t2i_meta`` loader
(a meta JSON or a mixture YAML of extracted tokens).

Runs on one CPU process or under ``accelerate launch`` (DDP, DeepSpeed ZeRO-2/3, FSDP): AdamW and
a transformers scheduler from the config, gradient accumulation, gradient clipping, a tqdm bar,
``metrics.jsonl``, atomic checkpoints every ``save_steps`` (``resume_from_checkpoint`` continues
with the same data order) and the final model in ``output_dir/final``: a prepared text-to-image
folder (weights, tokenizer, ``t2i.json``) that ``mmr1 train`` and ``mmr1 generate`` load.

Config keys used: model_name_or_path, dataset (``t2i_meta``; the default ``json`` means
``t2i_meta`` here), dataset_path, dataset_kwargs, train_sample_size, prompt_prefix, p_drop_cond,
sample_short, model_max_length, image_tokenizer (recorded in ``t2i.json``), torch_dtype, bf16,
attn_implementation, gradient_checkpointing, learning_rate, lr_scheduler_type, warmup_steps,
warmup_ratio, lr_scheduler_kwargs, weight_decay, adam_beta1/2, max_grad_norm, max_steps, num_train_epochs,
per_device_train_batch_size, gradient_accumulation_steps, seed, output_dir, logging_steps,
save_steps, save_total_limit, resume_from_checkpoint, report_to, run_name, disable_tqdm.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from pathlib import Path

import torch
from torch import nn

from mmr1.config import TrainConfig

__all__ = ["T2ISFTDataset", "run_t2i_sft", "text_budget"]

log = logging.getLogger("mmr1.sft")

DEFAULT_TEXT_TOKENS = 512


def text_budget(num_visual: int, model_max_length: int | None) -> int:
    """Text tokens (prefix + caption) an example may hold: ``model_max_length - num_visual - 3``."""
    if model_max_length is None:
        return DEFAULT_TEXT_TOKENS
    budget = int(model_max_length) - int(num_visual) - 3
    if budget < 1:
        raise ValueError(
            f"model_max_length {model_max_length} leaves no room for text: an image has {num_visual} visual tokens "
            f"and the markers take 3. Set model_max_length to the visual tokens + the text budget (SimpleAR: + 512, "
            f"i.e. 1536 at 512 px and 4608 at 1024 px with a 16x tokenizer)"
        )
    return budget


class T2ISFTDataset(torch.utils.data.Dataset):
    """Training sequences from rows with ``caption`` and ``code_path``; the order is a seeded per-epoch shuffle.

    The CFG dropout and short/long choice of example ``i`` in epoch ``e`` depend only on
    ``(seed, e, i)``, so a resumed run sees the same sequences.
    """

    def __init__(self, rows, vocab, tokenizer, config: TrainConfig, shuffle: bool = True):
        self.rows = rows
        self.vocab = vocab
        self.tokenizer = tokenizer
        self.config = config
        self.shuffle = shuffle
        self.epoch = 0
        self._order = None
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        order = list(range(len(self.rows)))
        if self.shuffle:
            random.Random(self.config.seed * 1_000_003 + self.epoch).shuffle(order)
        self._order = order

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        from mmr1.imagegen.meta import load_codes
        from mmr1.imagegen.sequence import build_t2i_example

        c = self.config
        index = self._order[i]
        row = self.rows[index]
        if "code_path" not in row:
            raise ValueError(f"{row.get('_source', f'row {index}')}: no code_path; text-to-image SFT reads extracted "
                             f"tokens (dataset: t2i_meta with a meta JSON from `mmr1 tokenize`)")
        try:
            codes = load_codes(row["code_path"])
        except (OSError, ValueError) as exc:
            raise ValueError(f"{row.get('_source', f'row {index}')}: cannot read code file {row['code_path']!r}: "
                             f"{exc}") from exc
        rng = random.Random((c.seed * 1_000_003 + self.epoch) * 1_000_033 + index)
        caption = row.get("caption_entry", row["caption"]) if isinstance(row, dict) else row["caption"]
        return build_t2i_example(caption, codes, self.vocab, self.tokenizer, prompt_prefix=c.prompt_prefix,
                                 p_drop_cond=c.p_drop_cond, rng=rng,
                                 max_text_tokens=text_budget(codes.numel(), c.model_max_length),
                                 model_max_length=c.model_max_length or 10**9, sample_short=c.sample_short)


class _Collate:
    def __init__(self, pad_token_id: int):
        self.pad_token_id = int(pad_token_id)

    def __call__(self, examples):
        from mmr1.imagegen.sequence import pad_t2i_batch

        return pad_t2i_batch(examples, self.pad_token_id)


class _LM(nn.Module):
    """Holds the LM as ``.model`` (the layout mmr1's checkpoint helpers expect)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, **batch):
        return self.model(**batch)


def _load_rows(config: TrainConfig):
    from mmr1.grpo.setup import data_path
    from mmr1.plugins import get_dataset, load_plugins

    load_plugins(config.plugins, base_dir=config.config_dir)
    name = "t2i_meta" if config.dataset in ("json", None, "") else config.dataset
    loader = get_dataset(name)
    dataset = loader(path=data_path(config, config.dataset_path), **config.dataset_kwargs)
    dataset = dataset.subsample(config.train_sample_size, config.seed)
    if len(dataset) == 0:
        raise ValueError(f"dataset {name!r} ({config.dataset_path}) has no rows")
    return dataset


def run_t2i_sft(config: TrainConfig, accelerator=None) -> dict:
    """Pretrain / SFT a prepared text-to-image LM on extracted tokens (see the module doc).

    Returns ``{"final": path, "steps": n, "losses": [per optimizer step], "first_loss", "last_loss",
    "seconds"}`` (on every process; the files are written by the main process).
    """
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    from mmr1.grpo.build import (build_accelerator, build_optimizer, build_scheduler, log_to_trackers, precision,
                                  start_trackers)

    from mmr1.grpo.checkpoint import check_launch, load_checkpoint, resolve_resume, save_checkpoint, save_final
    from mmr1.imagegen.plugin import T2IAdapter

    c = config
    t_start = time.perf_counter()
    if not c.model_name_or_path:
        raise ValueError("model_name_or_path is not set: a text-to-image folder from `mmr1 prepare-t2i`")
    model_path = Path(c.model_name_or_path)
    if not model_path.is_dir():
        raise FileNotFoundError(f"model folder {str(model_path)!r} does not exist (prepare one with `mmr1 prepare-t2i`)")
    ga = max(1, int(c.gradient_accumulation_steps))
    weight_dtype = precision(c).weights
    accelerator = accelerator or build_accelerator(c, gradient_accumulation_steps=ga)
    acc = accelerator
    check_launch(acc, c, generates=False)
    set_seed(c.seed)

    processor = T2IAdapter.load_processor(str(model_path))
    tokenizer, vocab = processor.tokenizer, processor.vocab
    if c.image_tokenizer and vocab.image_tokenizer != c.image_tokenizer:
        import dataclasses

        vocab = dataclasses.replace(vocab, image_tokenizer=c.image_tokenizer)
        processor.vocab = vocab
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else vocab.eoi_id

    rows = _load_rows(c)
    dataset = T2ISFTDataset(rows, vocab, tokenizer, c)
    dataset[0]  # a bad length budget or an unreadable first row fails here, before any weights load
    per_device = int(c.per_device_train_batch_size)
    drop_last = len(dataset) >= per_device * acc.num_processes
    # Workers are re-created each epoch (not persistent), so they see the epoch's order (set_epoch).
    loader = torch.utils.data.DataLoader(dataset, batch_size=per_device, shuffle=False, drop_last=drop_last,
                                         collate_fn=_Collate(pad_id), num_workers=int(c.dataloader_num_workers))

    model = T2IAdapter.load_model(str(model_path), weight_dtype, c.attn_implementation)
    if model.get_output_embeddings().weight.shape[0] < vocab.end_visual_id:
        raise ValueError(f"{model_path}: the model has {model.get_output_embeddings().weight.shape[0]} output rows but "
                         f"t2i.json's visual tokens end at {vocab.end_visual_id - 1}")
    if c.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    wrapped = _LM(model)
    optimizer = build_optimizer(wrapped, c)
    wrapped, optimizer, loader = acc.prepare(wrapped, optimizer, loader)
    if len(loader) == 0:
        raise ValueError(f"dataset {c.dataset_path}: {len(dataset)} rows make no batch of {per_device} per process")
    steps_per_epoch = max(1, math.ceil(len(loader) / ga))
    total = c.max_steps if c.max_steps > 0 else max(1, math.ceil(c.num_train_epochs * steps_per_epoch))
    scheduler = build_scheduler(optimizer, c, total)
    acc.register_for_checkpointing(scheduler)

    out = Path(c.output_dir)
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
    step, epoch, skip = 0, 0, 0
    resume = resolve_resume(c.resume_from_checkpoint, out)
    if resume is not None:
        state = load_checkpoint(acc, resume)
        step, epoch, skip = state["global_step"], state["epoch"], state["batches_in_epoch"]
        acc.print(f"resumed from {resume} at step {step} (epoch {epoch}, batch {skip})")
    trackers = start_trackers(acc, c, "mmr1-t2i-sft")
    metrics_path = out / "metrics.jsonl"
    bar = tqdm(total=total, initial=step, desc="T2I SFT", dynamic_ncols=True,
               disable=c.disable_tqdm or not acc.is_local_main_process)
    losses: list[float] = []
    window, tokens, t_step = [], 0, time.perf_counter()
    next_save = (step // c.save_steps + 1) * c.save_steps if c.save_steps else None
    wrapped.train()
    while step < total:
        dataset.set_epoch(epoch)
        loader.set_epoch(epoch)
        batches = acc.skip_first_batches(loader, skip) if skip else loader
        seen = skip
        for batch in batches:
            seen += 1
            with acc.accumulate(wrapped):
                output = wrapped(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                 labels=batch["labels"], use_cache=False)
                loss = output.loss
                acc.backward(loss)
                grad_norm = None
                if acc.sync_gradients and c.max_grad_norm and c.max_grad_norm > 0:
                    grad_norm = acc.clip_grad_norm_(wrapped.parameters(), c.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            window.append(loss.detach().float())
            tokens += int((batch["labels"] != -100).sum())
            if not acc.sync_gradients:
                continue
            scheduler.step()
            step += 1
            mean_loss = acc.gather(torch.stack(window).mean()[None]).mean().item()
            window = []
            losses.append(mean_loss)
            now = time.perf_counter()
            stats = {"step": step, "epoch": round(epoch + seen / max(1, len(loader)), 4), "loss": mean_loss,
                     "learning_rate": scheduler.get_last_lr()[0],
                     "grad_norm": float(grad_norm) if grad_norm is not None else None,
                     "target_tokens": tokens, "time/step": now - t_step}
            tokens, t_step = 0, now
            if acc.is_main_process and (step % max(1, c.logging_steps) == 0 or step >= total):
                with metrics_path.open("a") as f:
                    f.write(json.dumps(stats) + "\n")
                if trackers:
                    log_to_trackers(acc, stats, step)
            bar.update(1)
            bar.set_postfix(loss=f"{mean_loss:.4f}")
            if next_save is not None and step >= next_save and step < total:
                state = {"global_step": step, "epoch": epoch, "batches_in_epoch": seen, "total_steps": total}
                save_checkpoint(acc, wrapped, processor, state, out, step, c.save_total_limit)
                next_save = (step // c.save_steps + 1) * c.save_steps
            if step >= total:
                break
        else:
            epoch, skip = epoch + 1, 0
            continue
        break
    bar.close()

    final = save_final(acc, wrapped, processor, out)
    acc.end_training()
    seconds = round(time.perf_counter() - t_start, 1)
    summary = {"final": str(final), "steps": step, "losses": losses,
               "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
               "seconds": seconds}
    if acc.is_main_process and losses:
        log.info("t2i SFT: %d steps, loss %.4f -> %.4f, %.0f s; model in %s", step, losses[0], losses[-1], seconds, final)
    return summary
