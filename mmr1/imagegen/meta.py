"""Meta files of extracted tokens, and YAML mixtures of several of them (SimpleAR / LLaVA style).

A *meta file* is a JSON list of ``{"code_path": ..., "label_path": ...}`` rows (written by
:func:`mmr1.imagegen.extract.write_meta`). Relative paths are looked for next to the meta file
(what ``write_meta`` writes), then in the launch folder (what SimpleAR's meta files mean); each
key is placed by the first row that has a relative path for it, so loading stays one pass.

A *label file* holds the caption: ``.json`` (a caption entry: string, ``{short, long}``, list) or
text. Text with one line is the caption; with two or more lines (SimpleAR) line 1 is the short
caption and line 2 the long one (further lines are ignored); blank lines do not count.

A *mixture* is a YAML file listing meta files, each with a ``sampling_strategy``::

    datasets:
      - json_path: tokens/cc3m/meta.json        # relative to this YAML file
        sampling_strategy: all
      - json_path: tokens/journeydb/meta.json
        sampling_strategy: random:100000
      - json_path: tokens/synthetic/meta.json
        sampling_strategy: 10%

Strategies: ``all``; ``first:N`` / ``end:N`` (the first / last N rows); ``random:N`` (N rows drawn
without replacement); ``N%`` (a random N% of the rows, rounded up). ``first:``, ``end:`` and
``random:`` also take ``N%``. Random draws depend only on ``seed`` and the entry's position, and
keep the file's row order. Asking for more rows than a file has takes them all (with a warning).
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
from pathlib import Path

import numpy as np
import torch

__all__ = ["MetaError", "load_meta", "load_mixture", "sample_rows", "load_codes", "read_label", "looked_in"]

logger = logging.getLogger(__name__)

_STRATEGY = re.compile(r"^(?:(first|end|random):)?\s*(\d+(?:\.\d+)?)\s*(%?)$")


class MetaError(ValueError):
    """A meta file or mixture is malformed; the message names the file and entry."""


def _base(rows: list, key: str, meta_dir: Path, path: Path) -> Path:
    """The folder relative ``key`` paths of one meta file are in: next to it, else the launch folder."""
    first = next((r[key] for r in rows if isinstance(r, dict) and isinstance(r.get(key), str)
                  and r[key] and not Path(r[key]).is_absolute()), None)
    if first is None or (meta_dir / first).exists():
        return meta_dir
    cwd = Path.cwd()
    if (cwd / first).exists():
        return cwd
    logger.warning("meta file %s: %s %r is neither next to the meta file (%s) nor in the launch folder (%s)",
                   path, key, first, meta_dir / first, cwd / first)
    return meta_dir


def looked_in(file, meta_file) -> str:
    """Where a meta row's (resolved) file was looked for, for error messages."""
    file, meta_dir, cwd = Path(file), Path(meta_file).absolute().parent, Path.cwd()
    for base in (meta_dir, cwd):
        try:
            rel = file.relative_to(base)
        except ValueError:
            continue
        places = list(dict.fromkeys([meta_dir / rel, cwd / rel]))
        return "looked in " + " and ".join(str(p) for p in places)
    return f"looked in {file}"


def load_meta(path) -> list[dict]:
    """Rows of a meta file, with ``code_path`` / ``label_path`` made absolute (module doc). Other keys are kept."""
    path = Path(path)
    if not path.is_file():
        raise MetaError(f"meta file {str(path)!r} does not exist")
    try:
        rows = json.loads(path.read_text())
    except ValueError as exc:
        raise MetaError(f"meta file {str(path)!r} is not valid JSON: {exc}") from exc
    if not isinstance(rows, list):
        raise MetaError(f"meta file {str(path)!r} must hold a JSON list of {{code_path, label_path}} rows, got {type(rows).__name__}")
    meta_dir = path.absolute().parent
    bases = {key: _base(rows, key, meta_dir, path) for key in ("code_path", "label_path")}
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not all(isinstance(row.get(k), str) and row[k] for k in bases):
            raise MetaError(f"meta file {str(path)!r}, row {i}: expected {{\"code_path\": ..., \"label_path\": ...}} "
                            f"(non-empty strings), got {row!r}")
        row = dict(row)
        for key, base in bases.items():
            p = Path(row[key])
            row[key] = str(p if p.is_absolute() else base / p)
        out.append(row)
    return out


def sample_rows(rows: list, strategy, seed: int = 0, where: str = "") -> list:
    """Apply one ``sampling_strategy`` to ``rows`` (see the module doc). ``where`` prefixes errors."""
    s = "all" if strategy is None else str(strategy).strip()
    if s.lower() == "all":
        return list(rows)
    m = _STRATEGY.match(s.lower())
    if not m:
        raise MetaError(
            f"{where}bad sampling_strategy {strategy!r}: use all, first:N, end:N, random:N or N% "
            f"(N a whole number; first/end/random also take N%)"
        )
    kind, number, percent = m.group(1) or "random", m.group(2), m.group(3)
    if percent:
        pct = float(number)
        if not 0 <= pct <= 100:
            raise MetaError(f"{where}bad sampling_strategy {strategy!r}: a percentage must be between 0 and 100")
        n = math.ceil(len(rows) * pct / 100.0)
    else:
        if "." in number:
            raise MetaError(f"{where}bad sampling_strategy {strategy!r}: N must be a whole number of rows")
        n = int(number)
        if not m.group(1):  # a bare number is ambiguous
            raise MetaError(f"{where}bad sampling_strategy {strategy!r}: write first:{n}, end:{n}, random:{n} or {n}%")
    if n > len(rows):
        logger.warning("%ssampling_strategy %r asks for %d rows but there are %d: taking all", where, strategy, n, len(rows))
        n = len(rows)
    if kind == "first":
        return list(rows[:n])
    if kind == "end":
        return list(rows[len(rows) - n :]) if n else []
    picked = sorted(random.Random(seed).sample(range(len(rows)), n))
    return [rows[i] for i in picked]


def load_mixture(yaml_path, seed: int = 0) -> list[dict]:
    """All rows of a mixture YAML (see the module doc), each meta file sampled by its strategy.

    A ``.json`` path is read as a single meta file (every row). Rows gain a ``meta_file`` key.
    """
    import yaml

    yaml_path = Path(yaml_path)
    if yaml_path.suffix.lower() == ".json":
        return [dict(r, meta_file=str(yaml_path)) for r in load_meta(yaml_path)]
    if not yaml_path.is_file():
        raise MetaError(f"mixture file {str(yaml_path)!r} does not exist")
    try:
        spec = yaml.safe_load(yaml_path.read_text())
    except yaml.YAMLError as exc:
        raise MetaError(f"mixture file {str(yaml_path)!r} is not valid YAML: {exc}") from exc
    entries = spec.get("datasets") if isinstance(spec, dict) else spec
    if not isinstance(entries, list) or not entries:
        raise MetaError(
            f"mixture file {str(yaml_path)!r} must have a non-empty `datasets:` list of "
            f"{{json_path, sampling_strategy}} entries"
        )
    out: list[dict] = []
    for i, entry in enumerate(entries):
        if isinstance(entry, str):
            entry = {"json_path": entry}
        if not isinstance(entry, dict):
            raise MetaError(f"{yaml_path}: datasets[{i}] must be a mapping with json_path and sampling_strategy, got {entry!r}")
        path = next((entry[k] for k in ("json_path", "meta_path", "path") if entry.get(k)), None)
        if path is None:
            raise MetaError(f"{yaml_path}: datasets[{i}] has no json_path (the meta file to read)")
        p = Path(path)
        if not p.is_absolute():
            p = yaml_path.parent / p
        where = f"{yaml_path}: datasets[{i}] ({path}): "
        if not p.is_file():
            raise MetaError(f"{where}meta file {str(p)!r} does not exist")
        try:
            rows = load_meta(p)
        except MetaError as exc:
            raise MetaError(f"{where}{exc}") from exc
        # a different but fixed seed per entry, so adding an entry does not reshuffle the others
        picked = sample_rows(rows, entry.get("sampling_strategy", "all"), seed=seed * 1_000_003 + i, where=where)
        out.extend(dict(r, meta_file=str(p)) for r in picked)
    return out


def load_codes(path) -> torch.Tensor:
    """Codes of one image as a LongTensor (h, w) (files hold SimpleAR's (1, 1, h, w))."""
    arr = np.load(path)
    arr = arr.reshape(arr.shape[-2:]) if arr.ndim >= 2 else arr
    return torch.from_numpy(np.ascontiguousarray(arr)).long()


def read_label(path):
    """The caption of one image: a caption entry (``.json``), or text (module doc): one line is the
    caption, two or more are ``{"short": line 1, "long": line 2}`` (SimpleAR)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        return json.loads(text)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) >= 2:
        return {"short": lines[0], "long": lines[1]}
    return lines[0] if lines else ""
