"""Atomic checkpoints: model, processor, optimizer, scheduler, RNG states and the data position."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

STATE_FILE = "mmr1_state.json"
_PATTERN = re.compile(r"^checkpoint-(\d+)$")


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
                    total_limit: int | None = None) -> Path:
    """Write ``checkpoint-{step}`` via a temp folder renamed into place, so a crash leaves no half checkpoint."""
    root = Path(output_dir)
    final = root / f"checkpoint-{step}"
    tmp = root / f".checkpoint-{step}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp / "accelerate"))
    if accelerator.is_main_process:
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
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, path: str | Path) -> dict:
    """Restore model/optimizer/scheduler/RNG through accelerate; return the trainer state."""
    path = Path(path)
    accelerator.load_state(str(path / "accelerate"))
    return json.loads((path / STATE_FILE).read_text())
