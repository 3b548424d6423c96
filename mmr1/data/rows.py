"""Row normalisation shared by every loader: ``{problem, solution, image: [...], ...}``.

One rows path: the ``json`` and ``hf`` loaders and a plugin loader returning plain dicts all go
through :func:`normalize_row`, so a row means the same thing and its problems read the same
wherever it comes from.
"""

from __future__ import annotations

from pathlib import Path

from mmr1.data.images import ImagePath
from mmr1.data.problems import DataProblem

REQUIRED = ("problem", "solution")
SOLUTION_TYPES = (str, int, float, list, dict)
IMAGE_PLACEHOLDER = "<image>"
#: ``dataset_kwargs`` naming the folder relative image paths are under (VLM-R1 and EasyR1 spellings too).
IMAGE_ROOT_KEYS = ("image_root", "image_folders", "image_dir")
#: Columns whose name rewards receive something else under: a mapping from one moves it instead of copying.
_MOVED = ("images",)


def _lone_surrogate(text: str) -> int | None:
    """The index of the first unpaired surrogate code point, or None."""
    try:
        text.encode("utf-8")
        return None
    except UnicodeEncodeError as exc:
        return exc.start


def lookup(data: dict, key: str):
    """``data[key]``, else the value at the dotted path ``key`` (``conversations.0.value``: mapping keys and
    integer list indices). Raises ``LookupError`` saying which step does not resolve."""
    if key in data or "." not in key:
        return data[key]
    value, parts = data, key.split(".")
    for i, part in enumerate(parts):
        where = ".".join(parts[:i]) or "the row"
        if isinstance(value, dict):
            if part not in value:
                raise LookupError(f"{where} has no key {part!r} (its keys: {', '.join(map(str, value)) or 'none'})")
            value = value[part]
        elif isinstance(value, (list, tuple)) and part.lstrip("-").isdigit():
            if not -len(value) <= int(part) < len(value):
                raise LookupError(f"{where} has {len(value)} item(s), so no index {part}")
            value = value[int(part)]
        else:
            raise LookupError(f"{where} is a {type(value).__name__}, which has no {part!r}")
    return value


def prompt_text(prompt) -> str | None:
    """The problem text of a trl ``prompt``: the string, or the text of the last user message; None if neither."""
    if isinstance(prompt, str):
        return prompt
    if not isinstance(prompt, list):
        return None
    for message in reversed(prompt):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "\n".join(part["text"] for part in content if isinstance(part, dict)
                                 and part.get("type", "text") == "text" and isinstance(part.get("text"), str))
            return None
    return None


def image_roots(image_root=None, image_folders=None, image_dir=None) -> list[Path] | None:
    """The folders given for relative image paths (absolute), or None; ``image_folders`` and ``image_dir``
    are synonyms of ``image_root``, each a folder or a list of folders looked in in order."""
    given = {k: v for k, v in zip(IMAGE_ROOT_KEYS, (image_root, image_folders, image_dir)) if v is not None}
    if not given:
        return None
    if len(given) > 1:
        raise ValueError(f"dataset_kwargs: {' and '.join(given)} are synonyms; give one of them")
    (key, value), = given.items()
    roots = []
    for folder in value if isinstance(value, (list, tuple)) else [value]:
        if not isinstance(folder, (str, Path)) or not str(folder).strip() or not Path(folder).is_dir():
            raise ValueError(f"dataset_kwargs: {key} {folder!r} is not a folder (a relative one is looked up next to "
                             f"the config file, then in the folder you run mmr1 from)")
        roots.append(Path(folder).resolve())
    return roots


def resolve_image_roots(kwargs: dict, base_dir: str | Path | None) -> dict:
    """``kwargs`` with each relative image root that exists under ``base_dir`` (the config file's folder)
    made absolute; others stay as given, to be looked up in the launch folder."""
    if not isinstance(kwargs, dict) or base_dir is None:
        return kwargs

    def resolve(folder):
        if isinstance(folder, str) and folder.strip() and not Path(folder).is_absolute() \
                and (Path(base_dir) / folder).is_dir():
            return str(Path(base_dir) / folder)
        return folder

    out = dict(kwargs)
    for key in IMAGE_ROOT_KEYS:
        if isinstance(out.get(key), (list, tuple)):
            out[key] = [resolve(f) for f in out[key]]
        elif key in out:
            out[key] = resolve(out[key])
    return out


def _resolve_image(ref: str, roots: list[Path]) -> str:
    """An absolute path: the first root holding ``ref``, else under the first root, remembering the others."""
    path = Path(ref)
    if path.is_absolute() or not roots:
        return str(path)
    candidates = list(dict.fromkeys(root / path for root in roots))
    if len(candidates) == 1:
        return str(candidates[0])
    for candidate in candidates:
        if candidate.exists():
            return str(candidate)
    return ImagePath(candidates[0], candidates[1:])


def normalize_row(raw, source: str, row: int, image_root: Path | list[Path] | None = None,
                  columns: dict[str, str] | None = None) -> tuple[dict | None, list[DataProblem]]:
    """Validate one raw row; return the normalised row (or None) and its problems.

    ``columns`` copies a column (or a dotted path into nested fields) to an mmr1 name; the source column is
    kept. A row without ``problem`` may give a trl ``prompt``: a string, or chat messages whose last user
    message is the problem (``solution`` is then optional). Relative image paths are looked up under each
    folder of ``image_root`` in order.
    """
    if not isinstance(raw, dict):
        return None, [DataProblem(source, row, f"expected an object, got {type(raw).__name__}")]
    data = dict(raw)
    problems, unresolved = [], set()
    for src, dst in (columns or {}).items():
        try:
            value = lookup(raw, src)
        except KeyError:
            continue
        except LookupError as exc:
            problems.append(DataProblem(source, row, f"dataset_kwargs: columns path {src!r} (to {dst!r}) does not "
                                                     f"resolve here: {exc}"))
            unresolved.add(dst)
            continue
        data[dst] = value
        if src in _MOVED and src != dst:
            data.pop(src, None)
    if "images" in data and "image" not in data:
        data["image"] = data.pop("images")
    from_prompt = data.get("problem") is None and "prompt" in data
    if from_prompt:
        data["problem"] = prompt_text(data["prompt"])
        data.setdefault("solution", None)
        if data["problem"] is None:
            problems.append(DataProblem(source, row, (
                "field 'prompt' must be a string or chat messages [{role: user, content: ...}] with a user message; "
                f"got {type(data['prompt']).__name__} without one")))
    for key in REQUIRED:
        if data.get(key) is None and not from_prompt and key not in unresolved:
            fix = ("rename it, map a column with dataset_kwargs: {columns: {yours: problem}}, or give a 'prompt' "
                   "(text or chat messages)") if key == "problem" else (
                   f"rename it, or map a column with dataset_kwargs: {{columns: {{yours: {key}}}}}")
            problems.append(DataProblem(source, row, f"missing field {key!r} ({fix})"))
    if data.get("problem") is not None and not isinstance(data["problem"], str):
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
    roots = [image_root] if isinstance(image_root, Path) else list(image_root or [])
    resolved = []
    for ref in images:
        if isinstance(ref, str) and not ref.strip():
            problems.append(DataProblem(source, row, "field 'image' holds an empty path; give the image file's path, "
                                                     "or remove the field for a text-only row"))
        elif isinstance(ref, str):
            resolved.append(_resolve_image(ref, roots))
        elif ref is None:
            problems.append(DataProblem(source, row, "field 'image' contains null"))
        elif isinstance(ref, dict) and not ref.get("bytes") and isinstance(ref.get("path"), str) and ref["path"].strip():
            resolved.append(dict(ref, path=_resolve_image(ref["path"], roots)))
        else:
            resolved.append(ref)
    data["image"] = resolved
    problem = data.get("problem")       # (chat-message prompts are checked whole when the prompt is built)
    if isinstance(problem, str) and not isinstance(data.get("prompt"), list) and IMAGE_PLACEHOLDER in problem \
            and problem.count(IMAGE_PLACEHOLDER) != len(images):
        problems.append(DataProblem(source, row, (
            f"field 'problem' holds {problem.count(IMAGE_PLACEHOLDER)} {IMAGE_PLACEHOLDER} placeholder(s) but the row "
            f"has {len(images)} image(s); give one {IMAGE_PLACEHOLDER} per image, or none to put the images first")))
    data["_source"] = f"{source}:{row}"
    return (None if problems else data), problems


def normalize_rows(raw_rows, source: str, image_root=None, columns=None) -> tuple[list[dict], list[DataProblem]]:
    """:func:`normalize_row` over ``(row number, raw row)`` pairs: the usable rows and every problem."""
    rows, problems = [], []
    for index, raw in raw_rows:
        row, found = normalize_row(raw, source, index, image_root, columns)
        problems.extend(found)
        if row is not None:
            rows.append(row)
    return rows, problems


def rows_dataset(raw_rows, source: str, image_root=None, columns=None, strict: bool = True, problems=()):
    """A :class:`RowDataset` of the normalised rows; raises their problems (and ``problems``) if ``strict``."""
    from mmr1.data.dataset import RowDataset

    rows, found = normalize_rows(raw_rows, source, image_root, columns)
    dataset = RowDataset(rows, source, [*problems, *found])
    if strict:
        dataset.raise_problems()
    return dataset
