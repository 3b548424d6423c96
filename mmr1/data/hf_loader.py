"""The ``hf`` loader: a hub dataset name or a ``save_to_disk`` folder, with column mapping."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mmr1.data.dataset import RowDataset
from mmr1.data.json_loader import is_saved_dataset, missing_columns
from mmr1.data.rows import image_roots, rows_dataset


def split_suffix(path: str) -> tuple[str, str | None]:
    """``("data/set", "test")`` for ``data/set@test``; a path that exists as written keeps its ``@``."""
    base, at, split = str(path).rpartition("@")
    if not at or not base or not split or "/" in split or Path(path).exists():
        return str(path), None
    return base, split


def load_hf(path: str, split: str | None = None, columns: dict[str, str] | None = None,
            image_root: str | list[str] | None = None, image_folders: str | list[str] | None = None,
            image_dir: str | list[str] | None = None, strict: bool = True, name: str | None = None,
            **_) -> RowDataset:
    """Rows from ``datasets.load_from_disk(path)`` (a ``save_to_disk`` folder) or ``datasets.load_dataset(path,
    name, split=split)`` (a hub name), normalised like the ``json`` loader's rows.

    Options (``dataset_kwargs``):

    - ``dataset_path: PATH@SPLIT`` (or ``split: SPLIT``) picks the split (default ``train``); a split that is
      not there is an error naming those that are.
    - ``columns``: copies columns to mmr1 names, dotted paths into nested fields allowed
      (``conversations.0.value``), exactly as for the ``json`` loader; the original columns stay.
    - ``image_root`` (synonyms ``image_folders``, ``image_dir``): the folder(s) relative image paths in the
      rows are under; without it they are looked up in the dataset's folder, then the launch folder.

    ``Image`` columns, also inside ``List`` / ``Sequence``, stay undecoded until a row is used. trl's
    ``prompt`` rows (a string or chat messages) need no ``problem`` / ``solution``; an ``images`` column is
    the row's ``image`` list.
    """
    import datasets

    if not path:
        raise ValueError("dataset 'hf' needs dataset_path: a hub dataset name or a save_to_disk folder")
    source = str(path)
    path, at_split = split_suffix(path)
    if at_split and split and at_split != split:
        raise ValueError(f"dataset_path {source} names split {at_split!r} but dataset_kwargs split is {split!r}; "
                         f"give one of them")
    wanted = at_split or split
    split = wanted or "train"
    roots = image_roots(image_root, image_folders, image_dir)
    folder = Path(path)
    if folder.is_dir() and is_saved_dataset(folder):
        ds = datasets.load_from_disk(path)
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise ValueError(f"{path}: no split {split!r}; splits: {sorted(ds)} (pick one with "
                                 f"dataset_path: {path}@SPLIT)")
            ds = ds[split]
        elif wanted and wanted not in ("train", str(ds.split)):
            raise ValueError(f"{path}: no split {wanted!r}: the folder holds one data set (save_to_disk of a Dataset, "
                             f"not a DatasetDict); drop @{wanted}")
    elif folder.is_dir():
        raise ValueError(f"dataset_path {path} is a folder but not one written by datasets' save_to_disk (none of "
                         f"dataset_info.json, state.json, dataset_dict.json); give a save_to_disk folder or a hub name")
    else:
        ds = datasets.load_dataset(path, name, split=split)
    ds = _lazy_images(ds, datasets)
    problems = missing_columns(columns, [dict.fromkeys(ds.column_names)], source, source)
    if roots is None:
        roots = ([folder.resolve()] if folder.is_dir() else []) + [Path.cwd()]
    return rows_dataset(enumerate(ds), source, roots, columns, strict=strict, problems=problems)


def _undecoded(feature, datasets):
    """``feature`` with every ``Image`` in it (also inside lists and structs) set to ``decode=False``."""
    if isinstance(feature, datasets.Image):
        return dataclasses.replace(feature, decode=False)
    if isinstance(feature, dict):
        return {k: _undecoded(v, datasets) for k, v in feature.items()}
    if isinstance(feature, (list, tuple)):
        return type(feature)(_undecoded(v, datasets) for v in feature)
    if dataclasses.is_dataclass(feature) and hasattr(feature, "feature"):
        return dataclasses.replace(feature, feature=_undecoded(feature.feature, datasets))
    if hasattr(feature, "feature"):                  # older ``Sequence`` (not a dataclass)
        return type(feature)(_undecoded(feature.feature, datasets), length=getattr(feature, "length", -1))
    return feature


def _lazy_images(ds, datasets):
    """Keep ``Image`` columns, also ``List(Image)`` / ``Sequence(Image)``, undecoded (``{"bytes", "path"}``
    dicts that :func:`load_image` opens when a row is used): decoding while iterating would hold every image
    of the data set in memory. Changing ``decode`` only changes the schema; no data is rewritten."""
    for name, feature in ds.features.items():
        lazy = _undecoded(feature, datasets)
        if lazy != feature:
            ds = ds.cast_column(name, lazy)
    return ds
