"""Prompt templates: a system prompt, a question template and an answer template.

Templates are YAML files under ``templates/`` (shipped inside the wheel as ``mmr1/_templates``),
registered by name through the ``register_templates`` hook. MMR1's three independent names are
supported: ``template`` picks all three parts, and ``system_prompt_template``,
``question_template`` and ``answer_template`` each override one part by template name.

Any of the four names may also be a file: ``.yaml`` (a template file) or a Jinja file (EasyR1's
``format_prompt``, e.g. ``math.jinja``), looked for relative to the config's folder, then the
launch folder. A Jinja file is the question template, rendered in a sandbox with the question as
``content``; the system prompt and answer template stay those of ``default``.

:func:`row_messages` is the one path from a data row to its chat messages.
"""

from __future__ import annotations

import functools
import string
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from mmr1.hookspecs import hookimpl
from mmr1.registry import did_you_mean


class TemplateError(ValueError):
    """A template file or template field is invalid."""


_PARTS = {"question_template": "question", "answer_template": "answer"}
IMAGE_PLACEHOLDER = "<image>"   # EasyR1 / LLaVA: where an image goes in the question text


def _fields(text: str, where: str) -> set[str]:
    try:
        return {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
    except ValueError as exc:
        raise TemplateError(f"{where}: {exc} (write literal braces as {{{{ and }}}})") from None


@functools.lru_cache(maxsize=None)
def _jinja_env():
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    return ImmutableSandboxedEnvironment(undefined=StrictUndefined)


@functools.lru_cache(maxsize=64)
def _compiled(text: str):
    return _jinja_env().from_string(text)


@dataclass(frozen=True)
class JinjaPrompt:
    """A Jinja question template (EasyR1's ``format_prompt``): the question is ``content``."""

    path: str
    text: str

    def render(self, content: str) -> str:
        try:
            return _compiled(self.text).render(content=content).strip()
        except Exception as exc:  # noqa: BLE001 - a template's runtime error, one line naming the file
            first = (str(exc).strip().splitlines() or [""])[0]
            raise TemplateError(f"{self.path}: cannot render the question: {type(exc).__name__}: {first}") from None


@dataclass(frozen=True)
class Template:
    """A named prompt template. ``question_template`` must contain ``{question}``."""

    name: str
    system_prompt: str = ""
    question_template: str = "{question}"
    answer_template: str = "{answer}"
    description: str = ""
    source: str = "<python>"
    question_jinja: JinjaPrompt | None = None     # when set, it formats the question instead

    def __post_init__(self):
        for part, placeholder in _PARTS.items():
            text = getattr(self, part)
            where = f"template {self.name!r} ({self.source}), {part}"
            if not isinstance(text, str):
                raise TemplateError(f"{where}: must be a string, got {type(text).__name__}")
            fields = _fields(text, where)
            unknown = fields - {placeholder}
            if unknown:
                bad = sorted(unknown)[0]
                hint = f" Did you mean '{{{placeholder}}}'?" if did_you_mean(bad, [placeholder]) else ""
                raise TemplateError(
                    f"{where}: unknown placeholder {{{bad}}}; only {{{placeholder}}} is filled in.{hint} "
                    f"Write literal braces as {{{{ and }}}}."
                )
            if placeholder not in fields:
                raise TemplateError(f"{where}: missing the {{{placeholder}}} placeholder")
        _fields(self.system_prompt, f"template {self.name!r} ({self.source}), system_prompt")

    def format_question(self, question: str) -> str:
        if self.question_jinja is not None:
            return self.question_jinja.render(question)
        return self.question_template.format(question=question)

    def format_answer(self, answer) -> str:
        return self.answer_template.format(answer=answer)

    def messages(self, question: str, num_images: int = 0, where: str = "") -> list[dict]:
        """Chat messages for one question: system (if any), then the user turn with its images.

        The images go at the ``<image>`` placeholders of the formatted question, else first
        (see :func:`place_images`).
        """
        messages = [_text_message("system", self.system_prompt)] if self.system_prompt else []
        messages.append(_text_message("user", self.format_question(question)))
        return place_images(messages, num_images, where)

    def with_parts(self, system: Template | None = None, question: Template | None = None,
                   answer: Template | None = None) -> Template:
        """A copy taking some parts from other templates (MMR1's three template names)."""
        changes = {}
        names = [self.name]
        if system is not None:
            changes["system_prompt"] = system.system_prompt
            names.append(f"system={system.name}")
        if question is not None:
            changes["question_template"] = question.question_template
            changes["question_jinja"] = question.question_jinja
            names.append(f"question={question.name}")
        if answer is not None:
            changes["answer_template"] = answer.answer_template
            names.append(f"answer={answer.name}")
        if not changes:
            return self
        return replace(self, name="+".join(names), **changes)


_KEYS = {"name", "description", "system_prompt", "question_template", "answer_template"}


def load_template_file(path: str | Path) -> Template:
    """Read one template YAML file, with errors naming the file and key."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise TemplateError(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise TemplateError(f"{path}: expected a mapping with keys {sorted(_KEYS)}")
    unknown = set(data) - _KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise TemplateError(f"{path}: unknown key {key!r}.{did_you_mean(key, _KEYS)} Valid: {sorted(_KEYS)}")
    data.setdefault("name", path.stem)
    data["system_prompt"] = data.get("system_prompt") or ""
    return Template(**data, source=str(path))


def templates_dir() -> Path:
    """The shipped template folder (inside the wheel, or the repository's ``templates/``)."""
    here = Path(__file__).resolve().parent
    packaged = here / "_templates"
    return packaged if packaged.is_dir() else here.parent / "templates"


@hookimpl
def register_templates(register):
    for path in sorted(templates_dir().glob("*.yaml")):
        template = load_template_file(path)
        register(template.name, template, description=template.description)


def load_jinja_template(path: str | Path) -> Template:
    """A question template from a Jinja file (EasyR1's ``format_prompt``); errors are one line naming it."""
    from jinja2 import TemplateSyntaxError, meta

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(f"{path}: cannot read the template file: {exc}") from None
    try:
        names = meta.find_undeclared_variables(_jinja_env().parse(text))
    except TemplateSyntaxError as exc:
        raise TemplateError(f"{path}: line {exc.lineno}: Jinja syntax error: {exc.message}") from None
    unknown = sorted(names - {"content"})
    if unknown:
        raise TemplateError(f"{path}: undefined variable {unknown[0]!r}: only 'content' (the question) is passed; "
                            f"write {{{{ content }}}} where the question goes")
    if "content" not in names:
        raise TemplateError(f"{path}: the template never uses {{{{ content }}}}, so the question would be lost")
    template = Template(path.name, question_jinja=JinjaPrompt(str(path), text), source=str(path))
    template.format_question("question")          # runtime errors (bad filters, sandbox) show up now
    return template


def _template_file(name: str, base_dir: str | Path | None) -> tuple[Path | None, list[Path]]:
    """The file ``name`` names (config folder first, then the launch folder), and where it looked."""
    path = Path(name).expanduser()
    places = [path] if path.is_absolute() else list(dict.fromkeys(
        [*([Path(base_dir) / path] if base_dir is not None else []), Path.cwd() / path]))
    return next((p for p in places if p.is_file()), None), places


def _lookup(name: str, base_dir: str | Path | None) -> Template:
    from mmr1.plugins import get_template, list_templates

    if name in list_templates() or not (Path(name).suffix or "/" in name or "\\" in name):
        return get_template(name)                 # an unknown name: the registry's error lists the known ones
    path, places = _template_file(name, base_dir)
    if path is None:
        raise TemplateError(f"template file {name!r} not found (looked in {', '.join(map(str, places))}); give a "
                            f"path to a .jinja / .yaml file or a template name: {', '.join(list_templates())}")
    if path.suffix.lower() in (".yaml", ".yml"):
        return load_template_file(path)
    return get_template("default").with_parts(question=load_jinja_template(path))


def resolve_template(name: str, system_prompt_template: str | None = None,
                     question_template: str | None = None, answer_template: str | None = None,
                     base_dir: str | Path | None = None) -> Template:
    """The config's template, with MMR1-style per-part overrides; each name may be a file (module doc).

    ``base_dir`` (the config's folder) is where relative file names are looked for first.
    """
    return _lookup(name, base_dir).with_parts(
        system=_lookup(system_prompt_template, base_dir) if system_prompt_template else None,
        question=_lookup(question_template, base_dir) if question_template else None,
        answer=_lookup(answer_template, base_dir) if answer_template else None,
    )


# ------------------------------------------------------------------------------------ rows -> messages


def _at(where: str, message: str) -> str:
    return f"{where}: {message}" if where else message


def _text_message(role: str, text: str) -> dict:
    return {"role": role, "content": [{"type": "text", "text": text}]}


def _is_image(part: dict) -> bool:
    return part.get("type") in ("image", "image_url") or "image" in part or "image_url" in part


def _part(item, where: str) -> dict:
    if isinstance(item, str):
        return {"type": "text", "text": item}
    if isinstance(item, dict) and _is_image(item):
        return {"type": "image"}
    if isinstance(item, dict) and isinstance(item.get("text"), str):
        return {"type": "text", "text": item["text"]}
    raise ValueError(_at(where, f"a message content item must be text ({{\"type\": \"text\", \"text\": ...}}) or "
                                f"an image ({{\"type\": \"image\"}}), got {item!r}"))


def _message(message, where: str) -> dict:
    if not (isinstance(message, dict) and isinstance(message.get("role"), str)
            and isinstance(message.get("content"), (str, list))):
        raise ValueError(_at(where, f"'prompt' messages must be {{\"role\": ..., \"content\": text or a list}}, "
                                    f"got {message!r}"))
    content = message["content"]
    parts = [_part(c, where) for c in ([content] if isinstance(content, str) else content)]
    return {"role": message["role"], "content": parts}


def place_images(messages: list[dict], num_images: int, where: str = "") -> list[dict]:
    """Put ``num_images`` image items into ``messages`` (content lists of text / image parts).

    Existing image items stay where they are; else each ``<image>`` placeholder in the text becomes
    an image (text pieces between, as EasyR1 / LLaVA data mean it); else the images go first in the
    first user turn. With no images, image items and placeholders are dropped. Any other count is
    a ValueError naming ``where``.
    """
    parts = [p for m in messages for p in m["content"]]
    items = sum(_is_image(p) for p in parts)
    marks = sum(p["text"].count(IMAGE_PLACEHOLDER) for p in parts if not _is_image(p))
    if num_images == 0:
        return [dict(m, content=[_drop_marks(p) for p in m["content"] if not _is_image(p)]) for m in messages]
    if items == num_images and marks == 0:
        return messages
    if items == 0 and marks == num_images:
        return [dict(m, content=[q for p in m["content"] for q in _split_marks(p)]) for m in messages]
    if items == 0 and marks == 0:
        user = next((i for i, m in enumerate(messages) if m["role"] == "user"), None)
        if user is None:
            raise ValueError(_at(where, f"no user message to put the {num_images} image(s) in"))
        messages = list(messages)
        messages[user] = dict(messages[user], content=[{"type": "image"}] * num_images + messages[user]["content"])
        return messages
    found = f"{marks} {IMAGE_PLACEHOLDER} placeholder(s)" + (f" and {items} image item(s)" if items else "")
    raise ValueError(_at(where, f"the prompt has {found} but the row has {num_images} image(s); give one "
                                f"{IMAGE_PLACEHOLDER} per image, or none to put the images first"))


def _split_marks(part: dict) -> list[dict]:
    if IMAGE_PLACEHOLDER not in part.get("text", ""):
        return [part]
    out = []
    for i, piece in enumerate(part["text"].split(IMAGE_PLACEHOLDER)):
        if i:
            out.append({"type": "image"})
        if piece:
            out.append({"type": "text", "text": piece})
    return out


def _drop_marks(part: dict) -> dict:
    text = part["text"]
    return {"type": "text", "text": text.replace(IMAGE_PLACEHOLDER, "").strip()} if IMAGE_PLACEHOLDER in text else part


def row_messages(template: Template, row: dict, num_images: int = 0, where: str | None = None) -> list[dict]:
    """Chat messages for one data row with ``num_images`` loaded images: the one path from rows to prompts.

    - ``prompt`` a list of chat messages (trl conversational data): those messages as written (the
      question template does not apply); the template's system prompt is put first only when they
      have no system message. Images go at their image items or ``<image>`` placeholders, else
      first in the first user message.
    - otherwise the question is ``problem`` (else a string ``prompt``, trl standard data) in the
      template (:meth:`Template.messages`): images at its ``<image>`` placeholders, else first.

    See :func:`place_images` for the counts allowed. Errors start with ``where`` (default: the
    row's ``_source``; ``""`` for none).
    """
    where = str(row.get("_source", "a data row")) if where is None else where
    prompt = row.get("prompt")
    if isinstance(prompt, list):
        messages = [_message(m, where) for m in prompt]
        if template.system_prompt and not any(m["role"] == "system" for m in messages):
            messages.insert(0, _text_message("system", template.system_prompt))
        return place_images(messages, num_images, where)
    question = row.get("problem")
    if not isinstance(question, str):
        question = prompt
    if not isinstance(question, str):
        raise ValueError(_at(where, "no question: give a 'problem' string or a 'prompt' (text, or a list of chat "
                                    "messages)"))
    return template.messages(question, num_images, where)


def encode_rows(adapter, template: Template, rows: list[dict], max_prompt_length: int | None = None):
    """``(prompt batch, messages, images)`` for data rows, as training, evaluation and SFT all encode them:
    each row's images load (for models that take images), :func:`row_messages` writes its messages, and
    the adapter encodes the batch (left-padded)."""
    from mmr1.data import load_images

    images = [load_images(r.get("image", [])) if adapter.takes_images else [] for r in rows]
    messages = [row_messages(template, r, len(im)) for r, im in zip(rows, images)]
    return adapter.encode_prompts(messages, images, max_prompt_length), messages, images
