"""Dataset loaders for text-to-image jobs (registered by :mod:`mmr1.imagegen.plugin`).

``captions`` (GRPO prompts)
    A JSON list, a JSONL file or a ``.txt`` file (one caption a line). JSON rows are plain strings
    or objects with a ``caption`` (also ``prompt`` / ``text``); a caption may be a short/long entry
    (``{"short": ..., "long": ...}``), of which the long one is the prompt. Rows become
    ``{"problem": caption, "solution": caption, "caption": caption, "image": []}``; other keys of
    an object row are kept as columns (rewards receive them).

``t2i_meta`` (pretrain / SFT)
    A meta JSON of ``{code_path, label_path}`` rows (:func:`mmr1.imagegen.extract.write_meta`)
    or a YAML mixture of meta files with sampling strategies (:func:`mmr1.imagegen.meta.load_mixture`).
    Rows are ``{"code_path", "label_path", "caption", "problem", "solution", "image": []}`` (plus
    ``caption_entry`` for a short/long label, see :func:`mmr1.imagegen.meta.read_label`); the
    caption file is read when a row is accessed, so a mixture of millions of rows loads quickly.
"""

from __future__ import annotations

import random
from pathlib import Path

from mmr1.data.dataset import RowDataset
from mmr1.data.json_loader import read_raw_rows
from mmr1.data.problems import DataProblem

__all__ = ["load_captions", "load_t2i_meta", "MetaRowDataset", "caption_text"]

CAPTION_KEYS = ("caption", "prompt", "text")


def caption_text(caption) -> str:
    """The prompt text of a caption entry: the string itself, or the long caption of a short/long entry."""
    from mmr1.imagegen.sequence import pick_caption

    return pick_caption(caption, sample_short=False)


def _caption_row(raw, source: str, index: int) -> tuple[dict | None, DataProblem | None]:
    if isinstance(raw, str):
        raw = {"caption": raw}
    if not isinstance(raw, dict):
        return None, DataProblem(source, index, f"expected a caption string or an object with 'caption', got {type(raw).__name__}")
    key = next((k for k in CAPTION_KEYS if raw.get(k) not in (None, "")), None)
    if key is None:
        return None, DataProblem(source, index, "no caption: expected a string or an object with a 'caption' "
                                                "(or 'prompt' / 'text') field")
    entry = raw[key]
    try:
        text = caption_text(entry)
    except ValueError as exc:
        return None, DataProblem(source, index, str(exc))
    if not isinstance(text, str) or not text.strip():
        return None, DataProblem(source, index, f"caption must be non-empty text, got {entry!r}")
    row = {k: v for k, v in raw.items() if k not in ("image", "images")}
    row.update(problem=text, solution=text, caption=text, image=[], _source=f"{source}:{index}")
    if key != "caption" or not isinstance(entry, str):
        row["caption_entry"] = entry
    return row, None


def load_captions(path: str | None = None, strict: bool = True, limit: int | None = None, **_) -> RowDataset:
    """Caption prompts for text-to-image GRPO (see the module doc).

    JSONL rows are numbered by line (1-based), JSON list rows and ``.txt`` lines by index
    (0-based / 1-based line). ``limit`` keeps the first N rows.
    """
    if not path:
        raise ValueError("dataset 'captions' needs dataset_path: a .json / .jsonl list of captions or a .txt file "
                         "with one caption a line")
    file = Path(path)
    source = str(file)
    if not file.is_file():
        raise FileNotFoundError(f"captions file not found: {file} (dataset_path is relative to where you run mmr1)")
    if file.suffix.lower() == ".txt":
        text = file.read_text(encoding="utf-8")
        raw_rows = [(i, line.strip()) for i, line in enumerate(text.splitlines(), start=1) if line.strip()]
        problems: list[DataProblem] = []
    else:
        raw_rows, problems = read_raw_rows(
            file, "a .json captions file must hold a list of captions or {caption} objects")
    rows = []
    for index, raw in raw_rows:
        row, problem = _caption_row(raw, source, index)
        if problem is not None:
            problems.append(problem)
        else:
            rows.append(row)
    if limit is not None:
        rows = rows[: int(limit)]
    if not rows and not problems:
        problems.append(DataProblem(source, None, "the file holds no captions"))
    dataset = RowDataset(rows, source, problems)
    if strict:
        dataset.raise_problems()
    return dataset


class MetaRowDataset(RowDataset):
    """Rows of a meta file / mixture; the caption file of a row is read when the row is accessed."""

    def __getitem__(self, index):
        from mmr1.imagegen.meta import looked_in, read_label

        row = self.rows[index]
        if "caption" in row:
            return row
        meta_file = row.get("meta_file", self.source)
        try:
            entry = read_label(row["label_path"])
        except FileNotFoundError:
            where = looked_in(row["label_path"], meta_file)
            raise ValueError(f"{meta_file}: row {row.get('_index', index)}: cannot read caption file "
                             f"{row['label_path']!r}: it does not exist ({where})") from None
        except (OSError, ValueError) as exc:
            raise ValueError(f"{meta_file}: row {row.get('_index', index)}: cannot read "
                             f"caption file {row['label_path']!r}: {exc}") from exc
        text = caption_text(entry)
        out = dict(row, caption=text, problem=text, solution=text)
        if not isinstance(entry, str):
            out["caption_entry"] = entry          # short/long: SFT's sample_short picks one
        return out

    def subsample(self, n: int | None, seed: int = 0) -> "MetaRowDataset":
        if n is None or n >= len(self.rows):
            return self
        picked = sorted(random.Random(seed).sample(range(len(self.rows)), n))
        return MetaRowDataset([self.rows[i] for i in picked], self.source, self.problems)


def load_t2i_meta(path: str | None = None, seed: int = 0, strict: bool = True, check_files: bool = False,
                  **_) -> MetaRowDataset:
    """Extracted tokens for pretraining / SFT: a meta JSON or a YAML mixture (see the module doc).

    ``seed`` drives the mixture's random sampling strategies. ``check_files: true`` checks that
    every code and caption file exists while loading (each missing file is a problem naming the
    meta file and row); otherwise a missing file is reported when its row is read.
    """
    from mmr1.imagegen.meta import MetaError, load_mixture, looked_in

    if not path:
        raise ValueError("dataset 't2i_meta' needs dataset_path: a meta JSON of {code_path, label_path} rows "
                         "(mmr1 tokenize writes one) or a YAML mixture of meta files")
    if not Path(path).is_file():
        raise FileNotFoundError(f"t2i_meta: {path} does not exist (a meta JSON written by `mmr1 tokenize`, or a "
                                f"mixture YAML listing meta files)")
    try:
        raw = load_mixture(path, seed=seed)
    except MetaError as exc:
        raise ValueError(f"t2i_meta: {exc}") from exc
    rows, problems = [], []
    for i, r in enumerate(raw):
        row = dict(r, image=[], _index=i, _source=f"{r.get('meta_file', path)}:{i}")
        if check_files:
            missing = [k for k in ("code_path", "label_path") if not Path(row[k]).is_file()]
            if missing:
                problems.append(DataProblem(row["meta_file"], i, ", ".join(
                    f"{k} {row[k]!r} does not exist ({looked_in(row[k], row['meta_file'])})" for k in missing)))
                continue
        rows.append(row)
    if not rows and not problems:
        problems.append(DataProblem(str(path), None, "no rows (empty meta file or every sampling strategy took 0 rows)"))
    dataset = MetaRowDataset(rows, str(path), problems)
    if strict:
        dataset.raise_problems()
    return dataset
