"""Name -> object tables with provenance and did-you-mean errors."""

from __future__ import annotations

import difflib
import reprlib
from dataclasses import dataclass, field
from typing import Any


class RegistryError(Exception):
    """A name could not be resolved, or was registered twice."""


@dataclass
class Entry:
    name: str
    obj: Any
    plugin: str
    description: str = ""
    meta: dict = field(default_factory=dict)


def closest(name: str, choices) -> str | None:
    """The choice most similar to ``name``, or None."""
    found = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return found[0] if found else None


def did_you_mean(name: str, choices) -> str:
    """' Did you mean 'x'?' or an empty string."""
    match = closest(name, choices)
    return f" Did you mean {match!r}?" if match else ""


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxtuple, _SHORT.maxset = 2, 6, 6, 6, 6
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlong = 120, 120, 60


def short_repr(value) -> str:
    """``repr`` bounded in length and depth: a message never prints (or walks) a huge or deeply nested value."""
    return _SHORT.repr(value)


def first_paragraph(doc: str | None) -> str:
    if not doc:
        return ""
    return " ".join(doc.strip().split("\n\n")[0].split())


class Registry:
    """One kind of plugin-provided thing (rewards, templates, ...)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def add(self, name: str, obj: Any, plugin: str, description: str | None = None, **meta) -> None:
        if not isinstance(name, str) or not name:
            raise RegistryError(f"plugin {plugin!r} registered a {self.kind} with an invalid name {name!r}")
        if name in self._entries:
            other = self._entries[name].plugin
            raise RegistryError(
                f"{self.kind} {name!r} is registered twice: by plugin {other!r} and by plugin {plugin!r}. "
                f"Rename one of them or remove one plugin."
            )
        if description is None:
            description = first_paragraph(getattr(obj, "__doc__", None))
        self._entries[name] = Entry(name, obj, plugin, description or "", meta)

    def get(self, name: str) -> Any:
        return self.entry(name).obj

    def entry(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "(none)"
            raise RegistryError(
                f"unknown {self.kind} {name!r}.{did_you_mean(name, self._entries)} Known: {known}"
            ) from None

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        return [self._entries[n] for n in self.names()]
