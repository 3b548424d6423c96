"""Token extraction: encode a captioned image list once, save the codes for pretraining / SFT / GRPO.

Input: a JSON list (or JSONL) of ``{"image_path": ..., "caption": ...}`` rows (SimpleAR's format);
relative image paths are relative to the JSON file's folder. ``caption`` may be a string or a
short/long entry (``{"short": ..., "long": ...}`` or a list).

Output, for row ``i`` of the list, in ``out_dir/{i // 1000:05d}/``:

- ``{i:08d}.npy``: the codes, int64, shape ``(1, 1, h, w)`` (SimpleAR's layout);
- ``{i:08d}.txt``: the caption (``.json`` when the caption is not a plain string).

Every file is written to a temporary name and renamed, the label before the codes, so a code file
that exists is complete: a rerun skips those rows (resume after a crash or preemption). Under
``accelerate launch`` each process takes rows ``process_index, process_index + num_processes, ...``.
Unreadable images are reported (path and reason) and skipped. :func:`write_meta` then lists the
pairs in a meta JSON (SimpleAR's ``generate_meta``).

Command line (the ``mmr1 tokenize`` command delegates to :func:`tokenize_main`)::

    accelerate launch -m mmr1.imagegen.extract --data meta.json --out tokens/ \
        --tokenizer cosmos:/models/Cosmos-Tokenizer-DI16x16 --resolution 512
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = [
    "ExtractError",
    "ExtractSummary",
    "load_image_list",
    "center_crop_resize",
    "item_paths",
    "extract_tokens",
    "write_meta",
    "tokenize_main",
]

logger = logging.getLogger(__name__)


class ExtractError(ValueError):
    """The input list or the output folder is unusable; the message names the file."""


@dataclass
class ExtractSummary:
    """What one process did (``mmr1 tokenize`` gathers them over processes)."""

    out_dir: str
    total: int = 0  # rows in the input list
    assigned: int = 0  # rows this process was responsible for
    encoded: int = 0
    skipped: int = 0  # already extracted by an earlier run
    failed: int = 0
    failures: list = field(default_factory=list)  # [image path (or row), reason]

    def merge(self, other: "ExtractSummary") -> "ExtractSummary":
        return ExtractSummary(
            out_dir=self.out_dir,
            total=max(self.total, other.total),
            assigned=self.assigned + other.assigned,
            encoded=self.encoded + other.encoded,
            skipped=self.skipped + other.skipped,
            failed=self.failed + other.failed,
            failures=self.failures + other.failures,
        )


def load_image_list(meta_json) -> list:
    """The rows of a ``[{image_path, caption}]`` JSON list or JSONL file (rows are checked later, one by one)."""
    path = Path(meta_json)
    if not path.is_file():
        raise ExtractError(f"image list {str(path)!r} does not exist (a JSON list of {{image_path, caption}})")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".jsonl":
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            rows = json.loads(text)
    except ValueError as exc:
        raise ExtractError(f"image list {str(path)!r} is not valid JSON: {exc}") from exc
    if isinstance(rows, dict):  # a single object, as in SimpleAR's README example
        rows = [rows]
    if not isinstance(rows, list):
        raise ExtractError(f"image list {str(path)!r} must be a JSON list of {{image_path, caption}} rows")
    return rows


def center_crop_resize(image: Image.Image, resolution: int) -> Image.Image:
    """Centre-crop to a square (the shorter side) and resize to ``resolution`` (bicubic), RGB."""
    image = image.convert("RGB")
    w, h = image.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    image = image.crop((left, top, left + side, top + side))
    if side != resolution:
        image = image.resize((resolution, resolution), Image.BICUBIC)
    return image


def item_paths(out_dir, index: int, caption=None) -> tuple[Path, Path]:
    """(code file, label file) of row ``index``; the label is ``.json`` for non-string captions."""
    folder = Path(out_dir) / f"{index // 1000:05d}"
    suffix = ".txt" if caption is None or isinstance(caption, str) else ".json"
    return folder / f"{index:08d}.npy", folder / f"{index:08d}{suffix}"


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _load_tokenizer(tokenizer, **options):
    if isinstance(tokenizer, (str, os.PathLike)):
        from mmr1.imagegen.tokenizers import load_image_tokenizer

        return load_image_tokenizer(str(tokenizer), **options)
    return tokenizer


def extract_tokens(
    meta_json,
    out_dir,
    tokenizer,
    resolution: int,
    accelerator=None,
    batch_size: int = 8,
    progress: bool = True,
) -> ExtractSummary:
    """Encode every image of ``meta_json`` into ``out_dir`` (see the module doc). Returns this process's summary.

    ``tokenizer``: an image tokenizer object (``encode(images) -> (B, h, w)``) or a spec such as
    ``"cosmos:/path"`` / ``"vq:/path"``. ``resolution`` must be a multiple of its ``downsample``.
    ``accelerator``: an ``accelerate.Accelerator`` (or anything with ``process_index``,
    ``num_processes``, ``is_local_main_process``) to shard the rows; None = one process.
    """
    meta_json = Path(meta_json)
    out_dir = Path(out_dir)
    tok = _load_tokenizer(tokenizer)
    resolution = int(resolution)
    down = int(getattr(tok, "downsample", 1) or 1)
    if resolution <= 0 or resolution % down:
        raise ExtractError(f"resolution {resolution} must be a positive multiple of the tokenizer's downsample {down}")
    rows = load_image_list(meta_json)
    rank = int(getattr(accelerator, "process_index", 0)) if accelerator is not None else 0
    world = int(getattr(accelerator, "num_processes", 1)) if accelerator is not None else 1
    show = progress and (accelerator is None or getattr(accelerator, "is_local_main_process", True))
    mine = list(range(rank, len(rows), world))
    summary = ExtractSummary(out_dir=str(out_dir), total=len(rows), assigned=len(mine))
    out_dir.mkdir(parents=True, exist_ok=True)

    from tqdm.auto import tqdm

    bar = tqdm(total=len(mine), desc=f"tokenize [{rank}/{world}]", disable=not show, unit="img")
    batch: list[tuple[int, Image.Image, object]] = []

    def fail(what, reason):
        summary.failed += 1
        summary.failures.append([str(what), reason])
        logger.warning("skipping %s: %s", what, reason)
        bar.update(1)

    def flush():
        if not batch:
            return
        codes = tok.encode([im for _, im, _ in batch])
        codes = np.asarray(codes.cpu() if hasattr(codes, "cpu") else codes).astype(np.int64)
        for (index, _, caption), grid in zip(batch, codes):
            code_path, label_path = item_paths(out_dir, index, caption)
            code_path.parent.mkdir(parents=True, exist_ok=True)
            # a .txt label is read back line by line (short, long caption): a string caption is one line
            label = " ".join(caption.split()) if isinstance(caption, str) else json.dumps(caption, ensure_ascii=False)
            _atomic_write(label_path, lambda f: f.write(label.encode("utf-8")))
            _atomic_write(code_path, lambda f: np.save(f, grid.reshape(1, 1, *grid.shape)))
            summary.encoded += 1
        bar.update(len(batch))
        batch.clear()

    try:
        for index in mine:
            row = rows[index]
            where = f"{meta_json} row {index}"
            if not isinstance(row, dict) or not row.get("image_path") or "caption" not in row:
                fail(where, "expected {\"image_path\": ..., \"caption\": ...}")
                continue
            caption = row["caption"]
            if not isinstance(caption, (str, dict, list)):
                fail(where, f"caption must be a string, {{short, long}} or a list, got {type(caption).__name__}")
                continue
            code_path, _ = item_paths(out_dir, index, caption)
            if code_path.exists():
                summary.skipped += 1
                bar.update(1)
                continue
            image_path = Path(row["image_path"])
            if not image_path.is_absolute():
                image_path = meta_json.parent / image_path
            try:
                with Image.open(image_path) as im:
                    image = center_crop_resize(im, resolution)
            except Exception as exc:  # noqa: BLE001 - any unreadable image is reported and skipped
                fail(image_path, f"{type(exc).__name__}: {exc}")
                continue
            batch.append((index, image, caption))
            if len(batch) >= batch_size:
                flush()
        flush()
    finally:
        bar.close()
    return summary


def write_meta(out_dir, meta_path, relative: bool = True) -> int:
    """Write the meta JSON ``[{code_path, label_path}, ...]`` of every extracted row in ``out_dir``.

    Paths are relative to the meta file's folder unless ``relative=False``. Rows are in input
    order. A code file without its label is left out (with a warning). Returns the row count.
    """
    out_dir, meta_path = Path(out_dir), Path(meta_path)
    if not out_dir.is_dir():
        raise ExtractError(f"token folder {str(out_dir)!r} does not exist: run extract_tokens first")
    base = meta_path.parent.resolve()
    rows = []
    for code in sorted(p for p in out_dir.rglob("*.npy") if not p.name.startswith(".")):
        label = next((code.with_suffix(s) for s in (".txt", ".json") if code.with_suffix(s).is_file()), None)
        if label is None:
            logger.warning("code file %s has no label (.txt / .json) next to it: left out", code)
            continue
        if relative:
            pair = {"code_path": os.path.relpath(code.resolve(), base), "label_path": os.path.relpath(label.resolve(), base)}
        else:
            pair = {"code_path": str(code.resolve()), "label_path": str(label.resolve())}
        rows.append(pair)
    meta_path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(meta_path, lambda f: f.write(json.dumps(rows, indent=1).encode("utf-8")))
    return len(rows)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mmr1 tokenize",
        description="Encode a [{image_path, caption}] JSON list into image codes (resumable; shards under accelerate launch).",
    )
    p.add_argument("--data", required=True, help="JSON list (or JSONL) of {image_path, caption}")
    p.add_argument("--out", required=True, help="output folder for the codes and captions")
    p.add_argument("--tokenizer", required=True, help="image tokenizer NAME:PATH, e.g. cosmos:/models/Cosmos-Tokenizer-DI16x16 or vq:runs/vq")
    p.add_argument("--resolution", type=int, default=512, help="square side after centre-crop and resize (default 512)")
    p.add_argument("--batch-size", type=int, default=8, help="images per encoder call (default 8)")
    p.add_argument("--meta", default=None, help="meta JSON to write when done (default OUT/meta.json)")
    p.add_argument("--device", default=None, help="device for the tokenizer (default: this process's accelerator device)")
    p.add_argument("--dtype", default=None, help="tokenizer dtype when it takes one (cosmos: float32 | bfloat16)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--strict", action="store_true", help="exit with status 1 if any image failed")
    return p


def tokenize_main(args: list[str] | None = None) -> int:
    """``mmr1 tokenize`` entry point; returns the exit status."""
    opts = _parser().parse_args(args)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        from accelerate import Accelerator

        accelerator = Accelerator()
    except Exception as exc:  # noqa: BLE001 - accelerate missing or no usable backend: one process
        logger.info("accelerate unavailable (%s): running as one process", exc)
        accelerator = None
    from mmr1.imagegen.tokenizers import load_image_tokenizer

    name = opts.tokenizer.partition(":")[0]
    options = {}
    try:
        from mmr1.plugins import get_image_tokenizer

        load_params = inspect.signature(get_image_tokenizer(name).load).parameters
    except Exception:  # noqa: BLE001 - a bare folder spec, or a plugin whose load takes **options
        load_params = {}
    device = opts.device or (str(accelerator.device) if accelerator is not None else None)
    if device and "device" in load_params:
        options["device"] = device
    if opts.dtype:
        options["dtype"] = opts.dtype
    try:
        tok = load_image_tokenizer(opts.tokenizer, **options)
        summary = extract_tokens(opts.data, opts.out, tok, opts.resolution, accelerator=accelerator,
                                 batch_size=opts.batch_size, progress=not opts.no_progress)
    except Exception as exc:  # noqa: BLE001 - user-facing: one line, not a traceback
        if type(exc).__name__ in ("ExtractError", "ImageTokenizerError", "RegistryError"):
            print(f"mmr1 tokenize: error: {exc}", file=sys.stderr)
            return 2
        raise
    if accelerator is not None and accelerator.num_processes > 1:
        from accelerate.utils import gather_object

        parts = gather_object([summary])
        accelerator.wait_for_everyone()
        total = parts[0]
        for part in parts[1:]:
            total = total.merge(part)
        summary = total
    is_main = accelerator is None or accelerator.is_main_process
    if is_main:
        meta = Path(opts.meta) if opts.meta else Path(opts.out) / "meta.json"
        n = write_meta(opts.out, meta)
        print(
            f"tokenized {summary.total} rows into {opts.out}: {summary.encoded} encoded, {summary.skipped} already "
            f"done, {summary.failed} failed; meta file {meta} lists {n} pairs"
        )
        for what, reason in summary.failures[:20]:
            print(f"  failed: {what}: {reason}")
        if summary.failed > 20:
            print(f"  ... and {summary.failed - 20} more")
    if accelerator is not None:
        accelerator.wait_for_everyone()
        accelerator.end_training()          # the process group ends before the interpreter does
    return 1 if opts.strict and summary.failed else 0


if __name__ == "__main__":
    sys.exit(tokenize_main())
