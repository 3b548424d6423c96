"""RowDataset: the rows a loader produced, with the problems it found."""

from __future__ import annotations

import random
from collections.abc import Sequence

from mmr1.data.images import ImageLoadError, load_image
from mmr1.data.problems import DataError, DataProblem


class RowDataset(Sequence):
    """A list of normalised rows (images still as paths: they load lazily)."""

    def __init__(self, rows: list[dict], source: str, problems: list[DataProblem] | None = None):
        self.rows = rows
        self.source = source
        self.problems = list(problems or [])

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, index):
        return self.rows[index]

    def raise_problems(self) -> None:
        if self.problems:
            raise DataError(self.problems)

    def subsample(self, n: int | None, seed: int = 0, mode: str = "random") -> RowDataset:
        """``train_sample_size``: ``n`` rows (all rows if n is None or larger), in file order.

        ``mode`` (``train_sample_mode``): ``random`` picks a seeded random subset, so a file sorted by source
        or difficulty still gives a representative one; ``first`` takes the first ``n`` rows, MMR1's exact
        ``select(range(n))``.
        """
        if n is None or n >= len(self.rows):
            return self
        if mode == "first":
            picked = range(n)
        elif mode == "random":
            picked = sorted(random.Random(seed).sample(range(len(self.rows)), n))
        else:
            raise ValueError(f"train_sample_mode must be random or first, got {mode!r}")
        return RowDataset([self.rows[i] for i in picked], self.source, self.problems)

    def check_images(self, progress=None) -> list[DataProblem]:
        """Open every image of every row; return one problem per unreadable image."""
        problems = []
        rows = progress(self.rows) if progress else self.rows
        for row in rows:
            for ref in row.get("image", []):
                try:
                    load_image(ref)
                except ImageLoadError as exc:
                    source, _, index = row.get("_source", f"{self.source}:?").rpartition(":")
                    problems.append(DataProblem(source, int(index) if index.isdigit() else None, str(exc)))
        return problems
