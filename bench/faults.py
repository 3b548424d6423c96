"""Fault injection on a real ``mmr1 train``: SIGKILL at random times, SIGINT, SIGTERM, a second SIGINT, a full disk.

    python bench/faults.py [--kills 10] [--seed 0] [--steps 24] [--out bench]

Every scenario runs ``mmr1 train`` in a subprocess on one tiny Qwen2.5-VL (built here, random weights, CPU, one
thread) and the same config, in its own output_dir, then resumes it with ``--resume_from_checkpoint latest`` to
the end and compares ``final/`` with that of a straight, uninterrupted run of the same steps: the largest absolute
difference over every weight (0 means bit-identical) and whether metrics.jsonl holds each step once.

* ``SIGKILL``: ``--kills`` runs with ``save_steps: 1``, each killed at a time drawn (seeded) uniformly over the
  straight run's training window (from about one step before its first metrics record to ``final/`` in place, so
  past model loading; start-up varies by a few tenths of a second from run to run, so a few land just before
  the first step or after ``final/``); with a checkpoint every step, many kills land inside a save (the table
  says when a temp folder was left: the kill hit ``checkpoint-N`` or ``final/`` being written).
* ``SIGINT`` / ``SIGTERM``: ``save_steps: 0`` (the default), the signal once metrics.jsonl has 3 records.
* ``SIGINT twice``: ``save_steps: 2``; step 5 held 3 s (a patched rollout), SIGINT, then SIGINT again 1.3 s later.
* ``full disk``: ``save_steps: 2``; the model's ``save_pretrained`` raises ``OSError(ENOSPC)`` for checkpoint-6 (a
  patch in a wrapper of ``mmr1.cli.main``), then the run is resumed as after freeing space.

Writes ``OUT/faults.md`` (the table) and ``OUT/faults.json`` (every figure), headed by date, commit and machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1",
       "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT)}

WRAPPER = '''
import errno, os, sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
from mmr1.grpo.trainer import GRPOTrainer
from transformers import PreTrainedModel

mode = os.environ["FAULT"]
if mode == "enospc":                       # the disk fills up while checkpoint-N is written
    original = PreTrainedModel.save_pretrained
    def save_pretrained(self, folder, *args, **kwargs):
        if Path(folder).parent.name == os.environ["FAULT_AT"]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(folder))
        return original(self, folder, *args, **kwargs)
    PreTrainedModel.save_pretrained = save_pretrained
elif mode == "hold":                       # a long step (a slow rollout), so that signals land inside it
    rollout = GRPOTrainer.rollout
    def held(self):
        if self.global_step == int(os.environ["FAULT_AT"]):
            open(os.environ["FAULT_MARK"], "w").close()
            time.sleep(3)
        return rollout(self)
    GRPOTrainer.rollout = held
from mmr1.cli import main
sys.exit(main(["train", *sys.argv[1:]]))
'''


def mmr1_command() -> list[str]:
    script = Path(sys.executable).parent / "mmr1"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "mmr1.cli"]


def start(work: Path, config: Path, *extra: str, wrapper: dict | None = None) -> subprocess.Popen:
    if wrapper is None:
        cmd = [*mmr1_command(), "train", config.name, *extra]
        env = ENV
    else:
        (work / "wrapper.py").write_text(WRAPPER)
        cmd = [sys.executable, "wrapper.py", config.name, *extra]
        env = {**ENV, **wrapper}
    return subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 600) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def mmr1_lines(text: str) -> list[str]:
    """The lines mmr1 itself says (its messages and warnings), not library noise."""
    keep = ("mmr1", "resumed from", "removed ", "dropped ", "no checkpoint in", "could not write", "done:")
    return [line.strip() for line in text.splitlines() if any(k in line for k in keep)
            and "Warning" not in line and "warn(" not in line]


def metrics_steps(folder: Path) -> list[int]:
    path = folder / "metrics.jsonl"
    steps = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                steps.append(int(json.loads(line)["step"]))
            except (ValueError, KeyError, TypeError):
                steps.append(-1)                     # a line cut by the kill
    return steps


def checkpoints(folder: Path) -> list[str]:
    """checkpoint-N folders in ``folder``, by step."""
    if not folder.is_dir():
        return []
    return [p.name for p in sorted(folder.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))]


def weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def max_diff(a: dict, b: dict) -> float:
    if a.keys() != b.keys():
        return float("inf")
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def resume(work: Path, config: Path, row: dict, straight: dict, steps: int) -> dict:
    t0 = time.monotonic()
    code, out, err = finish(start(work, config, "--resume_from_checkpoint", "latest"))
    row["resume_exit_code"] = code
    row["resume_seconds"] = round(time.monotonic() - t0, 2)
    said = mmr1_lines(out + "\n" + err)
    found = [re.search(r"resumed from (\S+) at step (\d+)", line) for line in said]
    found = [m for m in found if m]
    row["resumed_from"] = Path(found[0].group(1)).name if found else "step 0 (no checkpoint)"
    row["resume_said"] = [line for line in said if not line.startswith("done:")]
    output = work / row["output_dir"]
    final = output / "final"
    row["max_abs_diff"] = max_diff(weights(final), straight) if (final / "model.safetensors").is_file() else None
    row["identical"] = row["max_abs_diff"] == 0.0
    row["metrics_steps_once"] = metrics_steps(output) == list(range(1, steps + 1))
    row["tmp_left_after_resume"] = sorted(p.name for p in output.glob(".*.tmp"))
    return row


def base_config(model: Path, output_dir: str, steps: int, save_steps: int) -> dict:
    return {
        "model_name_or_path": str(model), "dataset": "shapes",
        "dataset_kwargs": {"n": 16, "seed": 5, "image_size": 56}, "template": "demo",
        "rewards": ["vowel_share"], "plugins": [str(ROOT / "tests" / "helpers" / "test_rewards_plugin.py")],
        "num_generations": 4, "per_device_train_batch_size": 8, "max_completion_length": 4, "max_steps": steps,
        "learning_rate": 5e-3, "seed": 11, "output_dir": output_dir, "disable_tqdm": True, "log_completions": True,
        "num_completions_to_log": 2, "save_steps": save_steps,
    }


def write_config(work: Path, name: str, model: Path, steps: int, save_steps: int) -> Path:
    path = work / f"{name}.json"
    path.write_text(json.dumps(base_config(model, name, steps, save_steps)))
    return path


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the run ended or stalled before the fault could be injected: "
                               f"{proc.communicate()[1][-2000:]}")
        time.sleep(0.02)


def header() -> dict:
    import torch

    def git(*args):
        try:
            return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True).stdout.strip()
        except OSError:
            return ""

    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": git("rev-parse", "--short", "HEAD") + (" (working tree modified)" if dirty else ""),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
                       f"Python {platform.python_version()}, torch {torch.__version__}",
            "load_average_at_start": [round(x, 2) for x in load] if load else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--out", default=str(ROOT / "bench"))
    parser.add_argument("--keep", help="keep the work folder here instead of a temporary one")
    args = parser.parse_args()
    info = header()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="mmr1-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    steps = args.steps
    from mmr1.fixtures.models import build_tiny_vlm

    model = build_tiny_vlm(work / "model", text_hidden=64, seed=3)
    rows = []

    # -- the straight run ---------------------------------------------------------------------
    config = write_config(work, "straight", model, steps, 1)
    t0 = time.monotonic()
    proc = start(work, config)
    first_metric = final_at = None
    while proc.poll() is None:
        if first_metric is None and (work / "straight" / "metrics.jsonl").is_file():
            first_metric = time.monotonic() - t0
        if final_at is None and (work / "straight" / "final").is_dir():
            final_at = time.monotonic() - t0
        time.sleep(0.02)
    code, _, err = finish(proc)
    duration = time.monotonic() - t0
    if code != 0:
        raise SystemExit(f"the straight run failed:\n{err[-3000:]}")
    straight = weights(work / "straight" / "final")
    # the training window: from about one step before the first metrics record to final/ in place
    train_end = final_at or duration
    train_start = max(0.0, (first_metric or 0.0) - (train_end - (first_metric or 0.0)) / max(steps - 1, 1))
    info.update(straight_run_seconds=round(duration, 2), first_metric_seconds=round(first_metric or 0, 2),
                train_window_seconds=[round(train_start, 2), round(train_end, 2)], steps=steps, seed=args.seed)
    print(f"straight run: {duration:.1f} s ({steps} steps, first step logged at {first_metric:.1f} s)", flush=True)

    # -- SIGKILL at random times ----------------------------------------------------------------
    for i in range(args.kills):
        name = f"kill-{i + 1}"
        config = write_config(work, name, model, steps, 1)
        at = rng.uniform(train_start, train_end)
        proc = start(work, config)
        time.sleep(at)
        proc.send_signal(signal.SIGKILL)
        code, _, _ = finish(proc)
        output = work / name
        logged = [s for s in metrics_steps(output) if s > 0]
        tmp = sorted(p.name for p in output.glob(".*.tmp")) if output.is_dir() else []
        where = (f"while writing {tmp[0].strip('.').removesuffix('.tmp')}" if tmp else
                 "before the first step" if not logged else
                 "after the last step" if (output / "final").is_dir() else f"in step {logged[-1] + 1}")
        row = {"scenario": "SIGKILL", "run": name, "output_dir": name, "kill_at_s": round(at, 2),
               "where": where, "exit_code": code, "message": "(killed: no message possible)",
               "tmp_left": tmp, "checkpoints_left": checkpoints(output)}
        rows.append(resume(work, config, row, straight, steps))
        print(f"{name}: killed at {at:.2f} s {where}; resumed from {row['resumed_from']}: max |diff| "
              f"{row['max_abs_diff']}", flush=True)

    # -- SIGINT / SIGTERM once ------------------------------------------------------------------
    for signum in (signal.SIGINT, signal.SIGTERM):
        name = signum.name.lower()
        config = write_config(work, name, model, steps, 0)
        proc = start(work, config)
        wait_for(lambda: len(metrics_steps(work / name)) >= 3, proc)
        logged = len(metrics_steps(work / name))
        t_sig = time.monotonic()
        proc.send_signal(signum)
        code, _, err = finish(proc)
        said = [line for line in mmr1_lines(err) if line.startswith("mmr1 train:")]
        row = {"scenario": f"{signum.name} (save_steps 0)", "run": name, "output_dir": name,
               "where": f"sent with {logged} steps logged", "exit_code": code,
               "stop_seconds": round(time.monotonic() - t_sig, 2), "message": said[-1] if said else "",
               "checkpoints_left": checkpoints(work / name)}
        rows.append(resume(work, config, row, straight, steps))
        print(f"{name}: exit {code}: {row['message']}", flush=True)

    # -- SIGINT twice in a long step -------------------------------------------------------------
    name = "sigint-twice"
    config = write_config(work, name, model, steps, 2)
    mark = work / f"{name}.held"
    proc = start(work, config, wrapper={"FAULT": "hold", "FAULT_AT": "4", "FAULT_MARK": str(mark)})
    wait_for(mark.exists, proc)
    proc.send_signal(signal.SIGINT)
    time.sleep(1.3)
    t_sig = time.monotonic()
    proc.send_signal(signal.SIGINT)
    code, _, err = finish(proc)
    said = [line for line in mmr1_lines(err) if line.startswith("mmr1 train:")]
    row = {"scenario": "SIGINT twice (save_steps 2)", "run": name, "output_dir": name, "where": "in step 5",
           "exit_code": code, "stop_seconds": round(time.monotonic() - t_sig, 2),
           "message": said[-1] if said else "",
           "checkpoints_left": checkpoints(work / name)}
    rows.append(resume(work, config, row, straight, steps))
    print(f"{name}: exit {code}: {row['message']}", flush=True)

    # -- a full disk at checkpoint-6 --------------------------------------------------------------
    name = "full-disk"
    config = write_config(work, name, model, steps, 2)
    code, _, err = finish(start(work, config, wrapper={"FAULT": "enospc", "FAULT_AT": ".checkpoint-6.tmp"}))
    said = [line for line in mmr1_lines(err) if line.startswith("mmr1 train:")]
    row = {"scenario": "full disk (ENOSPC, save_steps 2)", "run": name, "output_dir": name,
           "where": "while writing checkpoint-6", "exit_code": code, "message": said[-1] if said else "",
           "tmp_left": sorted(p.name for p in (work / name).glob(".*.tmp")),
           "checkpoints_left": checkpoints(work / name)}
    rows.append(resume(work, config, row, straight, steps))
    print(f"{name}: exit {code}: {row['message']}", flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "faults.json").write_text(json.dumps({**info, "runs": rows}, indent=2) + "\n")
    (out / "faults.md").write_text(render(info, rows))
    print(f"wrote {out / 'faults.md'} and {out / 'faults.json'}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


def render(info: dict, rows: list[dict]) -> str:
    def cell(text) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = [
        "# Fault injection: `bench/faults.py`", "",
        f"- date: {info['date']}", f"- commit: {info['commit']}", f"- machine: {info['machine']}",
        f"- load average at start: {info['load_average_at_start']}",
        f"- tiny Qwen2.5-VL (random weights), {info['steps']} steps, CPU, 1 thread; straight run "
        f"{info['straight_run_seconds']} s (first step logged at {info['first_metric_seconds']} s); SIGKILL times "
        f"drawn uniformly over the training window {info['train_window_seconds']} s after the start, seeded with "
        f"{info['seed']}",
        "- every run is resumed with `--resume_from_checkpoint latest` to the end and its `final/` compared with the "
        "straight run's; \"steps once\": metrics.jsonl holds steps 1..N, each once", "",
        "| scenario | run | kill time / step | exit code | message | left behind | resumed from | max \\|diff\\| "
        "| identical | steps once | resume said |",
        "|---|---|---|---:|---|---|---|---:|---|---|---|",
    ]
    for r in rows:
        when = (f"{r['kill_at_s']} s, {r['where']}" if "kill_at_s" in r else r["where"])
        if "stop_seconds" in r:
            when += f" (exited {r['stop_seconds']} s after the signal)"
        found = r.get("checkpoints_left", [])
        left = ([f"{len(found)} checkpoints, newest {found[-1]}" if len(found) > 1 else found[0]] if found else [])
        left = ", ".join(left + r.get("tmp_left", [])) or "nothing"
        diff = "n/a" if r["max_abs_diff"] is None else f"{r['max_abs_diff']:g}"
        said = "; ".join(r["resume_said"]) or "-"
        lines.append(f"| {cell(r['scenario'])} | {r['run']} | {cell(when)} | {r['exit_code']} | {cell(r['message'])} "
                     f"| {cell(left)} | {cell(r['resumed_from'])} | {diff} | {'yes' if r['identical'] else 'NO'} "
                     f"| {'yes' if r['metrics_steps_once'] else 'NO'} | {cell(said)} |")
    identical = sum(r["identical"] for r in rows)
    lines += ["", f"{identical} of {len(rows)} resumed runs ended bit-identical to the straight run.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
