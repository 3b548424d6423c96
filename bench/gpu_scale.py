"""mmr1's GRPO trainer at real Qwen2.5-VL-3B size on one GPU (random weights, built offline).

    python bench/gpu_scale.py [--out DIR] [--steps 3] [--warmup 1] [--configs shared,full,gc]

The model is a Qwen2.5-VL with the 3B checkpoint's shapes, built from config with random weights in
bfloat16 directly on the GPU (text: hidden 2048, 36 layers, 16 heads, 2 kv heads, intermediate 11008,
vocab 151936, tied embeddings, m-rope sections [16, 24, 24]; vision: depth 32, hidden 1280,
intermediate 3420, 16 heads, out_hidden 2048, window 112 px with full attention in blocks 7/15/23/31).
The tokenizer is trained offline (``mmr1.fixtures.tokenizers.train_tokenizer``, about 1.5k ids); embedding rows
beyond it exist but are never sampled. The processor is ``mmr1.models.processors.build_vl_processor``.

Parts, each in its own subprocess (clean CUDA memory figures; an out-of-memory error ends only that part):

- ``logits``: shared-prefix against full-row scoring of 16 completions (2 prompts x 8, 448 px images,
  128 completion tokens, 3 completions ending early and padded) on the real-size model, no grad. bf16
  differences are reported next to a float32 reference (the same weights cast up), so bf16 rounding can be
  told apart from a real mismatch.
- ``train`` (one per config): mmr1's ``GRPOTrainer`` for ``--warmup`` + ``--steps`` steps: 448 px images,
  8 completions a prompt, 16 a step, exactly 128 completion tokens (ignore_eos), beta 0, AdamW on the
  bf16 weights, lr 1e-6. Configs: ``shared`` (shared_prefix true, no gradient checkpointing), ``full``
  (shared_prefix false, no checkpointing), ``gc`` (gradient checkpointing on, which makes mmr1 score full
  rows). Reported: seconds a step and per phase (rollout = prompt encoding + generation + rewards;
  update = scoring with grad + backward + optimizer step), completion tokens a second, the peak of
  ``torch.cuda.max_memory_allocated`` over the run and within the update phase.

Bench-only adjustments (nothing in mmr1 changes): the trainer has no config key for ``ignore_eos``, so
the trainer's ``backend.generate`` is wrapped to pass ``ignore_eos=True`` and a ``logits_hook`` that puts
-inf on ids the tokenizer does not have (>= len(tokenizer)) and on the image/video pad tokens (as trl's
``suppress_tokens`` does); the model loader is patched to return the random model built in memory
(no 7.5 GB checkpoint written and read); the final ``save_final`` of the trainer is skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:           # run from a checkout without installing mmr1
    sys.path.insert(0, str(REPO))
RESULT_MARK = "@@GPU_RESULT@@ "
QWEN25_VL_3B = {
    "text": dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
                 num_key_value_heads=2, vocab_size=151936, max_position_embeddings=128000,
                 max_window_layers=70, rms_norm_eps=1e-6, use_sliding_window=False, sliding_window=32768,
                 hidden_act="silu", tie_word_embeddings=True, use_cache=True,
                 rope_parameters={"rope_type": "default", "rope_theta": 1000000.0,
                                  "mrope_section": [16, 24, 24]}),
    "vision": dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, hidden_act="silu",
                   in_channels=3, out_hidden_size=2048, patch_size=14, spatial_merge_size=2,
                   temporal_patch_size=2, window_size=112, fullatt_block_indexes=[7, 15, 23, 31],
                   tokens_per_second=2),
}

# --tiny: the same script end to end on a small model (a CPU dry run before spending GPU time)
TINY = {
    "text": dict(QWEN25_VL_3B["text"], hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, vocab_size=4000,
                 rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [4, 6, 6]}),
    "vision": dict(QWEN25_VL_3B["vision"], depth=2, hidden_size=64, intermediate_size=128, num_heads=2,
                   out_hidden_size=128, fullatt_block_indexes=[1]),
}
CUDA = None


def _cuda() -> bool:
    global CUDA
    if CUDA is None:
        import torch

        CUDA = torch.cuda.is_available()
    return CUDA


def _sync():
    import torch

    if _cuda():
        torch.cuda.synchronize()


def _reset_peak():
    import torch

    if _cuda():
        torch.cuda.reset_peak_memory_stats()


def _allocated() -> int:
    import torch

    return torch.cuda.memory_allocated() if _cuda() else 0


def _peak() -> int:
    import torch

    return torch.cuda.max_memory_allocated() if _cuda() else 0


# -- workspace: config + tokenizer + processor + data (no weights) ----------------------------------

def build_workspace(root: Path, image_size: int, n_rows: int, seed: int, shapes: dict) -> dict:
    from transformers import Qwen2_5_VLConfig

    from mmr1.fixtures.corpora import default_corpus
    from mmr1.fixtures.shapes import VL_COLORS, shapes_image
    from mmr1.fixtures.tokenizers import QWEN_SPECIAL_TOKENS, train_tokenizer
    from mmr1.models.processors import build_vl_processor

    model_dir = root / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(default_corpus(), vocab_size=2000)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    text = dict(shapes["text"], bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                pad_token_id=ids["<|endoftext|>"])
    config = Qwen2_5_VLConfig(text_config=text, vision_config=dict(shapes["vision"]),
                              image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                              vision_start_token_id=ids["<|vision_start|>"],
                              vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=True)
    config.eos_token_id = ids["<|im_end|>"]
    config.pad_token_id = ids["<|endoftext|>"]
    config.save_pretrained(model_dir)
    processor = build_vl_processor(tokenizer, family="qwen2_5_vl", patch_size=14, merge_size=2,
                                   temporal_patch_size=2)
    processor.save_pretrained(model_dir)
    if not (model_dir / "preprocessor_config.json").exists():
        processor.image_processor.save_pretrained(model_dir)

    img_dir = root / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n_rows):
        rng = random.Random(f"{seed}-{i}")
        colour = rng.choice(list(VL_COLORS)[:4])
        path = img_dir / f"{i:04d}.png"
        shapes_image(rng, image_size, colour, 1).save(path)
        rows.append({"problem": "What colour is the shape?", "solution": colour, "image": [str(path)]})
    data = root / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"model": str(model_dir), "data": str(data)}


def random_model(path: str, seed: int):
    """The 3B-shaped Qwen2.5-VL with random weights, bf16, built on the GPU."""
    import torch
    from transformers import AutoConfig, Qwen2_5_VLForConditionalGeneration

    config = AutoConfig.from_pretrained(path)
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("cuda" if _cuda() else "cpu"):
            model = Qwen2_5_VLForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
    return model   # parameters bf16; rotary inv_freq buffers stay float32 as from_pretrained leaves them


def length_reward(completions, **kwargs):
    return [len(c) / 100.0 for c in completions]


def _banned_ids(tokenizer, vocab_size: int):
    """Ids the rollout must not sample: beyond the tokenizer, and the image/video pad tokens."""
    specials = [tokenizer.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>")]
    return len(tokenizer), [i for i in specials if isinstance(i, int)]


def _gb(n_bytes: float) -> float:
    return round(n_bytes / 2**30, 2)


# -- part 1: shared-prefix vs full-row logits ------------------------------------------------------

def run_logits(args) -> dict:
    import torch

    from mmr1.data import load_images
    from mmr1.grpo.algorithms import selective_log_softmax
    from mmr1.models.qwen_vl import QwenVLAdapter
    from mmr1.templates import resolve_template

    model = random_model(args.model, args.seed).eval()
    processor = QwenVLAdapter.load_processor(args.model)
    adapter = QwenVLAdapter(processor)
    adapter.bind(model)
    template = resolve_template("default", None, None, None)
    rows = [json.loads(line) for line in Path(args.data).read_text().splitlines()[:2]]
    messages = [template.messages(r["problem"], 1) for r in rows]
    images = [load_images(r["image"]) for r in rows]
    device = "cuda" if _cuda() else "cpu"
    prompts = adapter.encode_prompts(messages, images).to(device)
    G, T = 8, args.completion_length
    prompt_index = torch.arange(2, device=device).repeat_interleave(G)
    gen = torch.Generator().manual_seed(args.seed)
    vocab = len(adapter.tokenizer)
    ids = torch.randint(20, vocab, (2 * G, T), generator=gen)       # ordinary tokens (specials come first)
    mask = torch.ones_like(ids)
    eos = adapter.eos_token_ids[0]
    for row, end in ((3, T * 3 // 10), (9, T * 8 // 10), (14, 1)):    # three completions end early, padded
        ids[row, end] = eos
        ids[row, end + 1:] = adapter.pad_token_id
        mask[row, end + 1:] = 0
    ids, mask = ids.to(device), mask.to(device)
    valid = mask.bool()

    def score(shared: bool):
        _sync()
        _reset_peak()
        base = _allocated()
        t0 = time.perf_counter()
        with torch.no_grad():
            logits = adapter.completion_logits(model, prompts, prompt_index, ids, mask, shared_prefix=shared)
            logits = logits.float()
            logp = selective_log_softmax(logits, ids)
        _sync()
        info = {"seconds": time.perf_counter() - t0, "peak_extra_gb": _gb(_peak() - base)}
        return logits, logp, info

    out = {"prompt_tokens": int(prompts.attention_mask.sum(1).max()), "completions": 2 * G,
           "completion_tokens": T, "padded_rows": 3}
    score(True)                                                       # warm-up (kernels, allocator)
    sp, sp_lp, out["bf16_shared_prefix"] = score(True)
    fr, fr_lp, out["bf16_full_rows"] = score(False)
    out["bf16_max_abs_logit_diff_shared_vs_full"] = (sp - fr).abs()[valid].max().item()
    out["bf16_max_abs_logprob_diff_shared_vs_full"] = (sp_lp - fr_lp).abs()[valid].max().item()
    out["bf16_mean_abs_logprob_diff_shared_vs_full"] = (sp_lp - fr_lp).abs()[valid].mean().item()
    out["max_abs_logit"] = fr.abs()[valid].max().item()
    out["argmax_agreement_shared_vs_full"] = (sp.argmax(-1) == fr.argmax(-1))[valid].float().mean().item()
    del sp, fr
    if _cuda():
        torch.cuda.empty_cache()
    model.float()
    sp32, sp32_lp, out["fp32_shared_prefix"] = score(True)
    fr32, fr32_lp, out["fp32_full_rows"] = score(False)
    out["fp32_max_abs_logit_diff_shared_vs_full"] = (sp32 - fr32).abs()[valid].max().item()
    out["fp32_max_abs_logprob_diff_shared_vs_full"] = (sp32_lp - fr32_lp).abs()[valid].max().item()
    out["bf16_shared_vs_fp32_max_abs_logprob_diff"] = (sp_lp - fr32_lp).abs()[valid].max().item()
    out["bf16_full_vs_fp32_max_abs_logprob_diff"] = (fr_lp - fr32_lp).abs()[valid].max().item()
    out["bf16_shared_vs_fp32_mean_abs_logprob_diff"] = (sp_lp - fr32_lp).abs()[valid].mean().item()
    out["bf16_full_vs_fp32_mean_abs_logprob_diff"] = (fr_lp - fr32_lp).abs()[valid].mean().item()
    return out


# -- part 2: the trainer ---------------------------------------------------------------------------

def run_train(args) -> dict:
    import dataclasses
    import types

    import torch

    import mmr1
    from mmr1.config import build_config
    from mmr1.grpo.trainer import GRPOTrainer
    from mmr1.models.qwen_vl import QwenVLAdapter
    from mmr1.plugins import get_plugin_manager

    plugin = types.ModuleType("bench_gpu_rewards")

    @mmr1.hookimpl
    def register_rewards(register):
        register("bench_length", length_reward)

    plugin.register_rewards = register_rewards
    get_plugin_manager().add_module(plugin, plugin_name="bench_gpu")

    t_build = time.perf_counter()
    model = random_model(args.model, args.seed)
    n_params = sum(p.numel() for p in model.parameters())
    build_s = time.perf_counter() - t_build
    QwenVLAdapter.load_model = classmethod(lambda cls, path, dtype=None, attn_implementation=None: model)

    kind, _, micro = args.config.partition("@")
    micro = int(micro or 16)                       # completions per micro-step; 16 per optimizer step
    shared = kind == "shared"
    gc = kind == "gc"
    total = args.warmup + args.steps
    config = build_config({
        "model_name_or_path": args.model, "torch_dtype": "bfloat16", "bf16": True,
        "dataset": "json", "dataset_path": args.data, "template": "default", "rewards": ["bench_length"],
        "num_generations": 8, "per_device_train_batch_size": micro, "gradient_accumulation_steps": 16 // micro,
        "max_completion_length": args.completion_length, "temperature": 1.0, "beta": 0.0,
        "loss_type": "dapo", "learning_rate": 1e-6, "max_steps": total, "shared_prefix": shared,
        "gradient_checkpointing": gc, "output_dir": str(Path(args.out_dir) / args.config),
        "log_completions": False, "disable_tqdm": True, "seed": args.seed, "report_to": "none",
    }, where="bench/gpu_scale.py")
    trainer = GRPOTrainer(config)
    trainer.save_final = lambda: None
    vocab, banned = _banned_ids(trainer.adapter.tokenizer, model.config.text_config.vocab_size)

    def hook(logits, t):
        logits[:, vocab:] = float("-inf")
        logits[:, banned] = float("-inf")
        return logits

    generate = trainer.backend.generate

    def generate_exact(model_, prompts, prompt_index, sampling, *a, **k):
        return generate(model_, prompts, prompt_index, dataclasses.replace(sampling, ignore_eos=True),
                        logits_hook=hook)

    trainer.backend.generate = generate_exact
    steps = []
    rollout, update = trainer.rollout, trainer.update

    def timed_rollout():
        _sync()
        _reset_peak()
        t0 = time.perf_counter()
        buffer, stats = rollout()
        _sync()
        steps.append({"rollout_s": time.perf_counter() - t0, "rollout_peak_gb": _gb(_peak()),
                      "completion_tokens": int(buffer.completion_mask.sum()),
                      "completion_len_min_max": [int(buffer.completion_mask.sum(1).min()), int(buffer.completion_mask.sum(1).max())],
                      "prompt_tokens": int(buffer.prompts.attention_mask.sum(1).max())})
        return buffer, stats

    def timed_update(buffer):
        _sync()
        _reset_peak()
        base = _allocated()
        t0 = time.perf_counter()
        logs = update(buffer)
        _sync()
        s = steps[-1]
        s.update(update_s=time.perf_counter() - t0, update_peak_gb=_gb(_peak()),
                 update_extra_gb=_gb(_peak() - base), allocated_before_update_gb=_gb(base))
        s["step_s"] = s["rollout_s"] + s["update_s"]
        return logs

    trainer.rollout, trainer.update = timed_rollout, timed_update
    error = None
    try:
        trainer.train()
    except torch.cuda.OutOfMemoryError as exc:
        error = f"CUDA out of memory: {str(exc).splitlines()[0]}"
    timed = [s for s in steps[args.warmup:] if "step_s" in s]
    med = (lambda k: statistics.median(s[k] for s in timed)) if timed else (lambda k: None)
    out = {"config": args.config, "shared_prefix": trainer.shared_prefix, "gradient_checkpointing": gc,
           "per_device_train_batch_size": micro, "gradient_accumulation_steps": 16 // micro,
           "alloc_conf": os.environ.get("PYTORCH_CUDA_ALLOC_CONF"),
           "parameters": n_params, "model_build_s": build_s, "steps": steps, "timed_steps": len(timed),
           "error": error, "attn_implementation": getattr(model.config, "_attn_implementation", None)}
    if timed:
        tokens = statistics.median(s["completion_tokens"] for s in timed)
        out.update(median_step_s=med("step_s"), median_rollout_s=med("rollout_s"), median_update_s=med("update_s"),
                   completion_tokens_per_step=tokens, completion_tokens_per_s=tokens / med("step_s"),
                   generation_tokens_per_s=tokens / med("rollout_s"),
                   peak_gb=max(max(s["rollout_peak_gb"], s.get("update_peak_gb", 0)) for s in steps),
                   update_peak_gb=max(s["update_peak_gb"] for s in timed),
                   update_extra_gb=max(s["update_extra_gb"] for s in timed))
    return out


# -- parent ----------------------------------------------------------------------------------------

def run_child(part: str, args, ws: dict, extra: list[str], timeout: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", part, "--model", ws["model"],
           "--data", ws["data"], "--out-dir", str(Path(args.work) / "runs"), "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--completion-length", str(args.completion_length),
           "--seed", str(args.seed), *extra]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        return {"error": f"timed out after {timeout:.0f} s", "stderr_tail": (exc.stderr or "")[-3000:]
                if isinstance(exc.stderr, str) else ""}
    result = None
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            result = json.loads(line[len(RESULT_MARK):])
    if result is None:
        result = {"error": f"exit {proc.returncode}", "stderr_tail": proc.stderr[-6000:]}
    result["process_wall_s"] = time.perf_counter() - t0
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.environ.get("OUT", "bench/results"), help="where results go")
    p.add_argument("--work", default="/tmp/mmr1-gpu-scale", help="scratch folder (config, processor, images)")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--image-size", type=int, default=448)
    p.add_argument("--completion-length", type=int, default=128)
    p.add_argument("--configs", default="shared,full,gc",
                   help="shared | full | gc, optionally @8 for 8 completions a micro-step (2 accumulated)")
    p.add_argument("--tag", default="", help="suffix of the result file name")
    p.add_argument("--skip-logits", action="store_true")
    p.add_argument("--tiny", action="store_true", help="small shapes (a CPU dry run of the script)")
    p.add_argument("--budget", type=float, default=540, help="seconds for all parts together")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--child", choices=("logits", "train"), help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--out-dir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.child:
        result = run_logits(args) if args.child == "logits" else run_train(args)
        print(RESULT_MARK + json.dumps(result), flush=True)
        return 0

    start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ws = build_workspace(Path(args.work), args.image_size, 32, args.seed, TINY if args.tiny else QWEN25_VL_3B)
    import torch
    import transformers

    report = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
              "shapes": "tiny" if args.tiny else "Qwen2.5-VL-3B",
              "versions": {"torch": torch.__version__, "cuda": torch.version.cuda,
                           "transformers": transformers.__version__},
              "image_size": args.image_size, "completion_length": args.completion_length,
              "warmup": args.warmup, "steps": args.steps, "parts": {}}
    print(f"workspace ready in {time.perf_counter() - start:.1f} s; device {report['device']}", flush=True)

    parts = [] if args.skip_logits else [("logits", [])]
    parts += [(f"train:{c}", ["--config", c]) for c in args.configs.split(",") if c]
    for name, extra in parts:
        left = args.budget - (time.perf_counter() - start)
        if left < 30:
            report["parts"][name] = {"error": "skipped: time budget spent"}
            continue
        result = run_child(name.split(":")[0], args, ws, extra, timeout=left)
        report["parts"][name] = result
        summary = {k: v for k, v in result.items() if k not in ("steps", "stderr_tail")}
        print(f"{name}: {json.dumps(summary)}", flush=True)
        if result.get("stderr_tail"):
            print(result["stderr_tail"][-3000:], flush=True)
        (out / f"gpu_scale{args.tag}.json").write_text(json.dumps(report, indent=2))
    print(f"total {time.perf_counter() - start:.1f} s; results in {out / f'gpu_scale{args.tag}.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
