"""Evaluation: greedy (or sampled) completions on a data set, scored by rewards.

The completions come from a rollout backend (``hf`` by default; ``t2i`` for text-to-image models,
whose ``generated_images`` reach the rewards as in training and can be written to disk).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from mmr1.grpo.rewards import RewardRunner, reward_columns
from mmr1.rollout.base import SamplingParams
from mmr1.rollout.hf import HFRollout
from mmr1.templates import encode_rows


@torch.no_grad()
def evaluate(adapter, model, rows, template, runner: RewardRunner, max_new_tokens: int = 32,
             batch_size: int = 16, temperature: float = 0.0, device=None, progress=None, backend=None,
             image_dir: str | Path | None = None) -> dict:
    """Mean of each reward over ``rows`` (one completion per row); returns means and the completions.

    ``backend`` is a rollout backend instance (default: the ``hf`` one). Images a backend returns
    (``generated_images``) are scored and, with ``image_dir``, saved as ``NNNNNN.png`` with their
    path in the record.
    """
    device = device or next(model.parameters()).device
    backend = backend or HFRollout(adapter)
    if image_dir is not None:
        Path(image_dir).mkdir(parents=True, exist_ok=True)
    sums = [0.0] * len(runner.names)
    counts = [0] * len(runner.names)
    records = []
    batches = range(0, len(rows), batch_size)
    for start in (progress(batches) if progress else batches):
        chunk = rows[start:start + batch_size]
        prompts, messages, images = encode_rows(adapter, template, chunk)
        prompts = prompts.to(device)
        index = torch.arange(len(chunk), device=device)
        out = backend.generate(model, prompts, index, SamplingParams(temperature, max_tokens=max_new_tokens,
                                                                     seeds=list(range(start, start + len(chunk)))))
        columns = reward_columns(adapter, chunk, prompts, messages, images, range(len(chunk)), out)
        table = runner(out.texts, **columns)
        generated = out.extras.get("generated_images")
        for i, (row, text, scores) in enumerate(zip(chunk, out.texts, table)):
            for j, v in enumerate(scores):
                if not math.isnan(v):
                    sums[j] += v
                    counts[j] += 1
            record = {"problem": row["problem"], "solution": row.get("solution"), "completion": text,
                      "rewards": dict(zip(runner.names, scores))}
            if generated is not None and image_dir is not None and generated[i] is not None:
                path = Path(image_dir) / f"{start + i:06d}.png"
                generated[i].save(path)
                record["image"] = str(path)
            records.append(record)
    means = {name: (sums[j] / counts[j] if counts[j] else float("nan")) for j, name in enumerate(runner.names)}
    return {"means": means, "records": records}
