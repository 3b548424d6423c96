"""The ``mmr1`` command: train | sft | eval | generate | tokenize | prepare-t2i | check | list | make-tiny | demo."""

from __future__ import annotations

import argparse
import json
import os
import sys


def _user_errors() -> tuple[type, ...]:
    from mmr1.config import ConfigError
    from mmr1.data import DataError, ImageLoadError
    from mmr1.grpo.setup import PreflightError
    from mmr1.grpo.batching import BatchConfigError
    from mmr1.grpo.checkpoint import LaunchError
    from mmr1.grpo.rewards import RewardError
    from mmr1.plugins import PluginError
    from mmr1.registry import RegistryError
    from mmr1.templates import TemplateError

    return (ConfigError, DataError, ImageLoadError, BatchConfigError, RewardError, PluginError,
            RegistryError, TemplateError, PreflightError, FileNotFoundError, LaunchError)


# -- list ---------------------------------------------------------------------------------------
SECTIONS = (("rewards", "register_rewards"), ("templates", "register_templates"),
            ("datasets", "register_datasets"), ("model adapters", "register_models"),
            ("image tokenizers", "register_image_tokenizers"), ("rollout backends", "register_rollout_backends"))


def cmd_list(args) -> int:
    from mmr1.plugins import load_plugins

    pm = load_plugins(args.plugins or [], base_dir=os.getcwd())
    data = {}
    for title, hook in SECTIONS:
        data[title] = [{"name": e.name, "plugin": e.plugin, "description": e.description}
                       for e in pm.registry(hook).entries()]
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    for title, entries in data.items():
        print(f"{title}:")
        width = max((len(e["name"]) for e in entries), default=0)
        for e in entries:
            print(f"  {e['name']:<{width}}  [{e['plugin']}]  {e['description']}")
        print()
    return 0


# -- check --------------------------------------------------------------------------------------
def cmd_check(args) -> int:
    """Validate a config: keys, names, batch arithmetic, every data row, image and prompt. All problems at once.

    The same checks ``mmr1 train`` runs before any weights load (:func:`mmr1.grpo.setup.preflight`).
    """
    from mmr1.config import ConfigError, load_config
    from mmr1.grpo.setup import preflight

    try:
        config = load_config(args.config, args.overrides)
    except ConfigError as exc:
        print("config problems:\n  " + str(exc).replace("\n", "\n  "))
        return 1
    for line in config.translations:              # keys of MMR1 / trl / SimpleAR / VLM-R1 / EasyR1, read as ours
        print(line)
    result = preflight(config, args.num_processes, progress=True)
    for line in result.summary:
        print(line)
    if result.problems:
        print(f"\n{len(result.problems)} problem(s):")
        for p in result.problems:
            print("  " + str(p).replace("\n", "\n    "))
        return 1
    print("config OK")
    return 0


# -- train / eval / sft -------------------------------------------------------------------------
def cmd_train(args) -> int:
    """Exit codes: 0 done, 2 config / data / output_dir error (nothing loaded), 3 the run stopped itself or could not
    write, 128 + signal when SIGINT (130) or SIGTERM (143) interrupted it (after writing a checkpoint)."""
    from mmr1.config import load_config
    from mmr1.grpo.checkpoint import OutputDirError, check_output_dir
    from mmr1.grpo.trainer import GRPOTrainer, TrainingHalted, TrainingInterrupted

    config = load_config(args.config, args.overrides)
    if os.environ.get("RANK", "0") == "0":               # once, not once per process
        for line in config.translations:
            print(f"mmr1 train: {line}", file=sys.stderr)
    try:
        check_output_dir(config.output_dir)              # before any weights load
        trainer = GRPOTrainer(config)
    except OutputDirError as exc:
        print(f"mmr1 train: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mmr1 train: interrupted by SIGINT before training started; nothing was written", file=sys.stderr)
        return 130
    try:
        history = trainer.train()
    except OutputDirError as exc:
        print(f"mmr1 train: error: {exc}", file=sys.stderr)
        return 2
    except TrainingInterrupted as exc:
        if trainer.accelerator.is_main_process:
            if exc.resume_spec:
                resume = (f"resume with: {_resume_command(args, exc.resume_spec)} "
                          f"(or set resume_from_checkpoint: {exc.resume_spec} in the config)")
            else:
                resume = "nothing to resume: run the same command again"
            print(f"mmr1 train: {exc.message}; {resume}", file=sys.stderr)
        return exc.exit_code
    except TrainingHalted as exc:
        print(f"mmr1 train: stopped: {exc}", file=sys.stderr)
        return 3
    if trainer.accelerator.is_main_process and history:
        last = history[-1]
        skipped = f" ({trainer.nonfinite_steps} non-finite steps skipped)" if trainer.nonfinite_steps else ""
        print(f"done: {trainer.global_step} steps{skipped}, last reward {last['reward']:.4f}; "
              f"model in {config.output_dir}/final")
    if trainer.accelerator.is_main_process and trainer.stop_signal:
        import signal

        print(f"mmr1 train: {signal.Signals(trainer.stop_signal).name} arrived after the last step; "
              f"final/ is complete, nothing to resume", file=sys.stderr)
    return 0


def _resume_command(args, spec: str) -> str:
    """The ``mmr1 train`` command line that was run, with ``--resume_from_checkpoint SPEC`` instead of any given."""
    import shlex

    kept, rest, i = [], list(args.overrides or []), 0
    while i < len(rest):
        arg = rest[i]
        key = arg[2:].split("=", 1)[0].replace("-", "_") if arg.startswith("--") else None
        takes_value = key is not None and "=" not in arg and i + 1 < len(rest) and not rest[i + 1].startswith("--")
        step = 2 if takes_value else 1
        if key != "resume_from_checkpoint":
            kept += rest[i:i + step]
        i += step
    return shlex.join(["mmr1", "train", str(args.config), *kept, "--resume_from_checkpoint", spec])


def cmd_eval(args) -> int:
    import torch
    from tqdm.auto import tqdm

    from mmr1.config import load_config
    from mmr1.evaluate import evaluate
    from mmr1.grpo.rewards import RewardRunner
    from mmr1.grpo.setup import prepare

    config = load_config(args.config, args.overrides)
    model_path = args.model or config.model_name_or_path
    config.model_name_or_path = model_path
    prepared = prepare(config, progress=True)
    rows = prepared.eval_dataset if prepared.eval_dataset is not None else prepared.dataset
    if args.limit:
        rows = rows.rows[: args.limit] if hasattr(rows, "rows") else rows[: args.limit]
    adapter_cls, processor = prepared.adapter_cls, prepared.processor
    adapter = adapter_cls(processor, config.min_pixels, config.max_pixels)
    adapter.configure(config)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = adapter_cls.load_model(model_path, None).to(device).eval()
    adapter.bind(model)
    backend = prepared.backend_cls(adapter, None, config=config)   # the config's rollout backend (hf, t2i, ...)
    image_dir = args.images or (f"{args.output}.images" if args.output else None)
    result = evaluate(adapter, model, list(rows), prepared.template, RewardRunner(prepared.rewards),
                      max_new_tokens=config.max_completion_length, batch_size=args.batch_size,
                      temperature=args.temperature, progress=lambda it: tqdm(it, desc="eval"), backend=backend,
                      image_dir=image_dir)
    print(json.dumps(result["means"], indent=2))
    if args.output:
        with open(args.output, "w") as f:
            for record in result["records"]:
                f.write(json.dumps(record, default=str) + "\n")
    return 0


def cmd_sft(args) -> int:
    from mmr1.config import load_config
    from mmr1.grpo.checkpoint import OutputDirError, check_output_dir
    from mmr1.imagegen.cli import is_t2i_config, sft_t2i_main
    from mmr1.sft.vlm import run_vlm_sft

    config = load_config(args.config, args.overrides)
    if is_t2i_config(config):                              # SimpleAR pretrain / SFT on visual tokens
        return sft_t2i_main(config)
    try:
        check_output_dir(config.output_dir)              # before any weights load
    except OutputDirError as exc:
        print(f"mmr1 sft: error: {exc}", file=sys.stderr)
        return 2
    summary = run_vlm_sft(config)
    losses = summary["losses"]
    if os.environ.get("RANK", "0") == "0" and losses:
        print(f"SFT done: loss {losses[0]:.4f} -> {losses[-1]:.4f}; model in {summary['final']}")
    return 0


# -- make-tiny / demo ---------------------------------------------------------------------------
def cmd_make_tiny(args) -> int:
    from mmr1.config import parse_overrides
    from mmr1.fixtures.models import make_tiny

    options = parse_overrides(args.options)
    try:
        path = make_tiny(args.kind, args.out, **options)
    except ValueError as exc:
        print(f"mmr1 make-tiny: error: {exc}", file=sys.stderr)
        return 2
    print(f"built tiny {args.kind} in {path}")
    return 0


def cmd_demo(args) -> int:
    import time
    from pathlib import Path

    from mmr1 import verdicts

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    start, lines, learned = time.perf_counter(), [], True
    judge = {"vl": (verdicts.vl_verdict, verdicts.vl_line), "t2i": (verdicts.t2i_verdict, verdicts.t2i_line)}
    for part in ("vl", "t2i") if args.only is None else (args.only,):
        if part == "vl":
            from mmr1.demo import run_vl_demo as run
        else:
            from mmr1.imagegen.demo import run_t2i_demo as run
        s = run(Path(args.out) / part, seed=args.seed, quick=args.quick)
        verdict_of, line_of = judge[part]
        ok, verdict = verdict_of(s)
        learned &= ok or args.quick
        lines.append(f"{line_of(s)}\n  {verdict}")
    print("\n== mmr1 demo summary ==\n" + "\n".join(lines) + f"\ntotal {time.perf_counter() - start:.0f} s")
    return 0 if learned else 1


def _delegate(name):
    def run(args) -> int:
        from mmr1.imagegen import cli as imagegen_cli

        return getattr(imagegen_cli, name)(args.rest)

    return run


# -- entry point --------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmr1", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list rewards, templates, loaders, adapters and their plugins")
    p.add_argument("--json", action="store_true")
    p.add_argument("--plugins", nargs="*", help="extra plugin modules or .py files to load first")
    p.set_defaults(fn=cmd_list)

    for name, fn, text in (("train", cmd_train, "GRPO training"), ("check", cmd_check, "validate a config and its data"),
                           ("sft", cmd_sft, "supervised fine-tuning / warm start"),
                           ("eval", cmd_eval, "score a model on a data set with the config's rewards")):
        p = sub.add_parser(name, help=text, description=text + ". Any config key can be overridden as --key value.")
        p.add_argument("config")
        if name == "check":
            p.add_argument("--num-processes", type=int, default=1, dest="num_processes",
                           help="processes the run will use (for the batch arithmetic)")
        if name == "eval":
            p.add_argument("--model", help="model to evaluate (default: model_name_or_path)")
            p.add_argument("--limit", type=int, default=0)
            p.add_argument("--batch-size", type=int, default=16, dest="batch_size")
            p.add_argument("--temperature", type=float, default=0.0)
            p.add_argument("--output", help="write per-sample records as JSONL")
            p.add_argument("--images", help="folder for generated images (text-to-image; default: OUTPUT.images)")
        p.set_defaults(fn=fn)

    p = sub.add_parser("make-tiny", help="build a tiny random-weight model (offline)")
    p.add_argument("kind", help="qwen2_5_vl | qwen2_vl | causal_lm | t2i")
    p.add_argument("out")
    p.set_defaults(fn=cmd_make_tiny)

    p = sub.add_parser("demo", help="the CPU demos: a tiny VLM learns colours; a tiny text-to-image LM learns them too")
    p.add_argument("--out", default="outputs/demo")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", choices=["vl", "t2i"], help="run one of the two demos")
    p.add_argument("--quick", action="store_true", help="a few steps only (smoke test; no verdict on learning)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's own choice)")
    p.set_defaults(fn=cmd_demo)

    for name, fn, text in (("tokenize", "tokenize_main", "extract visual tokens from {image_path, caption} JSON"),
                           ("prepare-t2i", "prepare_main", "extend a causal LM with visual tokens"),
                           ("generate", "generate_main", "sample images from a text-to-image model (CFG)")):
        p = sub.add_parser(name, help=text, add_help=False)
        p.set_defaults(fn=_delegate(fn))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command in ("train", "check", "sft", "eval"):
        args.overrides = rest
    elif args.command == "make-tiny":
        args.options = rest
    elif args.command in ("tokenize", "prepare-t2i", "generate"):
        args.rest = rest
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        return args.fn(args)
    except _user_errors() as exc:
        print(f"mmr1 {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
