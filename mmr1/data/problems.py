"""Data problems: each names the file, the row and what is wrong."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DataProblem:
    source: str          # file or dataset name
    row: int | None      # 1-based line (JSONL) or 0-based index (JSON list / HF dataset), None for the whole source
    reason: str

    def __str__(self) -> str:
        where = self.source if self.row is None else f"{self.source}, row {self.row}"
        return f"{where}: {self.reason}"


class DataError(ValueError):
    """One or more data problems, all reported at once."""

    def __init__(self, problems: list[DataProblem], limit: int = 20):
        self.problems = list(problems)
        lines = [str(p) for p in self.problems[:limit]]
        if len(self.problems) > limit:
            lines.append(f"... and {len(self.problems) - limit} more (run `mmr1 check CONFIG` for all)")
        super().__init__(f"{len(self.problems)} data problem(s):\n  " + "\n  ".join(lines))
