"""Evaluation: greedy (or sampled) completions on a data set, scored by rewards."""

from __future__ import annotations

import math

import torch

from mmr1.data import load_images
from mmr1.grpo.rewards import RewardRunner
from mmr1.rollout.base import SamplingParams
from mmr1.rollout.hf import HFRollout


@torch.no_grad()
def evaluate(adapter, model, rows, template, runner: RewardRunner, max_new_tokens: int = 32,
             batch_size: int = 16, temperature: float = 0.0, device=None, progress=None) -> dict:
    """Mean of each reward over ``rows`` (one completion per row); returns means and the completions."""
    device = device or next(model.parameters()).device
    backend = HFRollout(adapter)
    sums = [0.0] * len(runner.names)
    counts = [0] * len(runner.names)
    records = []
    batches = range(0, len(rows), batch_size)
    for start in (progress(batches) if progress else batches):
        chunk = rows[start:start + batch_size]
        images = [load_images(r.get("image", [])) if adapter.takes_images else [] for r in chunk]
        messages = [template.messages(r["problem"], len(im)) for r, im in zip(chunk, images)]
        prompts = adapter.encode_prompts(messages, images).to(device)
        index = torch.arange(len(chunk), device=device)
        out = backend.generate(model, prompts, index, SamplingParams(temperature, max_tokens=max_new_tokens,
                                                                     seeds=list(range(start, start + len(chunk)))))
        columns = {"prompts": messages, "images": images}
        for key in {k for r in chunk for k in r if k not in ("image", "_source")}:
            columns[key] = [r.get(key) for r in chunk]
        table = runner(out.texts, **columns)
        for row, text, scores in zip(chunk, out.texts, table):
            for j, v in enumerate(scores):
                if not math.isnan(v):
                    sums[j] += v
                    counts[j] += 1
            records.append({"problem": row["problem"], "solution": row.get("solution"), "completion": text,
                            "rewards": dict(zip(runner.names, scores))})
    means = {name: (sums[j] / counts[j] if counts[j] else float("nan")) for j, name in enumerate(runner.names)}
    return {"means": means, "records": records}
