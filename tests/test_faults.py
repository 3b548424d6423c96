"""Interrupts and faults: SIGINT / SIGTERM save a checkpoint that resumes exactly; full disks and read-only folders
are one clear line; stale temp folders go; logs hold each step once. See docs/errors.md, "Interrupts and faults".

Signals are sent with ``os.kill`` from inside the run (a patched ``rollout``), in-process through ``mmr1.cli.main``,
or to a ``mmr1 train`` subprocess that a patched ``rollout`` holds at a known step.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from crashing import train_until_crash
from test_hardening import _cli, _write
from test_hardening import _config as hardening_config

from mmr1.grpo import trainer as trainer_module
from mmr1.grpo.trainer import GRPOTrainer, _SignalGuard
from mmr1.models.adapters import QwenVLAdapter

STEPS = 5


pytestmark = pytest.mark.usefixtures("fresh_plugins")


def _config(model, out, **over) -> dict:
    return hardening_config(model, out, **{"max_steps": STEPS, **over})


def _weights(folder: Path) -> dict:
    return QwenVLAdapter.load_model(str(folder), torch.float32).state_dict()


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def _steps(path: Path) -> list[int]:
    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def straight(tiny_vl, tmp_path_factory):
    """Final weights of an uninterrupted run of STEPS steps."""
    out = tmp_path_factory.mktemp("straight") / "out"
    GRPOTrainer(_config_built(tiny_vl, out)).train()
    return _weights(out / "final")


def _config_built(model, out, **over):
    from mmr1.config import build_config

    return build_config(_config(model, out, **over))


def _signal_during(monkeypatch, plan: dict[int, list[int]]):
    """Send this process the signals ``plan[k]`` as the rollout after step k starts (i.e. during step k + 1)."""
    original = GRPOTrainer.rollout

    def rollout(self):
        for signum in plan.pop(self.global_step, []):
            os.kill(os.getpid(), signum)
        return original(self)

    monkeypatch.setattr(GRPOTrainer, "rollout", rollout)


def _resume_and_compare(tmp_path, capsys, path: Path, out: Path, straight: dict) -> float:
    code, stdout, err = _cli(capsys, "train", path, "--resume_from_checkpoint", "latest")
    assert code == 0, err
    assert f"done: {STEPS} steps" in stdout
    diff = _max_diff(_weights(out / "final"), straight)
    assert diff == 0.0
    assert _steps(out / "metrics.jsonl") == list(range(1, STEPS + 1))
    return diff


# ------------------------------------------------------------------------------------ SIGINT / SIGTERM


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_saves_a_checkpoint_that_resumes_exactly(tiny_vl, tmp_path, monkeypatch, capsys, straight,
                                                          signum, code):
    """save_steps 0 (the default): the signal during step 3 still leaves checkpoint-3; resuming ends bit-identical."""
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    out = tmp_path / "out"
    path = _write(tmp_path / "run.json", _config(tiny_vl, out))
    _signal_during(monkeypatch, {2: [signum]})
    got, stdout, err = _cli(capsys, "train", path)
    name = signal.Signals(signum).name
    assert got == code
    assert (f"mmr1 train: interrupted by {name} after step 3 of {STEPS}; checkpoint written to {out}/checkpoint-3; "
            f"resume with: mmr1 train {path} --resume_from_checkpoint latest (or set resume_from_checkpoint: "
            f"latest in the config)") in err
    assert "Traceback" not in err and "done" not in stdout
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-3", "metrics.jsonl"]
    assert {s: signal.getsignal(s) for s in before} == before          # the handlers are given back
    monkeypatch.undo()
    _resume_and_compare(tmp_path, capsys, path, out, straight)


def test_a_signal_during_a_checkpoint_lets_it_finish_and_stops_there(tiny_vl, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    path = _write(tmp_path / "run.json", _config(tiny_vl, out, save_steps=2))
    original = trainer_module.save_checkpoint

    def interrupted_save(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        return original(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "save_checkpoint", interrupted_save)
    code, _, err = _cli(capsys, "train", path)
    assert code == 130
    assert (f"interrupted by SIGINT at step 2 of {STEPS}; the checkpoint {out}/checkpoint-2 holds this state; "
            f"resume with:") in err
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-2", "metrics.jsonl"]


def test_a_second_signal_aborts_at_once_and_a_quick_repeat_does_not(tiny_vl, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    path = _write(tmp_path / "run.json", _config(tiny_vl, out, save_steps=1))
    # two signals within repeat_window (a launcher forwarding what the process already got): one stop request
    _signal_during(monkeypatch, {2: [signal.SIGTERM, signal.SIGTERM]})
    code, _, err = _cli(capsys, "train", path)
    assert code == 143 and f"interrupted by SIGTERM at step 3 of {STEPS}" in err   # checkpoint-3 from save_steps
    # a second one after the window: raised from the handler, in the middle of step 4; nothing more is written
    monkeypatch.setattr(_SignalGuard, "repeat_window", 0.0)
    _signal_during(monkeypatch, {3: [signal.SIGINT, signal.SIGINT]})
    code, _, err = _cli(capsys, "train", path, "--resume_from_checkpoint", "latest")
    assert code == 130
    assert (f"mmr1 train: aborted by a second SIGINT during step 4 of {STEPS}: nothing more was saved; the last "
            f"complete checkpoint is {out}/checkpoint-3; resume with: mmr1 train {path} --resume_from_checkpoint "
            f"latest") in err
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2", "checkpoint-3"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_signal_while_final_is_written_still_leaves_final(tiny_vl, tmp_path, monkeypatch, capsys, caplog,
                                                          straight):
    """Ctrl-C during save_final: final/ completes, exit 0. A double Ctrl-C there leaves .final.tmp, cleaned next."""
    from transformers import PreTrainedModel

    out = tmp_path / "out"
    path = _write(tmp_path / "run.json", _config(tiny_vl, out, save_steps=2))
    original = PreTrainedModel.save_pretrained
    sends = [signal.SIGINT]

    def save_pretrained(self, folder, *args, **kwargs):
        result = original(self, folder, *args, **kwargs)     # the weights are on disk, the processor is not yet
        if Path(folder).name == ".final.tmp":
            for signum in sends:
                os.kill(os.getpid(), signum)
        return result

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", save_pretrained)
    code, stdout, err = _cli(capsys, "train", path)
    assert code == 0 and f"done: {STEPS} steps" in stdout
    assert "mmr1 train: SIGINT arrived after the last step; final/ is complete, nothing to resume" in err
    assert (out / "final" / "model.safetensors").is_file() and not (out / ".final.tmp").exists()

    monkeypatch.setattr(_SignalGuard, "repeat_window", 0.0)
    sends[:] = [signal.SIGINT, signal.SIGINT]
    code, _, err = _cli(capsys, "train", path, "--output_dir", tmp_path / "two")
    assert code == 130
    assert (f"aborted by a second SIGINT while writing final/: nothing more was saved; the last complete checkpoint "
            f"is {tmp_path}/two/checkpoint-4") in err
    assert (tmp_path / "two" / ".final.tmp").is_dir() and not (tmp_path / "two" / "final").exists()
    (tmp_path / "two" / ".checkpoint-5.tmp").mkdir()        # as a kill during a save leaves it
    monkeypatch.undo()
    with caplog.at_level(logging.WARNING, "mmr1.train"):
        code, _, err = _cli(capsys, "train", path, "--output_dir", tmp_path / "two", "--resume_from_checkpoint",
                            "latest")
    assert code == 0, err
    assert (f"removed 2 temporary folder(s) left in {tmp_path}/two by an interrupted save: .checkpoint-5.tmp, "
            f".final.tmp") in caplog.text
    assert not list((tmp_path / "two").glob(".*.tmp"))
    assert _max_diff(_weights(tmp_path / "two" / "final"), straight) == 0.0


def test_before_the_first_step_nothing_is_saved(tiny_vl, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    path = _write(tmp_path / "run.json", _config(tiny_vl, out))
    original = GRPOTrainer._next_save

    def next_save(self):                        # called once in train(), just before the loop
        os.kill(os.getpid(), signal.SIGTERM)
        return original(self)

    monkeypatch.setattr(GRPOTrainer, "_next_save", next_save)
    code, _, err = _cli(capsys, "train", path)
    assert code == 143
    assert ("mmr1 train: interrupted by SIGTERM before the first step; nothing was trained, nothing to save; "
            "nothing to resume: run the same command again") in err
    assert not list(out.glob("checkpoint-*"))


# ---------------------------------------------------------------------------------------- logs on resume


def test_resume_truncates_the_logs_to_the_checkpoint(tiny_vl, tmp_path, monkeypatch, caplog, straight):
    """A crash after step 3 with checkpoint-2: the resumed run logs steps 3.. again, each step ends up once."""
    cfg = _config_built(tiny_vl, tmp_path / "out", save_steps=2, log_completions=True, num_completions_to_log=2)
    train_until_crash(GRPOTrainer(cfg), monkeypatch, after_step=3)
    out = tmp_path / "out"
    assert _steps(out / "metrics.jsonl") == [1, 2, 3]
    with (out / "metrics.jsonl").open("a") as f:
        f.write('{"step": 4, "rew')                          # a line cut by a kill
    import dataclasses

    with caplog.at_level(logging.WARNING, "mmr1.train"):
        GRPOTrainer(dataclasses.replace(cfg, resume_from_checkpoint="latest")).train()
    assert _steps(out / "metrics.jsonl") == [1, 2, 3, 4, 5]
    assert _steps(out / "completions.jsonl") == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert f"{out}/metrics.jsonl: dropped 2 record(s) past step 2, the step this run starts from" in caplog.text
    assert _max_diff(_weights(out / "final"), straight) == 0.0


def test_latest_without_a_checkpoint_warns_and_starts_at_0(tiny_vl, tmp_path, capsys, caplog):
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"step": 1}\n')      # from an attempt killed before its first checkpoint
    path = _write(tmp_path / "run.json", _config(tiny_vl, out, max_steps=1))
    with caplog.at_level(logging.WARNING, "mmr1.train"):
        code, stdout, _ = _cli(capsys, "train", path, "--resume_from_checkpoint", "latest")
    assert code == 0 and "done: 1 steps" in stdout
    assert f"resume_from_checkpoint: latest: no checkpoint in {out}; starting from step 0" in caplog.text
    assert _steps(out / "metrics.jsonl") == [1]


# ------------------------------------------------------------------------------- full disk, read-only


def _fail_saves(monkeypatch, folder_name: str, err: int = errno.ENOSPC):
    """Make the model's save_pretrained raise ``err`` (after writing a first file) in folders named folder_name."""
    from transformers import PreTrainedModel

    original = PreTrainedModel.save_pretrained

    def save_pretrained(self, folder, *args, **kwargs):
        if Path(folder).name == folder_name or Path(folder).parent.name == folder_name:
            Path(folder).mkdir(parents=True, exist_ok=True)
            (Path(folder) / "partial.bin").write_bytes(b"\0" * 1024)
            raise OSError(err, os.strerror(err))
        return original(self, folder, *args, **kwargs)

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", save_pretrained)


def test_a_full_disk_at_a_checkpoint_is_one_line_and_exit_3(tiny_vl, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    path = _write(tmp_path / "run.json", _config(tiny_vl, out, save_steps=1))
    _fail_saves(monkeypatch, ".checkpoint-2.tmp")
    code, _, err = _cli(capsys, "train", path)
    assert code == 3
    assert (f"mmr1 train: stopped: could not write checkpoint-2 to {out}: No space left on device; free space or "
            f"point output_dir elsewhere; the last complete checkpoint is {out}/checkpoint-1 (resume from it with "
            f"resume_from_checkpoint: latest)") in err
    assert "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-1", "metrics.jsonl"]   # the temp folder is gone


def test_a_full_disk_at_final_says_no_checkpoint_exists(tiny_vl, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    path = _write(tmp_path / "run.json", _config(tiny_vl, out, max_steps=1))
    _fail_saves(monkeypatch, ".final.tmp", errno.EROFS)
    code, _, err = _cli(capsys, "train", path)
    assert code == 3
    assert (f"mmr1 train: stopped: could not write final/ to {out}: Read-only file system; make {out} writable or "
            f"point output_dir elsewhere; there is no complete checkpoint (save_steps: 0 saves only at the end)") in err
    assert sorted(p.name for p in out.iterdir()) == ["metrics.jsonl"]


def _forbid_model_loading(monkeypatch):
    def no_loading(*args, **kwargs):
        raise AssertionError("model loaded")

    monkeypatch.setattr(QwenVLAdapter, "load_model", classmethod(no_loading))
    monkeypatch.setattr(QwenVLAdapter, "load_processor", classmethod(no_loading))


def test_output_dir_under_a_file_exits_2_before_the_model(tiny_vl, tmp_path, monkeypatch, capsys):
    _forbid_model_loading(monkeypatch)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    path = _write(tmp_path / "run.json", _config(tiny_vl, blocker / "out"))
    code, _, err = _cli(capsys, "train", path)
    assert code == 2
    assert (f"mmr1 train: error: output_dir {blocker}/out is under {blocker}, which is a file, not a folder; "
            f"point output_dir elsewhere") in err
    assert "model loaded" not in err and "Traceback" not in err


def test_read_only_output_dir_exits_2_before_the_model(tiny_vl, tmp_path, monkeypatch, capsys):
    """chmod when it binds (not root); as root, where it does not, the write is refused by a monkeypatch."""
    _forbid_model_loading(monkeypatch)
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        (parent / "probe").write_text("x")
        root_writes = True
    except PermissionError:
        root_writes = False
    reason = "Permission denied"
    if root_writes:
        (parent / "probe").unlink()
        from mmr1.grpo import checkpoint

        def read_only(*args, **kwargs):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))

        monkeypatch.setattr(checkpoint.tempfile, "mkstemp", read_only)
        reason = "Read-only file system"
    try:
        path = _write(tmp_path / "run.json", _config(tiny_vl, parent / "out"))
        code, _, err = _cli(capsys, "train", path)
    finally:
        parent.chmod(0o755)
    assert code == 2
    assert (f"mmr1 train: error: output_dir {parent}/out is not writable (it would be created in {parent}): "
            f"{reason}; make it writable or point output_dir elsewhere") in err
    assert "model loaded" not in err and not (parent / "out").exists()


# ------------------------------------------------------------------------------- a real `mmr1 train`

RUN_SCRIPT = '''
import os, sys, time
import torch
from mmr1.cli import main
from mmr1.grpo.trainer import GRPOTrainer, _SignalGuard

torch.set_num_threads(1)
hold_at, block = int(os.environ["HOLD_AT"]), os.environ["BLOCK"]
_SignalGuard.hard_exit_after = float(os.environ.get("HARD_EXIT_AFTER", "5"))
original = GRPOTrainer.rollout

def rollout(self):
    if self.global_step == hold_at:
        open(os.environ["MARK"], "w").close()           # the test sends its signals now
        if block == "python":
            time.sleep(120)                             # interruptible: Python runs the handler at once
        elif block == "c":
            os.system("exec sleep 120")                 # stuck in C (system() waits): only the watcher can act
        else:
            time.sleep(float(block))
    return original(self)

GRPOTrainer.rollout = rollout
sys.exit(main(["train", *sys.argv[1:]]))
'''


def _start(tmp_path, config: Path, hold_at: int, block: str, **env) -> tuple[subprocess.Popen, Path]:
    script = tmp_path / "run_held.py"
    script.write_text(RUN_SCRIPT)
    mark = tmp_path / "held"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "HOLD_AT": str(hold_at),
           "BLOCK": block, "MARK": str(mark), **env}
    proc = subprocess.Popen([sys.executable, str(script), str(config)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while not mark.exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return proc, mark


def _finish(proc: subprocess.Popen, timeout: float) -> tuple[int, str]:
    """Wait for the exit (not for the pipes: a `sleep` child of the C-stuck case holds them), then end its group."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)              # the test's own process group (start_new_session)
    except ProcessLookupError:
        pass
    _, err = proc.communicate()
    return proc.returncode, err


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_mmr1_train_subprocess_stops_with_a_checkpoint(tiny_vl, tmp_path, capsys, straight, signum, code):
    out = tmp_path / "out"
    config = _write(tmp_path / "run.json", _config(tiny_vl, out))
    proc, _ = _start(tmp_path, config, hold_at=2, block="0.5")
    proc.send_signal(signum)
    got, err = _finish(proc, 60)
    name = signal.Signals(signum).name
    assert got == code, err[-3000:]
    assert f"mmr1: {name} received during step 3 of {STEPS}: the step in progress finishes" in err
    assert f"mmr1 train: interrupted by {name} after step 3 of {STEPS}; checkpoint written to {out}/checkpoint-3" in err
    assert "Traceback" not in err
    _resume_and_compare(tmp_path, capsys, config, out, straight)


@pytest.mark.parametrize("block, signum", [("python", signal.SIGINT), ("c", signal.SIGTERM)],
                         ids=["python-SIGINT", "C-SIGTERM"])
def test_a_second_signal_ends_mmr1_train_at_once(tiny_vl, tmp_path, block, signum):
    """Held in time.sleep the handler aborts; held in C code (system()) the watcher thread exits the process.

    The hold (120 s) outlasts the wait (30 s): a process that did not end at the second signal is killed by the
    test and its exit status (-9) fails the assertion, so no clock is read."""
    out = tmp_path / "out"
    config = _write(tmp_path / "run.json", _config(tiny_vl, out, save_steps=1))
    proc, _ = _start(tmp_path, config, hold_at=2, block=block, HARD_EXIT_AFTER="1")
    proc.send_signal(signum)
    time.sleep(_SignalGuard.repeat_window + 0.3)
    proc.send_signal(signum)
    got, err = _finish(proc, 30)
    name = signal.Signals(signum).name
    assert got == 128 + signum, err[-3000:]
    if block == "python":
        assert (f"mmr1 train: aborted by a second {name} during step 3 of {STEPS}: nothing more was saved; the last "
                f"complete checkpoint is {out}/checkpoint-2") in err
    else:
        assert f"mmr1: {name} again and the main thread is stuck: exiting now without saving" in err
    assert "Traceback" not in err
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]


# ------------------------------------------------------------------------------------------- two ranks

RANK_SCRIPT = '''
import json, os, signal, sys
import torch
import torch.distributed as dist
from mmr1.config import build_config
from mmr1.grpo.trainer import GRPOTrainer, TrainingInterrupted

torch.set_num_threads(1)
original = GRPOTrainer.rollout

def rollout(self):
    if dist.get_rank() == 1 and self.global_step == 1:
        os.kill(os.getpid(), signal.SIGTERM)            # only rank 1 is told to stop
    return original(self)

GRPOTrainer.rollout = rollout
data = json.load(open(sys.argv[1]))
trainer = GRPOTrainer(build_config(data))
try:
    trainer.train()
    result = {"interrupted": False}
except TrainingInterrupted as exc:
    result = {"interrupted": True, "exit_code": exc.exit_code, "checkpoint": str(exc.checkpoint)}
result["step"] = trainer.global_step
json.dump(result, open(f"{data['output_dir']}/rank-{trainer.accelerator.process_index}.json", "w"))
'''


def test_a_signal_on_one_rank_stops_every_rank_at_the_same_step(tiny_vl, tmp_path):
    from launching import run_processes

    script = tmp_path / "rank_run.py"
    script.write_text(RANK_SCRIPT)
    out = tmp_path / "out"
    config = _write(tmp_path / "run.json", _config(tiny_vl, out, per_device_train_batch_size=4))
    run_processes([str(script), str(config)], processes=2, timeout=300)
    ranks = [json.loads((out / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert ranks == [{"interrupted": True, "exit_code": 143, "checkpoint": f"{out}/checkpoint-2", "step": 2}] * 2
    assert (out / "checkpoint-2" / "mmr1_state.json").is_file()
