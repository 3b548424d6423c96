"""Supervised warm start for chat models: the loss is on the answer tokens only.

Uses the same adapter path as GRPO scoring (the prompt, with its images, is run once; the answer
tokens are scored after it), so what SFT teaches is exactly what GRPO later samples from.
"""

from __future__ import annotations

import random

import torch

from mmr1.data import load_images
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


def sft_step(adapter, model, rows, template, answers: list[str]) -> torch.Tensor:
    """Mean token cross-entropy of ``answers`` (already in template form) given the rows' prompts."""
    device = next(model.parameters()).device
    images = [load_images(r.get("image", [])) if adapter.takes_images else [] for r in rows]
    from mmr1.templates import row_messages
    messages = [row_messages(template, r, len(im)) for r, im in zip(rows, images)]
    prompts = adapter.encode_prompts(messages, images).to(device)
    ids, mask = answer_ids(adapter, answers, device)
    index = torch.arange(len(rows), device=device)
    logits = adapter.completion_logits(model, prompts, index, ids, mask, shared_prefix=True)
    logp = algo.selective_log_softmax(logits.float(), ids)
    return -(logp * mask).sum() / mask.sum()


def warm_start(adapter, model, rows, template, steps: int, batch_size: int = 16, lr: float = 1e-3,
               answer_fn=None, seed: int = 0, progress=None) -> list[float]:
    """Train ``steps`` SFT steps on random batches; ``answer_fn(row, rng)`` gives each target answer."""
    rng = random.Random(seed)
    answer_fn = answer_fn or (lambda row, _rng: row["solution"])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    losses = []
    steps_iter = range(steps)
    for _ in progress(steps_iter) if progress else steps_iter:
        batch = [rows[rng.randrange(len(rows))] for _ in range(batch_size)]
        answers = [template.format_answer(answer_fn(r, rng)) for r in batch]
        loss = sft_step(adapter, model, batch, template, answers)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses
