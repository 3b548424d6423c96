"""The ``json`` loader: a ``.json`` list or a ``.jsonl`` file of ``{problem, solution, image}`` rows."""

from __future__ import annotations

import json
from pathlib import Path

from mmr1.data.dataset import RowDataset
from mmr1.data.problems import DataProblem
from mmr1.data.rows import normalize_row


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
    problems = []
    for src, dst in columns.items():
        if src not in present:
            from mmr1.registry import did_you_mean

            problems.append(DataProblem(source, None, (
                f"dataset_kwargs: columns maps {src!r} (to {dst!r}), which no row of {label} has (its columns: "
                f"{', '.join(sorted(map(str, present))) or 'none'}).{did_you_mean(str(src), sorted(map(str, present)))} "
                f"Fix the name, or drop it from columns")))
    return problems


def load_json(path: str, columns: dict[str, str] | None = None, strict: bool = True, **_) -> RowDataset:
    """Rows from a JSON list or JSONL file; image paths are relative to the file's folder.

    Rows are numbered as the file counts them: JSONL by line (1-based), a JSON list by index (0-based).
    """
    if not path:
        raise ValueError("dataset 'json' needs dataset_path: a .json or .jsonl file")
    file = Path(path)
    source = str(file)
    if file.is_dir():
        raise ValueError(f"dataset_path {file} is a folder; give a .json or .jsonl file (for a folder written by "
                         f"datasets' save_to_disk, set dataset: hf)")
    if not file.is_file():
        raise FileNotFoundError(f"dataset file not found: {file} (a relative dataset_path is looked up next to the "
                                f"config file, then in the folder you run mmr1 from)")
    base = file.resolve().parent
    raw_rows, problems = read_raw_rows(file, "a .json data file must hold a list of rows")
    problems += missing_columns(columns, [raw for _, raw in raw_rows], source, file.name)
    rows = []
    for index, raw in raw_rows:
        row, found = normalize_row(raw, source, index, base, columns)
        problems.extend(found)
        if row is not None:
            rows.append(row)
    if not rows and not problems:
        problems.append(DataProblem(source, None, "the file holds no rows"))
    dataset = RowDataset(rows, source, problems)
    if strict:
        dataset.raise_problems()
    return dataset
