"""Prompt templates: a system prompt, a question template and an answer template.

Templates are YAML files under ``templates/`` (shipped inside the wheel as ``mmr1/_templates``),
registered by name through the ``register_templates`` hook. MMR1's three independent names are
supported: ``template`` picks all three parts, and ``system_prompt_template``,
``question_template`` and ``answer_template`` each override one part by template name.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from mmr1.hookspecs import hookimpl
from mmr1.registry import did_you_mean


class TemplateError(ValueError):
    """A template file or template field is invalid."""


_PARTS = {"question_template": "question", "answer_template": "answer"}


def _fields(text: str, where: str) -> set[str]:
    try:
        return {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
    except ValueError as exc:
        raise TemplateError(f"{where}: {exc} (write literal braces as {{{{ and }}}})") from None


@dataclass(frozen=True)
class Template:
    """A named prompt template. ``question_template`` must contain ``{question}``."""

    name: str
    system_prompt: str = ""
    question_template: str = "{question}"
    answer_template: str = "{answer}"
    description: str = ""
    source: str = "<python>"

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
        return self.question_template.format(question=question)

    def format_answer(self, answer) -> str:
        return self.answer_template.format(answer=answer)

    def messages(self, question: str, num_images: int = 0) -> list[dict]:
        """Chat messages for one row: system (if any), then the user turn with image placeholders first."""
        messages = []
        if self.system_prompt:
            messages.append({"role": "system", "content": [{"type": "text", "text": self.system_prompt}]})
        content = [{"type": "image"} for _ in range(num_images)]
        content.append({"type": "text", "text": self.format_question(question)})
        messages.append({"role": "user", "content": content})
        return messages

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


def resolve_template(name: str, system_prompt_template: str | None = None,
                     question_template: str | None = None, answer_template: str | None = None) -> Template:
    """The config's template, with MMR1-style per-part overrides resolved through the registry."""
    from mmr1.plugins import get_template

    base = get_template(name)
    return base.with_parts(
        system=get_template(system_prompt_template) if system_prompt_template else None,
        question=get_template(question_template) if question_template else None,
        answer=get_template(answer_template) if answer_template else None,
    )
