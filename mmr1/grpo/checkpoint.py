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


def model_state(accelerator, wrapped) -> dict | None:
    """The full state dict of ``wrapped.model`` on the main process (None on the others), keys as that model names them.

    Collective: every process must call it. ``accelerator.get_state_dict`` gathers what ZeRO-3 and FSDP keep sharded,
    so the tensors are whole even where the live parameters are partitions or empty.
    """
    from torch.distributed.tensor import DTensor

    state = accelerator.get_state_dict(wrapped)
    # FSDP2 on torch 2.13 can hand back DTensors on every rank: make them whole here, where all ranks take part
    state = {k.removeprefix("model."): v.full_tensor() if isinstance(v, DTensor) else v for k, v in state.items()}
    if not accelerator.is_main_process:
        return None
    first_name: dict[int, str] = {}        # tied weights stay one tensor, so save_pretrained writes them once
    for name, p in accelerator.unwrap_model(wrapped).model.named_parameters(remove_duplicate=False) if state else ():
        first = first_name.setdefault(id(p), name)
        if first != name and first in state and name in state:
            state[name] = state[first]
    return state


def save_model(accelerator, wrapped, processor, path: str | Path, merge_lora: bool = False) -> None:
    """``wrapped.model`` (gathered, see :func:`model_state`) and its processor into ``path``; the main process writes.

    Collective. ``merge_lora`` folds LoRA adapters into the base weights in place first (the live weights, which are
    whole on one process and under DDP), so the folder loads without peft.
    """
    state = model_state(accelerator, wrapped)
    if not accelerator.is_main_process:
        return
    model = accelerator.unwrap_model(wrapped).model
    if merge_lora:
        model, state = model.merge_and_unload(), None
    model.save_pretrained(path, state_dict=state, safe_serialization=True)
    if processor is not None:
        processor.save_pretrained(path)


def _any_rank(accelerator):
    """``flag -> bool``: True on every process when ``flag`` holds on any."""
    import torch

    def reduce(flag: bool) -> bool:
        if accelerator.num_processes == 1:
            return flag
        return accelerator.reduce(torch.tensor([float(flag)], device=accelerator.device), reduction="sum").item() > 0

    return reduce


def _write_atomically(accelerator, tmp: Path, final: Path, phases, any_rank=None) -> Path:
    """Run ``phases`` (``(fn(tmp), everyone)``, main process only unless ``everyone``) into ``tmp``, then rename it
    to ``final``.

    An ``OSError`` in any phase removes ``tmp`` and is raised on every process: ``any_rank(flag)`` makes the processes
    agree after each phase, so none is left waiting at a barrier.
    """
    any_rank = any_rank or _any_rank(accelerator)
    main = accelerator.is_main_process

    def start(_tmp):
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)

    def finish(_tmp):
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)

    for phase, everyone in ((start, False), *phases, (finish, False)):
        error = None
        if everyone or main:
            try:
                phase(tmp)
            except OSError as exc:
                error = exc
        accelerator.wait_for_everyone()
        if any_rank(error is not None):
            if main:
                shutil.rmtree(tmp, ignore_errors=True)
            raise error or OSError(f"another process could not write {tmp}")
    return final


def save_checkpoint(accelerator, wrapped, processor, state: dict, output_dir: str | Path, step: int,
                    total_limit: int | None = None, any_rank=None) -> Path:
    """Write ``checkpoint-{step}`` via a temp folder renamed into place, so a crash leaves no half checkpoint.

    It holds ``accelerate/`` (optimizer, scheduler, RNG states), ``model/`` (:func:`save_model`) and ``state``; the
    oldest checkpoints beyond ``total_limit`` are then deleted. Collective; errors as in :func:`_write_atomically`.
    """
    root = Path(output_dir)

    def write_state(tmp):
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=2))

    final = _write_atomically(accelerator, root / f".checkpoint-{step}.tmp", root / f"checkpoint-{step}", (
        (lambda tmp: accelerator.save_state(str(tmp / "accelerate")), True),
        (lambda tmp: save_model(accelerator, wrapped, processor, tmp / "model"), True),
        (write_state, False)), any_rank)
    if total_limit and accelerator.is_main_process:
        for old in list_checkpoints(root)[:-total_limit]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def save_final(accelerator, wrapped, processor, output_dir: str | Path, merge_lora: bool = False,
               any_rank=None) -> Path:
    """``final/`` (:func:`save_model`) via ``.final.tmp`` renamed into place. Collective; errors as in
    :func:`_write_atomically`."""
    root = Path(output_dir)
    return _write_atomically(accelerator, root / ".final.tmp", root / "final", (
        (lambda tmp: save_model(accelerator, wrapped, processor, tmp, merge_lora), True),), any_rank)


class LaunchError(ValueError):
    """A launch (accelerate config) whose checkpoint path is not verified for this run; found before weights load."""


def check_launch(accelerator, config, generates: bool) -> None:
    """Raise :class:`LaunchError`, one line naming the fix, when the launch is one mmr1 does not save correctly.

    Verified (tests): one process, DDP, FSDP2 (FULL_SHARD) for SFT. Reasoned: DeepSpeed ZeRO-2, and ZeRO-3 with
    ``zero3_save_16bit_model: true`` (accelerate gathers the 16-bit weights). Refused: everything else under FSDP or
    DeepSpeed, and LoRA where the parameters are sharded (``final/`` merges the live weights).
    """
    from accelerate.utils import DistributedType

    kind = accelerator.distributed_type
    if kind == DistributedType.FSDP:
        if generates:
            problem = ("GRPO under FSDP is not supported: rollouts generate with the unwrapped model, whose parameters "
                       "FSDP shards; launch with local_scripts/accelerate/ddp.yaml or zero3.yaml")
        elif accelerator.state.fsdp_plugin.fsdp_version != 2:
            problem = "FSDP version 1 is not verified for saving; set fsdp_version: 2 in the accelerate config"
        elif config.use_peft:
            problem = ("use_peft under FSDP: final/ merges LoRA into the live weights, which FSDP shards; set "
                       "use_peft: false or launch with local_scripts/accelerate/ddp.yaml")
        else:
            return
    elif kind == DistributedType.DEEPSPEED and accelerator.state.deepspeed_plugin.zero_stage == 3:
        zero = accelerator.state.deepspeed_plugin.deepspeed_config.get("zero_optimization", {})
        if not zero.get("stage3_gather_16bit_weights_on_model_save", False):
            problem = ("DeepSpeed ZeRO-3 without zero3_save_16bit_model would save partitioned weights; set "
                       "zero3_save_16bit_model: true in the accelerate config (local_scripts/accelerate/zero3.yaml)")
        elif config.use_peft:
            problem = ("use_peft under DeepSpeed ZeRO-3: final/ merges LoRA into the live weights, which ZeRO-3 "
                       "partitions; set use_peft: false or launch with local_scripts/accelerate/zero2.yaml")
        else:
            return
    else:
        return
    raise LaunchError(f"launch: {problem}")


def load_checkpoint(accelerator, path: str | Path) -> dict:
    """Restore model/optimizer/scheduler/RNG through accelerate; return the trainer state."""
    path = Path(path)
    accelerator.load_state(str(path / "accelerate"))
    return json.loads((path / STATE_FILE).read_text())
