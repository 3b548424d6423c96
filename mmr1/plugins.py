"""Plugin discovery: built-ins, the ``mmr1`` entry-point group, config ``plugins:``; rewards given by file.

Registries are built by calling every ``register_*`` hook implementation once, with a
``register`` callback that records which plugin provided each name.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import inspect
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pluggy

from mmr1 import hookspecs
from mmr1.registry import Registry, RegistryError, did_you_mean

ENTRY_POINT_GROUP = "mmr1"

# Built-in plugins: modules of the core package that implement hooks.
BUILTIN_PLUGINS = (
    "mmr1.templates",
    "mmr1.data.loaders",
    "mmr1.models.adapters",
    "mmr1.rollout.hf",
    "mmr1.imagegen.tokenizers",
    "mmr1.imagegen.plugin",
)

# hook name -> registry kind (used in messages)
KINDS = {
    "register_rewards": "reward",
    "register_templates": "template",
    "register_datasets": "dataset loader",
    "register_models": "model adapter",
    "register_image_tokenizers": "image tokenizer",
    "register_rollout_backends": "rollout backend",
}


class PluginError(Exception):
    """A plugin could not be imported or its hook failed."""


class PluginManager:
    """Owns the pluggy manager and the registries built from it."""

    def __init__(self, builtins: bool = True, entry_points: bool = True):
        self.pm = pluggy.PluginManager("mmr1")
        self.pm.add_hookspecs(hookspecs)
        self._registries: dict[str, Registry] | None = None
        self._lock = threading.Lock()
        if builtins:
            for module in BUILTIN_PLUGINS:
                self.add_module(module, plugin_name=module)
        if entry_points:
            self.load_entry_points()

    # -- discovery -----------------------------------------------------------------------------
    def add_module(self, module: str | ModuleType, plugin_name: str | None = None) -> None:
        """Register an imported module, or import one by dotted name, as a plugin."""
        if isinstance(module, str):
            name = plugin_name or module
            try:
                module = importlib.import_module(module)
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - re-raised with the plugin named
                raise PluginError(
                    f"plugin {name!r} failed to import: {type(exc).__name__}: {exc}"
                ) from exc
        name = plugin_name or module.__name__
        if self.pm.is_registered(module) or self.pm.get_plugin(name) is not None:
            return
        try:
            self.pm.register(module, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {name!r} has an invalid hook implementation: {exc}") from exc
        # pluggy accepts hooks it has no spec for and never calls them: a typo'd hook name
        # (register_reward) would silently register nothing.
        unknown = sorted(caller.name for caller in self.pm.get_hookcallers(module) or [] if caller.spec is None)
        if unknown:
            self.pm.unregister(module)
            raise PluginError(
                f"plugin {name!r} implements unknown hook {unknown[0]!r}.{did_you_mean(unknown[0], KINDS)} "
                f"Hooks: {', '.join(KINDS)}"
            )
        self._registries = None

    def add_file(self, path: str | Path) -> None:
        """Import a ``.py`` file as a plugin (its name is the file path)."""
        path = Path(path).resolve()
        if path.is_dir():
            raise PluginError(f"plugin file {str(path)!r} is a folder; give a .py file, or the package's module name")
        if not path.is_file():
            raise PluginError(f"plugin file {str(path)!r} does not exist")
        try:
            module = import_file(path)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - SystemExit too: a plugin never ends the command
            raise PluginError(
                f"plugin file {str(path)!r} failed to import: {type(exc).__name__}: {exc}"
            ) from exc
        self.add_module(module, plugin_name=str(path))

    def load_entry_points(self) -> None:
        """Load every installed plugin advertised in the ``mmr1`` entry-point group."""
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            label = f"{ep.name} ({ep.value})"
            if self.pm.get_plugin(label) is not None:
                continue
            try:
                module = ep.load()
            except (Exception, SystemExit) as exc:  # noqa: BLE001
                raise PluginError(
                    f"plugin {label!r} (entry point of package "
                    f"{ep.dist.name if ep.dist else '?'}) failed to import: {type(exc).__name__}: {exc}"
                ) from exc
            self.add_module(module, plugin_name=label)

    def load(self, specs, base_dir: str | Path | None = None) -> None:
        """Load config ``plugins:`` entries: dotted module names or ``.py`` paths (relative to base_dir)."""
        for spec in specs or []:
            if not isinstance(spec, str) or not spec.strip():
                raise PluginError(f"plugins: entries must be module names or .py paths, got {spec!r}")
            if spec.endswith(".py") or "/" in spec or "\\" in spec:
                path = Path(spec)
                if not path.is_absolute() and base_dir is not None:
                    path = Path(base_dir) / path
                self.add_file(path)
            else:
                self.add_module(spec)

    # -- registries ----------------------------------------------------------------------------
    @property
    def registries(self) -> dict[str, Registry]:
        with self._lock:
            if self._registries is None:
                self._registries = self._build()
            return self._registries

    def _build(self) -> dict[str, Registry]:
        registries = {}
        for hook_name, kind in KINDS.items():
            registry = Registry(kind)
            hook = getattr(self.pm.hook, hook_name)
            for impl in hook.get_hookimpls():
                plugin = impl.plugin_name

                def register(name, obj, description=None, _plugin=plugin, **meta):
                    registry.add(name, obj, _plugin, description, **meta)

                try:
                    impl.function(register=register)
                except (Exception, SystemExit) as exc:
                    if exc.__class__.__name__ == "RegistryError":
                        raise
                    raise PluginError(
                        f"plugin {plugin!r} failed in {hook_name}: {type(exc).__name__}: {exc}"
                    ) from exc
            registries[hook_name] = registry
        return registries

    def registry(self, hook_name: str) -> Registry:
        return self.registries[hook_name]


_default: PluginManager | None = None


def get_plugin_manager() -> PluginManager:
    """The process-wide plugin manager (built-ins + entry points), created on first use."""
    global _default
    if _default is None:
        _default = PluginManager()
    return _default


def reset_plugin_manager() -> None:
    """Forget the process-wide manager (tests; after installing a package at run time)."""
    global _default
    _default = None
    importlib.invalidate_caches()


def load_plugins(specs, base_dir: str | Path | None = None) -> PluginManager:
    """Add config ``plugins:`` to the process-wide manager and return it."""
    pm = get_plugin_manager()
    pm.load(specs, base_dir)
    return pm


def _getter(hook_name):
    def get(name: str):
        return get_plugin_manager().registry(hook_name).get(name)

    return get


def _lister(hook_name):
    def names() -> list[str]:
        return get_plugin_manager().registry(hook_name).names()

    return names


def import_file(path: str | Path) -> ModuleType:
    """Import a ``.py`` file once per process. ``plugins:`` and rewards given by file share the module, so a
    file named in both runs once and its hooks are registered only through ``plugins:``."""
    path = Path(path).resolve()
    module_name = f"mmr1_user_plugin_{path.stem}_{abs(hash(str(path))) % 10**8}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module              # before running it, as dataclasses and pickle expect
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


#: Prefixes of a reward given by file: how its function is called (none: mmr1's own signature).
REWARD_FILE_KINDS = ("trl", "easyr1")


@dataclass(frozen=True)
class RewardFile:
    """A ``rewards:`` entry ``[KIND:]PATH.py:FUNCTION[ as NAME]``: a function of a file, not a registered name."""

    entry: str
    kind: str | None
    path: str
    function: str
    alias: str | None = None

    @property
    def name(self) -> str:
        """The name it logs under (``rewards/NAME``): the alias, else the function's name."""
        return self.alias or self.function


class RewardSpecError(RegistryError):
    """A reward given by file cannot be loaded; one line naming the entry and the fix."""


_FORMS = "PATH.py:FUNCTION, trl:PATH.py:FUNCTION or easyr1:PATH.py:FUNCTION"


def reward_file(entry: str) -> RewardFile | None:
    """The parts of a reward given by file; None for a registered reward's name."""
    if not isinstance(entry, str) or (".py" not in entry and ":" not in entry):
        return None
    body, _, alias = entry.partition(" as ")
    body, alias = body.strip(), alias.strip() or None
    kind, sep, rest = body.partition(":")
    if not sep or kind not in REWARD_FILE_KINDS:
        kind, rest = None, body
    path, sep, function = rest.rpartition(":")
    prefix = path.partition(":")[0] if ":" in path else ""
    if len(prefix) > 1 and prefix.isidentifier():
        raise RewardSpecError(f"reward {entry!r}: unknown kind {prefix!r}.{did_you_mean(prefix, REWARD_FILE_KINDS)} "
                              f"A reward from a file is written {_FORMS}")
    if not sep or not path.endswith(".py") or not function.isidentifier() or (alias and not alias.isidentifier()):
        hint = (f"name the function too: {body}:FUNCTION" if body.endswith(".py") else
                f"a reward from a file is written {_FORMS} (optionally followed by ' as NAME')")
        raise RewardSpecError(f"reward {entry!r}: {hint}")
    return RewardFile(entry, kind, path, function, alias)


def _reward_path(spec: RewardFile, base_dir) -> Path:
    """The file: an absolute path, else relative to the config's folder, then to the launch folder."""
    path = Path(spec.path).expanduser()
    tried = [path] if path.is_absolute() else [Path(d) / path for d in (base_dir, Path.cwd()) if d is not None]
    for candidate in tried:
        if candidate.is_file():
            return candidate.resolve()
    where = " and ".join(str(t.resolve()) for t in dict.fromkeys(tried))
    raise RewardSpecError(f"reward {spec.entry!r}: file {spec.path!r} not found (looked at {where}); give a path "
                          f"relative to the config's folder, or an absolute one")


def load_reward_file(spec: RewardFile, base_dir: str | Path | None = None):
    """The function a reward entry names, wrapped for its kind (``trl:`` with ``from_trl``, ``easyr1:`` with
    ``from_easyr1``). The file is imported as ``plugins:`` imports it (see :func:`import_file`)."""
    from mmr1.grpo import rewards

    path = _reward_path(spec, base_dir)
    try:
        module = import_file(path)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - the user's file: one line naming it
        text = str(exc).strip()
        first = f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
        raise RewardSpecError(f"reward {spec.entry!r}: {path} failed to import: {first}; fix the file, or install "
                              f"what it imports") from None
    if not hasattr(module, spec.function):
        found = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        hint = did_you_mean(spec.function, found) or f" Its callables: {', '.join(found[:12]) or 'none'}."
        raise RewardSpecError(f"reward {spec.entry!r}: {path} has no function {spec.function!r}.{hint}")
    fn = getattr(module, spec.function)
    if not callable(fn):
        kind = type(fn).__name__
        raise RewardSpecError(f"reward {spec.entry!r}: {spec.function!r} in {path} is not callable "
                              f"({'an' if kind[0] in 'aeiou' else 'a'} {kind}); name a function defined in the file")
    if spec.kind and inspect.isclass(fn):
        raise RewardSpecError(f"reward {spec.entry!r}: {spec.function!r} in {path} is a class; {spec.kind}: takes a "
                              f"function (a class works without the prefix, with mmr1's signature)")
    if spec.kind == "trl":
        return rewards.from_trl(fn)
    if spec.kind == "easyr1":
        try:
            return rewards.from_easyr1(fn)
        except ValueError as exc:
            raise RewardSpecError(f"reward {spec.entry!r}: {exc}") from None
    return fn


def get_reward(name: str, base_dir: str | Path | None = None):
    """The reward registered as ``name``, or the function a file entry names (see :func:`reward_file`)."""
    registry = get_plugin_manager().registry("register_rewards")
    spec = None if name in registry else reward_file(name)
    return registry.get(name) if spec is None else load_reward_file(spec, base_dir)


def reward_name(entry: str) -> str:
    """The name a ``rewards:`` entry logs under: a registered name itself, a file entry's function (or alias)."""
    try:
        spec = None if entry in get_plugin_manager().registry("register_rewards") else reward_file(entry)
    except RegistryError:
        return entry
    return entry if spec is None else spec.name


get_template = _getter("register_templates")


def get_dataset(name: str):
    """The dataset loader ``name``. A loader returning a plain list of dicts (what the hookspec allows) gets
    its rows normalised like the built-in loaders' rows, their problems naming the plugin."""
    import functools

    entry = get_plugin_manager().registry("register_datasets").entry(name)
    loader = entry.obj

    def load(*args, **kwargs):
        data = loader(*args, **kwargs)
        if not isinstance(data, (list, tuple)):
            return data
        from mmr1.data.rows import rows_dataset

        return rows_dataset(enumerate(data), f"dataset {name!r} of plugin {entry.plugin!r}", [Path.cwd()],
                            strict=kwargs.get("strict", True))

    functools.update_wrapper(load, loader, updated=())
    if hasattr(loader, "check"):
        load.check = loader.check
    return load


get_model_adapter = _getter("register_models")
get_image_tokenizer = _getter("register_image_tokenizers")
get_rollout_backend = _getter("register_rollout_backends")
list_rewards = _lister("register_rewards")
list_templates = _lister("register_templates")
list_datasets = _lister("register_datasets")
list_model_adapters = _lister("register_models")
list_image_tokenizers = _lister("register_image_tokenizers")
list_rollout_backends = _lister("register_rollout_backends")
