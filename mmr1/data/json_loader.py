"""The ``json`` loader: a ``.json`` list or a ``.jsonl`` file of ``{problem, solution, image}`` rows."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from mmr1.data.dataset import RowDataset
from mmr1.data.problems import DataProblem
from mmr1.data.rows import image_roots, rows_dataset

log = logging.getLogger("mmr1.data")

#: Files ``datasets``' ``save_to_disk`` writes: a folder holding one is loaded with ``load_from_disk``.
SAVED_DATASET_FILES = ("dataset_info.json", "state.json", "dataset_dict.json")


def is_saved_dataset(folder: Path) -> bool:
    """Whether ``folder`` was written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``."""
    return folder.is_dir() and any((folder / name).is_file() for name in SAVED_DATASET_FILES)


def read_raw_rows(file: Path, not_a_list: str) -> tuple[list[tuple[int, object]], list[DataProblem]]:
    """``(row number, parsed value)`` pairs of a JSON list (0-based index) or JSONL file (1-based line).

    Unparsable lines and a top-level value that is not a list become problems (``not_a_list`` says
    what the file should hold); nothing is raised.
    """
    source = str(file)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        line = exc.object[:exc.start].count(b"\n") + 1
        return [], [DataProblem(source, None, (
            f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} on line {line}); re-save the file as UTF-8, "
            f"e.g. iconv -f latin1 -t utf-8 {file.name} > utf8-{file.name}"))]
    problems: list[DataProblem] = []
    raw_rows: list[tuple[int, object]] = []
    suffix = file.suffix.lower()
    if suffix == ".json" or (text.lstrip().startswith("[") and suffix != ".jsonl"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            return [], [DataProblem(source, None, f"invalid JSON at line {exc.lineno}: {exc.msg}")]
        if not isinstance(data, list):
            return [], [DataProblem(source, None, not_a_list)]
        return list(enumerate(data)), []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw_rows.append((lineno, json.loads(line)))
        except json.JSONDecodeError as exc:
            problems.append(DataProblem(source, lineno, f"malformed JSON line: {exc.msg} (column {exc.colno})"))
    return raw_rows, problems


def missing_columns(columns, raw_rows, source: str, label: str) -> list[DataProblem]:
    """A ``columns`` mapping whose source column no row has: a typo that would otherwise be ignored."""
    if not isinstance(columns, dict) or not raw_rows:
        return []
    present = {k for raw in raw_rows if isinstance(raw, dict) for k in raw}
    names = sorted(map(str, present))
    problems = []
    for src, dst in columns.items():
        head = src.split(".")[0] if isinstance(src, str) and src not in present else src
        if head not in present:
            from mmr1.registry import did_you_mean

            what = f"{src!r} (to {dst!r}), which" if head == src else f"{src!r} (to {dst!r}), whose column {head!r}"
            problems.append(DataProblem(source, None, (
                f"dataset_kwargs: columns maps {what} no row of {label} has (its columns: "
                f"{', '.join(names) or 'none'}).{did_you_mean(str(head), names)} "
                f"Fix the name, or drop it from columns")))
    return problems


def load_json(path: str, columns: dict[str, str] | None = None, image_root: str | list[str] | None = None,
              image_folders: str | list[str] | None = None, image_dir: str | list[str] | None = None,
              strict: bool = True, **_) -> RowDataset:
    """Rows from a JSON list or a JSONL file (MMR1's ``{problem, solution, image}``, trl's ``prompt`` rows, ...).

    Rows are numbered as the file counts them: JSONL by line (1-based), a JSON list by index (0-based).
    Options (``dataset_kwargs``):

    - ``columns``: ``{yours: mmr1_name}`` copies a column to an mmr1 name (the original stays, so a reward may
      read either): ``{question: problem, answer: solution}``, or trl's ``{solution: ground_truth}``. A key
      may be a dotted path into nested fields, list indices as integers: VLM-R1's
      ``{conversations.0.value: problem, conversations.1.value: solution}``.
    - ``image_root``: the folder (or list of folders, looked in in order) relative image paths are under;
      VLM-R1's ``image_folders`` and EasyR1's ``image_dir`` are synonyms. A relative one is relative to the
      config file's folder, then the launch folder. Without it a relative image path is looked up next to
      the data file, then in the launch folder (MMR1 and SimpleAR meta files name paths from there).

    A row needs ``problem`` and ``solution``, or trl's ``prompt`` (a string, or chat messages whose last user
    message gives ``problem``; ``solution`` is then optional and the ``prompt`` column is kept). ``image`` (or
    ``images``) is a path or a list of paths. ``<image>`` placeholders in ``problem`` stay where they are
    (EasyR1, VLM-R1) and must match the row's image count. A folder written by ``save_to_disk`` (also
    ``FOLDER@split``) is loaded with the ``hf`` loader, with a one-line note.
    """
    if not path:
        raise ValueError("dataset 'json' needs dataset_path: a .json or .jsonl file")
    file = Path(path)
    source = str(file)
    roots = image_roots(image_root, image_folders, image_dir)
    base, _, split = str(path).rpartition("@")
    if file.is_dir() or (not file.exists() and base and is_saved_dataset(Path(base))):
        folder = file if file.is_dir() else Path(base)
        if not is_saved_dataset(folder):
            raise ValueError(f"dataset_path {file} is a folder; give a .json or .jsonl file (for a folder written by "
                             f"datasets' save_to_disk, set dataset: hf)")
        from mmr1.data.hf_loader import load_hf

        log.warning("dataset_path %s is a folder written by datasets' save_to_disk: loading it with the hf loader "
                    "(set dataset: hf to say so)", folder)
        return load_hf(str(path), columns=columns, image_root=roots, strict=strict)
    if not file.is_file():
        raise FileNotFoundError(f"dataset file not found: {file} (a relative dataset_path is looked up next to the "
                                f"config file, then in the folder you run mmr1 from)")
    raw_rows, problems = read_raw_rows(file, "a .json data file must hold a list of rows")
    problems += missing_columns(columns, [raw for _, raw in raw_rows], source, file.name)
    dataset = rows_dataset(raw_rows, source, roots or [file.resolve().parent, Path.cwd()], columns, strict=False,
                           problems=problems)
    if not dataset.rows and not dataset.problems:
        dataset.problems.append(DataProblem(source, None, "the file holds no rows"))
    if strict:
        dataset.raise_problems()
    return dataset
