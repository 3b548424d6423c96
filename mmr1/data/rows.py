"""Row normalisation shared by the loaders: ``{problem, solution, image: [...], ...}``."""

from __future__ import annotations

from pathlib import Path

from mmr1.data.problems import DataProblem

REQUIRED = ("problem", "solution")
SOLUTION_TYPES = (str, int, float, list, dict)


def _lone_surrogate(text: str) -> int | None:
    """The index of the first unpaired surrogate code point, or None."""
    try:
        text.encode("utf-8")
        return None
    except UnicodeEncodeError as exc:
        return exc.start


def normalize_row(raw, source: str, row: int, base_dir: Path | None,
                  columns: dict[str, str] | None = None) -> tuple[dict | None, list[DataProblem]]:
    """Validate one raw row; return the normalised row (or None) and its problems.

    ``columns`` maps source column names to mmr1 names (``{"question": "problem"}``).
    Image paths are resolved relative to ``base_dir`` (the data file's folder).
    """
    if not isinstance(raw, dict):
        return None, [DataProblem(source, row, f"expected an object, got {type(raw).__name__}")]
    data = dict(raw)
    for src, dst in (columns or {}).items():
        if src in data:
            data[dst] = data.pop(src)
    if "images" in data and "image" not in data:
        data["image"] = data.pop("images")
    problems = []
    for key in REQUIRED:
        if key not in data or data[key] is None:
            problems.append(DataProblem(
                source, row, f"missing field {key!r} (rename it, or map a column with dataset_kwargs: {{columns: {{yours: {key}}}}})"))
    if "problem" in data and data["problem"] is not None and not isinstance(data["problem"], str):
        problems.append(DataProblem(source, row, f"field 'problem' must be a string, got {type(data['problem']).__name__}"))
    for key in REQUIRED:
        if isinstance(data.get(key), str) and (bad := _lone_surrogate(data[key])) is not None:
            problems.append(DataProblem(source, row, (
                f"field {key!r} holds a lone surrogate (\\u{ord(data[key][bad]):04x} at character {bad}), which is "
                f"not valid Unicode text; fix the file's escaping (a \\ud83d must be followed by its pair)")))
    if data.get("solution") is not None and not isinstance(data["solution"], SOLUTION_TYPES):
        problems.append(DataProblem(source, row, f"field 'solution' has unsupported type {type(data['solution']).__name__}"))
    image = data.get("image")
    if image is None:
        images = []
    elif isinstance(image, (str, dict)) or hasattr(image, "convert"):
        images = [image]
    elif isinstance(image, list):
        images = image
    else:
        problems.append(DataProblem(source, row, f"field 'image' must be a path or a list of paths, got {type(image).__name__}"))
        images = []
    resolved = []
    for ref in images:
        if isinstance(ref, str) and not ref.strip():
            problems.append(DataProblem(source, row, "field 'image' holds an empty path; give the image file's path, "
                                                     "or remove the field for a text-only row"))
        elif isinstance(ref, str):
            path = Path(ref)
            if not path.is_absolute() and base_dir is not None:
                path = base_dir / path
            resolved.append(str(path))
        elif ref is None:
            problems.append(DataProblem(source, row, "field 'image' contains null"))
        else:
            resolved.append(ref)
    data["image"] = resolved
    data["_source"] = f"{source}:{row}"
    return (None if problems else data), problems
