"""mmr1's GRPO trainer against trl's GRPOTrainer on the same tiny Qwen2.5-VL, same data, same lengths.

    python bench/vs_trl.py [--steps 5] [--warmup 2] [--image-size 448] [--threads 1] [--json out.json]

What is compared (CPU, random weights, everything built offline in a temporary folder):

- model: one tiny Qwen2.5-VL built once with ``build_tiny_vlm`` (text hidden 256 / 4 layers, vision
  depth 4 / width 128, about 5.6M parameters), float32, loaded from disk by both systems;
- data: synthetic coloured-shape images of exactly ``--image-size`` x ``--image-size`` pixels (448 px:
  32 x 32 patches of 14 px, 256 image tokens after the 2 x 2 merge; 224 px: 64 image tokens), the same
  question and system prompt in both (the ``default`` template of mmr1 / the same chat messages in trl);
- batch: 16 completions a step, 8 per prompt (``num_generations 8``, ``per_device_train_batch_size 16``:
  both count completions), one optimizer step per rollout, ``beta 0`` (no reference model), the same
  learning rate, loss ``dapo`` (the default of both), temperature 1;
- lengths: every completion is exactly ``--completion-length`` (64) tokens. trl: ``generation_kwargs =
  {"min_new_tokens": 64}`` (transformers' MinNewTokensLengthLogitsProcessor puts -inf on the eos ids for
  the first 64 tokens) with ``max_completion_length 64``. mmr1: its rollout ``SamplingParams`` has
  ``ignore_eos`` but the trainer has no config key for it, so this script wraps the trainer's
  ``backend.generate`` and passes ``ignore_eos=True``, plus a ``logits_hook`` that never samples
  ``<|image_pad|>`` / ``<|video_pad|>`` (trl suppresses the image token too; see README) (bench only;
  nothing in mmr1 is changed);
- reward: one trivial function given to both (completion length in characters / 100);
- timing: wall clock between the ends of consecutive optimizer steps (the first step is timed from the
  start of training), so a step includes sampling the prompts, generation, rewards and the update;
  the first ``--warmup`` steps are dropped and the median of the rest is reported;
- memory: peak resident set size (``VmHWM`` from /proc/self/status) of the process running one system,
  read inside that process after its last step. Each system runs in its own fresh subprocess, one after
  the other, never at the same time.

Threads: ``OMP_WAIT_POLICY=PASSIVE`` and the same torch thread count (``--threads``, default 1) for both
systems (intra-op and inter-op), set before torch is imported in each child.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SYSTEM_PROMPT = "You are a helpful assistant."
QUESTION = "What colour is the shape?"
RESULT_MARK = "@@BENCH_RESULT@@ "
REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:           # run from a checkout without installing mmr1
    sys.path.insert(0, str(REPO))

from length_reward import length_reward, register_length_reward  # noqa: E402 (bench/, the script's folder)


# -- shared pieces -------------------------------------------------------------------------------------

def _proc_status_mib(field: str) -> float | None:
    """A size line of /proc/self/status (``VmHWM``, ``VmRSS``), MiB; None where there is none to read."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def peak_rss_mib() -> float:
    """Peak resident set size of this process (VmHWM), MiB; falls back to getrusage."""
    peak = _proc_status_mib("VmHWM")
    if peak is not None:
        return peak
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rss_now_mib() -> float:
    """Current resident set size (VmRSS), MiB; NaN where /proc cannot tell."""
    now = _proc_status_mib("VmRSS")
    return float("nan") if now is None else now


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:
        pass


def _summary(name: str, step_ends: list[float], start: float, warmup: int, extra: dict) -> dict:
    times, prev = [], start
    for t in step_ends:
        times.append(t - prev)
        prev = t
    timed = times[warmup:] or times
    return {"system": name, "step_seconds": times, "timed_steps": len(timed),
            "median_s_per_step": statistics.median(timed), "min_s_per_step": min(timed),
            "max_s_per_step": max(timed), "peak_rss_mib": peak_rss_mib(), **extra}


# -- the workspace: model + data, built once in the parent ------------------------------------------

def build_workspace(root: Path, image_size: int, n_rows: int, seed: int) -> dict:
    from mmr1.fixtures.models import build_tiny_vlm
    from mmr1.fixtures.shapes import VL_COLORS, shapes_image

    model_dir = build_tiny_vlm(root / "model", family="qwen2_5_vl", text_hidden=256, text_layers=4,
                               vision_depth=4, vision_hidden=128, seed=seed)
    img_dir = root / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    colours = list(VL_COLORS)[:4]
    rows = []
    for i in range(n_rows):
        rng = random.Random(f"{seed}-{i}")
        colour = rng.choice(colours)
        img = shapes_image(rng, image_size, colour, 1)          # exactly image_size x image_size
        assert img.size == (image_size, image_size)
        path = img_dir / f"{i:04d}.png"
        img.save(path)
        rows.append({"problem": QUESTION, "solution": colour, "image": [str(path)]})
    data = root / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"model": str(model_dir), "data": str(data)}


# -- mmr1 ----------------------------------------------------------------------------------------

def run_mmr1(args) -> dict:
    import dataclasses

    import torch

    _set_threads(args.threads)
    from mmr1.config import build_config
    from mmr1.grpo.trainer import GRPOTrainer

    register_length_reward("bench_vs_trl")

    total = args.warmup + args.steps
    config = build_config({
        "model_name_or_path": args.model, "torch_dtype": "float32", "bf16": False,
        "dataset": "json", "dataset_path": args.data, "template": "default",
        "rewards": ["bench_length"],
        "num_generations": 8, "per_device_train_batch_size": 16, "gradient_accumulation_steps": 1,
        "max_completion_length": args.completion_length, "temperature": 1.0,
        "beta": 0.0, "loss_type": "dapo", "learning_rate": args.lr, "max_steps": total,
        "shared_prefix": not args.mmr1_full_rows,
        "output_dir": str(Path(args.out_dir) / "mmr1"), "log_completions": False,
        "disable_tqdm": True, "seed": args.seed, "report_to": "none",
    }, where="bench/vs_trl.py")
    trainer = GRPOTrainer(config)

    # The trainer has no config key for ignore_eos: force exactly max_completion_length tokens here.
    # Also never sample <|image_pad|> / <|video_pad|> (trl suppresses the image token the same way): with
    # full-row scoring mmr1 fails on a completion holding one ("Image features and image tokens do not
    # match"), which a random model samples within a few steps.
    generate = trainer.backend.generate
    tok = trainer.adapter.tokenizer
    banned = [tok.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>")]

    def no_vision_pads(logits, t):
        logits[:, banned] = float("-inf")
        return logits

    def generate_ignoring_eos(model, prompts, prompt_index, sampling, *a, **k):
        return generate(model, prompts, prompt_index, dataclasses.replace(sampling, ignore_eos=True),
                        logits_hook=no_vision_pads)

    trainer.backend.generate = generate_ignoring_eos

    step_ends, lengths, prompt_lens, gen_times, first_ids = [], [], [], [], []
    update, rollout = trainer.update, trainer.rollout

    def timed_rollout():
        t0 = time.perf_counter()
        buffer, stats = rollout()
        gen_times.append(time.perf_counter() - t0)
        mask = buffer.prompts.attention_mask
        lengths.append(int(buffer.completion_mask.sum(1).min()))
        lengths.append(int(buffer.completion_mask.sum(1).max()))
        prompt_lens.append(int(mask.sum(1).max()))
        if not first_ids:
            first_ids.extend(buffer.prompts.input_ids[0][mask[0].bool()].tolist())
        return buffer, stats

    def timed_update(buffer):
        logs = update(buffer)
        step_ends.append(time.perf_counter())
        return logs

    trainer.rollout, trainer.update = timed_rollout, timed_update
    rss_start = rss_now_mib()
    start = time.perf_counter()
    trainer.train()
    n_params = sum(p.numel() for p in trainer.policy.parameters())
    return _summary("mmr1", step_ends[:total], start, args.warmup, {
        "completion_tokens_min_max": [min(lengths), max(lengths)], "prompt_tokens": max(prompt_lens),
        "prompt_ids": first_ids, "median_rollout_s": statistics.median(gen_times[args.warmup:total] or gen_times),
        "parameters": n_params, "threads": torch.get_num_threads(), "rss_at_train_start_mib": rss_start,
        "scoring": "full rows" if args.mmr1_full_rows else "shared prefix",
    })


# -- trl -----------------------------------------------------------------------------------------

def run_trl(args) -> dict:
    import torch

    _set_threads(args.threads)
    from datasets import Dataset, Image as ImageFeature
    from transformers import AutoModelForImageTextToText, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from mmr1.models.processors import load_processor

    rows = [json.loads(line) for line in Path(args.data).read_text().splitlines() if line.strip()]
    dataset = Dataset.from_dict({
        "prompt": [[{"role": "system", "content": SYSTEM_PROMPT},
                    {"role": "user", "content": r["problem"]}] for r in rows],
        "image": [r["image"][0] for r in rows],
    }).cast_column("image", ImageFeature())

    total = args.warmup + args.steps
    config = GRPOConfig(
        output_dir=str(Path(args.out_dir) / "trl"), use_cpu=True, bf16=False, gradient_checkpointing=False,
        per_device_train_batch_size=16, num_generations=8, gradient_accumulation_steps=1,
        max_completion_length=args.completion_length, generation_kwargs={"min_new_tokens": args.completion_length},
        temperature=1.0, beta=0.0, loss_type="dapo", learning_rate=args.lr, max_steps=total,
        logging_steps=1, report_to="none", save_strategy="no", seed=args.seed, dataloader_num_workers=0,
        disable_tqdm=True,
    )
    model = AutoModelForImageTextToText.from_pretrained(args.model, dtype=torch.float32)
    processor = load_processor(args.model)

    step_ends, lengths, prompt_lens, gen_times, first_ids, start = [], [], [], [], [], [0.0]
    rss_start = [0.0]

    class Timer(TrainerCallback):
        def on_train_begin(self, *a, **k):
            rss_start[0] = rss_now_mib()
            start[0] = time.perf_counter()

        def on_step_end(self, *a, **k):
            step_ends.append(time.perf_counter())

    trainer = GRPOTrainer(model=model, reward_funcs=[length_reward], args=config, train_dataset=dataset,
                          processing_class=processor, callbacks=[Timer()])

    generate = trainer._generate_single_turn

    def counting_generate(prompt_ids, *a, **k):
        t0 = time.perf_counter()
        completion_ids, logprobs = generate(prompt_ids, *a, **k)
        gen_times.append(time.perf_counter() - t0)
        if not first_ids:
            first_ids.extend(int(i) for i in prompt_ids[0])
        lengths.extend(len(c) for c in completion_ids)
        prompt_lens.extend(len(p) for p in prompt_ids)
        return completion_ids, logprobs

    trainer._generate_single_turn = counting_generate
    trainer.train()
    n_params = sum(p.numel() for p in trainer.model.parameters())
    return _summary("trl", step_ends[:total], start[0], args.warmup, {
        "completion_tokens_min_max": [min(lengths), max(lengths)], "prompt_tokens": max(prompt_lens),
        "prompt_ids": first_ids, "median_rollout_s": statistics.median(gen_times[args.warmup:total] or gen_times),
        "parameters": n_params, "threads": torch.get_num_threads(), "rss_at_train_start_mib": rss_start[0],
        "scoring": "full rows",
    })


# -- the parent ----------------------------------------------------------------------------------

def child_env(threads: int) -> dict:
    env = dict(os.environ)
    env.update(OMP_WAIT_POLICY="PASSIVE", OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])))
    return env


def run_child(system: str, args, ws: dict, out_dir: Path) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", system, "--model", ws["model"],
           "--data", ws["data"], "--out-dir", str(out_dir), "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--threads", str(args.threads), "--lr", str(args.lr),
           "--completion-length", str(args.completion_length), "--seed", str(args.seed)]
    if args.mmr1_full_rows:
        cmd.append("--mmr1-full-rows")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=child_env(args.threads), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    result = None
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            result = json.loads(line[len(RESULT_MARK):])
    if proc.returncode != 0 or result is None:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-8000:])
        raise SystemExit(f"{system} child failed (exit {proc.returncode})")
    result["process_wall_s"] = wall
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=5, help="timed steps (after the warm-up)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--image-size", type=int, default=448, choices=(224, 448), help="square image side, pixels")
    p.add_argument("--threads", type=int, default=1, help="torch threads in each system (same for both)")
    p.add_argument("--completion-length", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--systems", default="mmr1,trl", help="comma-separated, run in this order")
    p.add_argument("--mmr1-full-rows", action="store_true", help="mmr1 with shared_prefix: false")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--workdir", help="keep the model/data/outputs here (default: a temporary folder)")
    # child-only options
    p.add_argument("--child", choices=("mmr1", "trl"), help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--out-dir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.child:
        result = (run_mmr1 if args.child == "mmr1" else run_trl)(args)
        print(RESULT_MARK + json.dumps(result), flush=True)
        return 0

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    tmp = None
    if args.workdir:
        root = Path(args.workdir)
        root.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="mmr1-vs-trl-")
        root = Path(tmp.name)
    t0 = time.perf_counter()
    ws = build_workspace(root, args.image_size, n_rows=64, seed=args.seed)
    print(f"built model + data in {time.perf_counter() - t0:.1f} s under {root}", flush=True)
    load_start = os.getloadavg()
    results = {}
    for system in [s.strip() for s in args.systems.split(",") if s.strip()]:
        results[system] = run_child(system, args, ws, root / "runs")
        r = results[system]
        print(f"{system}: median {r['median_s_per_step']:.3f} s/step (min {r['min_s_per_step']:.3f}, "
              f"max {r['max_s_per_step']:.3f}) over {r['timed_steps']} timed steps; peak RSS "
              f"{r['peak_rss_mib']:.0f} MiB; steps {[round(x, 2) for x in r['step_seconds']]}", flush=True)

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    meta = {"machine": f"{platform.machine()}, {cpus} CPUs", "python": sys.version.split()[0],
            "image_size": args.image_size, "threads": args.threads, "warmup": args.warmup, "steps": args.steps,
            "completion_length": args.completion_length, "load_average_before": load_start[:3],
            "load_average_after": os.getloadavg()[:3]}
    try:
        import accelerate
        import torch
        import transformers
        import trl

        meta["versions"] = {"torch": torch.__version__, "transformers": transformers.__version__,
                            "trl": trl.__version__, "accelerate": accelerate.__version__}
    except ImportError:
        pass

    print()
    print(f"machine: {meta['machine']}; torch threads per system: {args.threads}; OMP_WAIT_POLICY=PASSIVE; "
          f"{args.image_size} px images; 16 completions/step (8 per prompt) x {args.completion_length} tokens; "
          f"load average before/after {load_start[0]:.2f}/{meta['load_average_after'][0]:.2f}")
    print("| system | prompt tokens | completion tokens | s/step (median) | min | max | rollout s "
          "| RSS at start MiB | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        lo, hi = r["completion_tokens_min_max"]
        print(f"| {name} ({r['scoring']}) | {r['prompt_tokens']} | {lo}-{hi} | {r['median_s_per_step']:.3f} | "
              f"{r['min_s_per_step']:.3f} | {r['max_s_per_step']:.3f} | {r['median_rollout_s']:.3f} | "
              f"{r['rss_at_train_start_mib']:.0f} | {r['peak_rss_mib']:.0f} |")
    ratios = {}
    if "trl" in results and "mmr1" in results:
        ratios = {"time_trl_over_mmr1": results["trl"]["median_s_per_step"] / results["mmr1"]["median_s_per_step"],
                  "rss_trl_over_mmr1": results["trl"]["peak_rss_mib"] / results["mmr1"]["peak_rss_mib"]}
        same = results["trl"]["prompt_ids"] == results["mmr1"]["prompt_ids"]
        ratios["identical_prompt_ids"] = same
        print(f"\nprompt token ids identical in both systems: {same}")
        print(f"ratios trl / mmr1: time {ratios['time_trl_over_mmr1']:.2f}x, "
              f"peak RSS {ratios['rss_trl_over_mmr1']:.2f}x")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results, "ratios": ratios}, indent=2))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
