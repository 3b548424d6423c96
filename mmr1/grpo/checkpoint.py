"""Atomic checkpoints: model, processor, optimizer, scheduler, RNG states and the data position."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

STATE_FILE = "mmr1_state.json"
_PATTERN = re.compile(r"^checkpoint-(\d+)$")
#: Temporary folders of a save in progress; a crash or a kill leaves them behind (see :func:`remove_stale_tmp`).
TMP_PATTERNS = (".checkpoint-*.tmp", ".final.tmp")


class OutputDirError(Exception):
    """``output_dir`` cannot be written (read-only, no permission, a file in the way), found before training."""


def check_output_dir(output_dir: str | Path) -> None:
    """Raise :class:`OutputDirError` unless ``output_dir`` (or the folder it would be created in) takes a file.

    Creates nothing that stays: a probe file is written in the nearest existing folder and removed, so a check
    that fails, or a run refused later for another reason, leaves no folder behind.
    """
    path = Path(output_dir)
    probe_dir = path.absolute()
    while not probe_dir.exists() and probe_dir.parent != probe_dir:
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        where = "is a file" if probe_dir == path.absolute() else f"is under {probe_dir}, which is a file"
        raise OutputDirError(f"output_dir {path} {where}, not a folder; point output_dir elsewhere")
    try:
        fd, name = tempfile.mkstemp(prefix=".mmr1-write-test-", dir=probe_dir)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        where = "" if probe_dir == path.absolute() else f" (it would be created in {probe_dir})"
        fix = "free space" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "make it writable"
        raise OutputDirError(f"output_dir {path} is not writable{where}: {exc.strerror or exc}; "
                             f"{fix} or point output_dir elsewhere") from None


def remove_stale_tmp(output_dir: str | Path) -> list[str]:
    """Delete the temporary folders an interrupted save left in ``output_dir``; return their names."""
    root = Path(output_dir)
    found = sorted({p for pattern in TMP_PATTERNS for p in root.glob(pattern) if p.is_dir()})
    for p in found:
        shutil.rmtree(p, ignore_errors=True)
    return [p.name for p in found]


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints in ``output_dir``, oldest first (temp folders are ignored)."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _PATTERN.match(p.name))
             and (p / STATE_FILE).is_file()]
    return [p for _, p in sorted(found)]


def resolve_resume(spec: str | None, output_dir: str | Path) -> Path | None:
    """``latest`` -> newest checkpoint in output_dir (None if none); a path -> that checkpoint."""
    if not spec:
        return None
    if spec == "latest":
        found = list_checkpoints(output_dir)
        return found[-1] if found else None
    path = Path(spec)
    if not (path / STATE_FILE).is_file():
        raise FileNotFoundError(f"resume_from_checkpoint: {path} is not a complete mmr1 checkpoint "
                                f"(no {STATE_FILE}); use 'latest' or a checkpoint-N folder")
    return path


def save_checkpoint(accelerator, scorer, processor, state: dict, output_dir: str | Path, step: int,
                    total_limit: int | None = None, any_rank=None) -> Path:
    """Write ``checkpoint-{step}`` via a temp folder renamed into place, so a crash leaves no half checkpoint.

    An ``OSError`` while writing (full disk, read-only folder) removes the temp folder and is raised on every
    process: ``any_rank(flag)`` (the trainer's reduction; identity for one process) makes the processes agree
    after each phase, so none is left waiting at a barrier.
    """
    root = Path(output_dir)
    final = root / f"checkpoint-{step}"
    tmp = root / f".checkpoint-{step}.tmp"
    any_rank = any_rank or bool
    main = accelerator.is_main_process

    def start():
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)

    def write_model():
        model = accelerator.unwrap_model(scorer).model
        model.save_pretrained(tmp / "model", safe_serialization=True)
        if processor is not None:
            processor.save_pretrained(tmp / "model")
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=2))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        if total_limit:
            for old in list_checkpoints(root)[:-total_limit]:
                shutil.rmtree(old, ignore_errors=True)

    for phase, everyone in ((start, False), (lambda: accelerator.save_state(str(tmp / "accelerate")), True),
                            (write_model, False)):
        error = None
        if everyone or main:
            try:
                phase()
            except OSError as exc:
                error = exc
        accelerator.wait_for_everyone()
        if any_rank(error is not None):
            if main:
                shutil.rmtree(tmp, ignore_errors=True)
            raise error or OSError(f"another process could not write {tmp}")
    return final


def load_checkpoint(accelerator, path: str | Path) -> dict:
    """Restore model/optimizer/scheduler/RNG through accelerate; return the trainer state."""
    path = Path(path)
    accelerator.load_state(str(path / "accelerate"))
    return json.loads((path / STATE_FILE).read_text())
