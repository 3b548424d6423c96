"""The ``hf`` loader: a hub dataset name or a ``save_to_disk`` folder, with column mapping."""

from __future__ import annotations

from pathlib import Path

from mmr1.data.dataset import RowDataset
from mmr1.data.json_loader import missing_columns
from mmr1.data.rows import normalize_row


def load_hf(path: str, split: str = "train", columns: dict[str, str] | None = None, strict: bool = True,
            name: str | None = None, **_) -> RowDataset:
    """Rows from ``datasets.load_from_disk(path)`` (a folder) or ``datasets.load_dataset(path, name, split=split)``."""
    import datasets

    if not path:
        raise ValueError("dataset 'hf' needs dataset_path: a hub dataset name or a save_to_disk folder")
    if Path(path).is_dir():
        ds = datasets.load_from_disk(path)
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise ValueError(f"{path}: no split {split!r}; splits: {sorted(ds)}")
            ds = ds[split]
    else:
        ds = datasets.load_dataset(path, name, split=split)
    ds = _lazy_images(ds, datasets)
    source = str(path)
    rows, problems = [], missing_columns(columns, [dict.fromkeys(ds.column_names)], source, source)
    for index, raw in enumerate(ds):
        row, found = normalize_row(raw, source, index, None, columns)
        problems.extend(found)
        if row is not None:
            rows.append(row)
    dataset = RowDataset(rows, source, problems)
    if strict:
        dataset.raise_problems()
    return dataset


def _lazy_images(ds, datasets):
    """Keep ``Image`` columns undecoded (``{"bytes", "path"}`` dicts that :func:`load_image` opens when
    a row is used): decoding while iterating would hold every image of the data set in memory.
    Changing ``decode`` on a top-level column only changes the schema; no data is rewritten."""
    for name, feature in ds.features.items():
        if isinstance(feature, datasets.Image) and feature.decode:
            ds = ds.cast_column(name, datasets.Image(decode=False))
    return ds
