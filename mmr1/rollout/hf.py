"""The ``hf`` rollout backend: in-process generation with the training model.

Each unique prompt is prefilled once (its image encoded once); the KV cache is then indexed out to
the prompt's completions and decoding runs for all completions together. Under DeepSpeed ZeRO-3 the
parameters are gathered for the duration of generation.
"""

from __future__ import annotations

import contextlib

import torch

from mmr1.hookspecs import hookimpl
from mmr1.rollout.base import Rollout, RolloutBackend, SamplingParams
from mmr1.rollout.sampling import apply_repetition_penalty, make_generators, sample_tokens


@contextlib.contextmanager
def gathered_for_generation(model, accelerator):
    """Gather ZeRO-3 partitioned parameters while generating; a no-op otherwise."""
    plugin = getattr(getattr(accelerator, "state", None), "deepspeed_plugin", None) if accelerator else None
    if plugin is not None and getattr(plugin, "zero_stage", 0) == 3:
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None):
            yield
    else:
        yield


@torch.no_grad()
def decode_shared_prefix(model, adapter, prompts, prompt_index, max_tokens: int, next_token) -> None:
    """Prefill each unique prompt once, index its KV cache out to its completions, then decode.

    ``next_token(logits, t) -> (tokens, stop)`` picks the tokens fed back at step ``t`` (one per row of
    ``prompt_index``) from the rows' next-token logits; decoding ends after ``max_tokens`` or when
    ``stop`` is true. The model is in eval mode while decoding and restored afterwards.
    """
    was_training = model.training
    model.eval()
    try:
        out = adapter.prompt_forward(model, prompts, use_cache=True)
        cache = out.past_key_values
        cache.reorder_cache(prompt_index)
        logits = out.logits[prompt_index, -1, :]
        attention = prompts.attention_mask[prompt_index]
        next_position = prompts.next_position[prompt_index]
        for t in range(max_tokens):
            token, stop = next_token(logits, t)
            if stop or t == max_tokens - 1:
                break
            attention = torch.cat([attention, torch.ones_like(attention[:, :1])], 1)
            position = adapter.completion_positions(next_position + t, 1, prompts.position_ids)
            logits = model(input_ids=token[:, None], attention_mask=attention, position_ids=position,
                           past_key_values=cache, use_cache=True).logits[:, -1, :]
    finally:
        model.train(was_training)


class HFRollout(RolloutBackend):
    """Generation with the policy itself through transformers (CPU or GPU)."""

    name = "hf"

    @torch.no_grad()
    def generate(self, model, prompts, prompt_index, sampling: SamplingParams, logits_hook=None) -> Rollout:
        adapter = self.adapter
        device = prompts.input_ids.device
        n = prompt_index.shape[0]
        seeds = sampling.seeds if sampling.seeds is not None else list(range(n))
        generators = make_generators(seeds, device)
        eos = torch.tensor(adapter.eos_token_ids, device=device)
        suppressed = torch.tensor(adapter.suppressed_token_ids, dtype=torch.long, device=device)
        pad = adapter.pad_token_id
        done = torch.zeros(n, dtype=torch.bool, device=device)
        tokens: list[torch.Tensor] = []

        def next_token(logits, t):
            nonlocal done
            if logits_hook is not None:
                logits = logits_hook(logits, t)
            if sampling.repetition_penalty != 1.0 and tokens:
                logits = apply_repetition_penalty(logits, torch.stack(tokens, 1), sampling.repetition_penalty)
            if suppressed.numel():
                logits[:, suppressed] = float("-inf")
            if sampling.ignore_eos:
                logits[:, eos] = float("-inf")
            token = sample_tokens(logits, generators, sampling.temperature, sampling.top_k, sampling.top_p)
            token = torch.where(done, torch.full_like(token, pad), token)
            tokens.append(token)
            done = done | torch.isin(token, eos)
            return token, bool(done.all())

        with gathered_for_generation(model, self.accelerator):
            decode_shared_prefix(model, adapter, prompts, prompt_index, sampling.max_tokens, next_token)
        ids = torch.stack(tokens, 1)
        is_end = torch.isin(ids, eos)
        has_end = is_end.any(1)
        first_end = torch.where(has_end, is_end.float().argmax(1), torch.full_like(has_end, ids.shape[1], dtype=torch.long))
        mask = (torch.arange(ids.shape[1], device=device)[None] <= first_end[:, None]).long()
        texts = adapter.tokenizer.batch_decode(ids.masked_fill(mask == 0, pad), skip_special_tokens=True)
        return Rollout(prompt_index, ids, mask, ~has_end, texts)


@hookimpl
def register_rollout_backends(register):
    register("hf", HFRollout)
