"""Setup before any weights load, shared by ``mmr1 check``, ``train``, ``eval`` and ``sft``.

:func:`preflight` resolves every name (plugins, template, rewards, rollout backend, model adapter),
checks the batch arithmetic, loads the data and checks every row the run will use: its images open
and fit the model's image processor, its prompt renders and tokenizes (image tokens included) within
``max_prompt_length``, and its text holds no control token of the tokenizer. It collects every
problem instead of stopping at the first. ``mmr1 check`` prints them; :func:`prepare` (what the
trainer calls) raises :class:`PreflightError` with all of them, so ``train`` refuses exactly what
``check`` reports, before a model loads.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path

from mmr1.config import TrainConfig
from mmr1.data.problems import DataProblem

#: Invisible mark put after a control token's first character by ``special_tokens_in_data: escape``.
ESCAPE_MARK = "\u200b"


class PreflightError(ValueError):
    """Every problem found before weights load, one per line."""

    def __init__(self, problems: list[str], limit: int = 30):
        self.problems = list(problems)
        lines = [str(p).replace("\n", "\n    ") for p in self.problems[:limit]]
        if len(self.problems) > limit:
            lines.append(f"... and {len(self.problems) - limit} more (`mmr1 check CONFIG` lists all)")
        super().__init__(f"{len(self.problems)} problem(s) found before training; nothing was loaded or "
                         f"written:\n  " + "\n  ".join(lines))


@dataclass
class Prepared:
    """What :func:`prepare` resolved before any model loads."""

    config: TrainConfig
    plan: object
    template: object
    rewards: list
    dataset: object
    adapter_cls: type
    backend_cls: type
    processor: object = None
    eval_dataset: object = None


@dataclass
class Preflight:
    """The outcome of :func:`preflight`: what resolved, every problem, and one summary line per data set."""

    prepared: Prepared | None
    problems: list[str] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)


def data_path(config: TrainConfig, path: str | None) -> str | None:
    """Data paths in a config are relative to the config file's folder, like plugin paths."""
    if path is None or Path(path).is_absolute() or config.config_path is None:
        return path
    from mmr1.data.hf_loader import split_suffix

    candidate = config.config_dir / path
    if candidate.exists():
        return str(candidate)
    base, split = split_suffix(path)                       # folder@split, the folder beside the config
    if split and (config.config_dir / base).exists():
        return f"{config.config_dir / base}@{split}"
    if Path(path).exists() or config.dataset != "json":   # other loaders also take names (hub ids): keep them
        return path
    return str(candidate)


def _user_errors() -> tuple[type, ...]:
    from mmr1.data import DataError, ImageLoadError
    from mmr1.grpo.batching import BatchConfigError
    from mmr1.grpo.rewards import RewardError
    from mmr1.plugins import PluginError
    from mmr1.registry import RegistryError
    from mmr1.templates import TemplateError
    from mmr1.config import ConfigError

    return (ConfigError, DataError, ImageLoadError, BatchConfigError, RewardError, PluginError,
            RegistryError, TemplateError, ValueError, OSError)


def prepare(config: TrainConfig, num_processes: int = 1, progress: bool = False) -> Prepared:
    """:func:`preflight`, raising :class:`PreflightError` with every problem if there is any."""
    result = preflight(config, num_processes, progress=progress)
    if result.problems:
        raise PreflightError(result.problems)
    return result.prepared


def preflight(config: TrainConfig, num_processes: int = 1, progress: bool = False,
              check_eval: bool = True) -> Preflight:
    """Resolve and check everything a run needs, without weights; collect every problem."""
    from mmr1.grpo.batching import plan_batches
    from mmr1.data.rows import resolve_image_roots
    from mmr1.grpo.rewards import check_option_columns, dataset_columns
    from mmr1.plugins import get_dataset, get_plugin_manager, get_rollout_backend, load_plugins
    from mmr1.templates import resolve_template

    out = Preflight(None)
    errors = _user_errors()

    def attempt(label, fn):
        try:
            return fn()
        except errors as exc:
            text = str(exc)
            out.problems.append(text if text.startswith(f"{label}:") else f"{label}: {text}")
            return None

    manager = attempt("plugins", lambda: load_plugins(config.plugins, base_dir=config.config_dir))
    plan = attempt("batch", lambda: plan_batches(
        num_processes, config.per_device_train_batch_size, config.num_generations,
        config.gradient_accumulation_steps, config.steps_per_generation, config.num_iterations))
    if manager is not None:
        registries = attempt("plugins", lambda: manager.registries)
    else:                  # the config's plugin failed; the others (built-ins, installed ones) may still resolve
        try:
            registries = get_plugin_manager().registries
        except Exception:  # noqa: BLE001 - the same failure, already reported under plugins
            registries = None
    if registries is None:
        # a plugin failed to load or register, or took a name twice: no name resolves, so say it once
        attempt("output", lambda: _check_output(config))
        return out
    template = attempt("template", lambda: resolve_template(
        config.template, config.system_prompt_template, config.question_template, config.answer_template,
        base_dir=config.config_dir))
    rewards = _build_rewards(config, out.problems)
    attempt("output", lambda: _check_output(config))
    backend_cls = attempt("rollout backend", lambda: get_rollout_backend(config.rollout_backend))
    adapter_cls = attempt("model", lambda: _resolve_model(config))
    processor = None
    if adapter_cls is not None:
        processor = attempt("model", lambda: adapter_cls.load_processor(
            config.model_name_or_path, config.min_pixels, config.max_pixels))
    adapter = None
    if processor is not None:
        adapter = attempt("model", lambda: _bare_adapter(adapter_cls, processor, config))

    datasets = {}
    eval_kwargs = config.eval_dataset_kwargs or config.dataset_kwargs
    for label, path, kwargs in (("train data", config.dataset_path, config.dataset_kwargs),
                                ("eval data", config.eval_dataset_path, eval_kwargs)):
        if label == "eval data" and not (check_eval and (path or config.eval_dataset_kwargs)):
            continue
        loader = attempt(label, lambda: get_dataset(config.dataset))
        if loader is None:
            continue
        bad_keys = _dataset_kwarg_problems(config.dataset, loader, kwargs,
                                           "dataset_kwargs" if label == "train data" else "eval_dataset_kwargs")
        if bad_keys:
            out.problems += [f"{label}: {p}" for p in bad_keys]
            continue
        dataset = attempt(label, lambda: _load(config.dataset, loader, data_path(config, path),
                                               resolve_image_roots(kwargs, config.config_dir)))
        if dataset is None:
            continue
        if len(dataset) == 0 and not getattr(dataset, "problems", None):
            out.problems.append(f"{label}: {getattr(dataset, 'source', config.dataset)}: the data set holds no rows; "
                                f"check dataset_path and dataset_kwargs")
            continue
        if label == "train data":
            dataset = dataset.subsample(config.train_sample_size, config.seed)
        found = list(getattr(dataset, "problems", []))
        found += check_rows(dataset, template, adapter, config, progress=progress, label=label)
        out.problems += [f"{label}: {p}" for p in found]
        out.summary.append(f"{label}: {len(dataset)} usable rows, {len(found)} problem(s)")
        datasets[label] = dataset
    if adapter_cls is not None and backend_cls is not None:
        out.problems += [f"rollout backend: {p}" for p in _pairing_problems(config, adapter_cls, backend_cls)]
    if rewards is not None and backend_cls is not None:
        columns = dataset_columns(datasets["train data"]) if "train data" in datasets else set()
        out.problems += [f"rewards: {p}" for p in _needs_problems(config, rewards, columns, backend_cls)]
    if "train data" in datasets and rewards is not None:
        attempt("rewards", lambda: check_option_columns(rewards, dataset_columns(datasets["train data"])))
        out.problems += [f"rewards: {p}" for p in _call_problems(
            rewards, dataset_columns(datasets["train data"]), getattr(backend_cls, "extra_columns", ()))]
    if not out.problems:
        out.prepared = Prepared(config, plan, template, rewards, datasets["train data"], adapter_cls, backend_cls,
                                processor, datasets.get("eval data"))
    return out


def _build_rewards(config: TrainConfig, problems: list[str]):
    """The rewards, one at a time so that every problem names its reward; None (and ``problems`` grown) if any."""
    from mmr1.grpo.rewards import build_rewards, name_problems
    from mmr1.registry import RegistryError, short_repr

    built, found = [], []
    for name in config.rewards:
        try:
            built += build_rewards([name], config.reward_kwargs, base_dir=config.config_dir)
        except RegistryError as exc:           # unknown names and bad options: the message names the reward
            found += str(exc).splitlines()
        except Exception as exc:  # noqa: BLE001 - a reward class's __init__ is plugin code
            options = (config.reward_kwargs or {}).get(name) or {}
            found.append(f"reward {name!r} failed to build with its reward_kwargs {short_repr(options)}: "
                         f"{_first_line(exc)}; fix the options or the reward's plugin")
    found += name_problems(config.rewards)
    for reward in built:
        if not callable(reward.fn):
            found.append(f"reward {reward.name!r} is not callable (its plugin registered an object of type "
                         f"{type(reward.fn).__name__}); register a function taking (completions, **kwargs)")
    problems += [f"rewards: {p}" for p in found]
    return None if found else built


def _call_problems(rewards, columns, backend_columns=()) -> list[str]:
    """Rewards whose signature cannot take what every call passes: the completions, every column and what the
    rollout backend adds (``generated_images`` for ``t2i``), by name."""
    from mmr1.grpo.rewards import OPTIONAL_KEYWORDS, PASSED_COLUMNS

    passed = sorted((set(columns) | set(PASSED_COLUMNS) | set(backend_columns)) - {"completions"})
    problems = []
    for reward in rewards:
        try:
            signature = inspect.signature(reward.fn)
        except (TypeError, ValueError):       # a builtin or C callable: nothing to check against
            continue
        optional = {k: None for k in OPTIONAL_KEYWORDS if k in signature.parameters}   # passed when named
        try:
            signature.bind([], **{**{c: None for c in passed}, **optional, **reward.options})
        except TypeError as exc:
            problems.append(f"reward {reward.name!r} cannot be called as mmr1 calls it, with the completions and "
                            f"the keywords {', '.join(passed)}: {exc}; give it a **kwargs parameter")
    return problems


def _pairing_problems(config: TrainConfig, adapter_cls, backend_cls) -> list[str]:
    """A model whose completions the rollout backend cannot write (a text-to-image model on ``hf``, a text
    model on ``t2i``): each side names the other side it needs (``rollout_backends`` / ``adapters``)."""
    backends = getattr(adapter_cls, "rollout_backends", None)
    adapters = getattr(backend_cls, "adapters", None)
    if backends is not None and backend_cls.name not in backends:
        return [f"model {config.model_name_or_path!r} (adapter {adapter_cls.name!r}) needs rollout_backend "
                f"{' or '.join(backends)}, but the config sets {config.rollout_backend!r}, whose rollouts "
                f"cannot write its completions; set rollout_backend: {backends[0]}"]
    if adapters is not None and adapter_cls.name not in adapters:
        return [f"rollout_backend {config.rollout_backend!r} works only with model adapter "
                f"{' or '.join(map(repr, adapters))}, but model {config.model_name_or_path!r} is adapter "
                f"{adapter_cls.name!r}; use another rollout_backend (e.g. hf) or a matching model"]
    return []


def _needs_problems(config: TrainConfig, rewards, columns, backend_cls) -> list[str]:
    """Rewards registered with ``needs=(...)`` (columns they cannot score without, e.g. ``generated_images``)
    when neither the data nor the rollout backend provides them: every call would fail."""
    from mmr1.grpo.rewards import PASSED_COLUMNS
    from mmr1.plugins import get_plugin_manager

    registry = get_plugin_manager().registry("register_rewards")
    provided = set(columns) | set(PASSED_COLUMNS) | set(getattr(backend_cls, "extra_columns", ()))
    problems = []
    for reward in rewards:
        registered = reward.entry == reward.name and reward.name in registry   # not a file reward named alike
        needs = registry.entry(reward.name).meta.get("needs", ()) if registered else ()
        missing = [n for n in needs if n not in provided]
        if missing:
            problems.append(f"reward {reward.name!r} needs {', '.join(missing)}, which neither the data nor "
                            f"rollout_backend {config.rollout_backend!r} provides, so every call would fail; "
                            f"use a rollout backend that provides it (generated_images: rollout_backend t2i) "
                            f"or another reward")
    return problems


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _load(name: str, loader, path, kwargs):
    """The loader's data set; a loader failing on its own (plugin code) is one line naming the loader."""
    from mmr1.registry import short_repr

    try:
        return loader(path=path, strict=False, **kwargs)
    except _user_errors():
        raise
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"dataset {name!r} failed to load with dataset_kwargs {short_repr(kwargs)}: "
                         f"{_first_line(exc)}; check dataset_kwargs") from None


def _check_output(config: TrainConfig) -> None:
    """``output_dir`` takes files, and ``resume_from_checkpoint`` names a checkpoint, as ``train`` will need."""
    from mmr1.grpo.checkpoint import OutputDirError, check_output_dir, resolve_resume

    try:
        check_output_dir(config.output_dir)
    except OutputDirError as exc:
        raise ValueError(str(exc)) from None
    resolve_resume(config.resume_from_checkpoint, config.output_dir)


def _resolve_model(config: TrainConfig):
    """The adapter class; a model path that is neither a folder nor loadable gets one clear line."""
    from mmr1.models.adapters import resolve_adapter

    name = config.model_name_or_path
    if not name:
        raise ValueError("model_name_or_path is not set (a local folder or a hub id)")
    path = Path(name).expanduser()
    looks_local = name.startswith(("/", "./", "../", "~")) or name.count("/") > 1 or name.endswith("/")
    if looks_local and not path.exists():
        raise FileNotFoundError(f"model_name_or_path {name!r}: no such folder (relative paths are relative to "
                                f"where you run mmr1); give a model folder or a hub id such as Qwen/Qwen2.5-VL-3B-Instruct")
    if path.is_file():
        raise ValueError(f"model_name_or_path {name!r} is a file; give the model's folder (with config.json)")
    if path.is_dir() and not (path / "config.json").is_file() and config.model_adapter == "auto":
        raise ValueError(f"model_name_or_path {name!r}: the folder has no config.json, so it is not a "
                         f"transformers model folder; point it at the folder save_pretrained wrote")
    try:
        return resolve_adapter(name, config.model_adapter)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if path.is_dir():
            raise ValueError(f"model_name_or_path {name!r}: its config.json cannot be read as a transformers model "
                             f"config ({first}); point it at the folder save_pretrained wrote") from None
        raise ValueError(f"model_name_or_path {name!r}: not a local folder, and it could not be loaded as a "
                         f"hub id ({first}); check the name, or download the model and give its folder") from None


def _bare_adapter(adapter_cls, processor, config: TrainConfig):
    adapter = adapter_cls(processor, config.min_pixels, config.max_pixels)
    adapter.configure(config)
    return adapter


def _dataset_kwarg_problems(name: str, loader, kwargs: dict, key: str) -> list[str]:
    """Keys the loader does not take (loaders end in ``**_``: ignored keys are a silent typo)."""
    from mmr1.registry import did_you_mean, short_repr

    if not isinstance(kwargs, dict):
        return [f"{key} must be a mapping of loader options, got {type(kwargs).__name__}"]
    try:
        params = inspect.signature(loader).parameters
    except (TypeError, ValueError):
        return []
    named = [n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
             and n not in ("path", "strict")]
    var = [n for n, p in params.items() if p.kind is p.VAR_KEYWORD]
    takes_any = bool(var) and var[0] != "_"
    problems = []
    for option in kwargs:
        if option in named:
            continue
        if option in ("path", "strict"):
            fix = "use dataset_path for the path" if option == "path" else "mmr1 checks every row and reports them all"
            problems.append(f"{key}: {option!r} is set by mmr1 itself; {fix}")
            continue
        hint = did_you_mean(option, named)
        if takes_any and not hint:
            continue
        problems.append(f"{key}: dataset {name!r} has no option {option!r} (options: "
                        f"{', '.join(named) or 'none'}).{hint}")
    if "columns" in kwargs and kwargs["columns"] is not None and not (
            isinstance(kwargs["columns"], dict) and all(isinstance(k, str) and isinstance(v, str)
                                                        for k, v in kwargs["columns"].items())):
        problems.append(f"{key}: columns must map your column names to mmr1's, e.g. "
                        f"{{columns: {{question: problem, answer: solution}}}}, got {short_repr(kwargs['columns'])}")
    return problems


def control_tokens(tokenizer) -> list[str]:
    """The tokenizer's special tokens (chat turns, vision placeholders, end of text), longest first."""
    found = set(getattr(tokenizer, "all_special_tokens", []) or [])
    for token in (getattr(tokenizer, "added_tokens_decoder", None) or {}).values():
        if getattr(token, "special", False):
            found.add(str(token.content))
    return sorted((t for t in found if t), key=len, reverse=True)


def escape_control_tokens(text: str, tokens: list[str]) -> str:
    """``text`` with each control token broken by an invisible mark, so it tokenizes as plain text."""
    for token in tokens:
        if token in text:
            text = text.replace(token, token[0] + ESCAPE_MARK + token[1:])
    return text


def _texts(row: dict):
    """``(field label, text, setter)`` for each piece of data text that reaches the prompt: ``problem`` and,
    for conversational rows, every text of the ``prompt`` messages."""
    if isinstance(row.get("problem"), str):
        yield "field 'problem'", row["problem"], lambda v: row.__setitem__("problem", v)
    messages = row.get("prompt")
    if not isinstance(messages, list):
        return
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            yield f"field 'prompt' (message {i})", content, lambda v, m=message: m.__setitem__("content", v)
        elif isinstance(content, list):
            for item in content:
                if isinstance(item, dict) and isinstance(item.get("text"), str):
                    yield f"field 'prompt' (message {i})", item["text"], lambda v, it=item: it.__setitem__("text", v)


def _control_token_problem(row: dict, tokens: list[str], escape: bool) -> str | None:
    """Escape (``escape``) or name the first control token in the row's data text; None when clean."""
    for label, text, set_text in list(_texts(row)):
        present = [t for t in tokens if t in text]
        if present and escape:
            set_text(escape_control_tokens(text, tokens))
        elif present:
            return (f"{label} contains the control token {present[0]!r} of this model's tokenizer; data text "
                    f"never injects control tokens or chat turns: remove it, or set special_tokens_in_data: "
                    f"escape to keep it as plain text")
    return None


def check_rows(dataset, template, adapter, config: TrainConfig, progress: bool = False,
               label: str = "data") -> list[DataProblem]:
    """Every row as the trainer will use it: images open, the prompt builds, fits, holds no control token.

    With ``special_tokens_in_data: escape`` the rows' ``problem`` text is escaped in place
    (:func:`escape_control_tokens`) instead of refused.
    """
    from tqdm.auto import tqdm

    from mmr1.data import ImageLoadError, load_image
    from mmr1.templates import row_messages

    rows = getattr(dataset, "rows", None)
    if rows is None:             # a loader's own dataset type (e.g. extracted image tokens): nothing to render
        return []
    takes_images = adapter is not None and adapter.takes_images
    tokens = control_tokens(adapter.tokenizer) if adapter is not None else []
    escape = config.special_tokens_in_data == "escape"
    problems: list[DataProblem] = []
    bar = tqdm(rows, desc=f"checking {label}", disable=not progress or len(rows) < 200, dynamic_ncols=True)
    for row in bar:
        source, _, index = row.get("_source", f"{getattr(dataset, 'source', label)}:?").rpartition(":")
        where = (source, int(index) if index.isdigit() else None)
        images, broken = [], False
        for ref in row.get("image", []) or []:
            try:
                images.append(load_image(ref))
            except ImageLoadError as exc:
                problems.append(DataProblem(*where, str(exc)))
                broken = True
        problem = row.get("problem")
        if not isinstance(problem, str) or template is None or adapter is None:
            continue
        found = _control_token_problem(row, tokens, escape)
        if found:
            problems.append(DataProblem(*where, found))
            continue
        if broken:
            continue
        try:
            messages = row_messages(template, row, len(images) if takes_images else 0, where="")
        except ValueError as exc:            # images vs <image> placeholders, malformed chat messages
            problems.append(DataProblem(*where, str(exc)))
            continue
        try:
            length = adapter.prompt_length(messages, images if takes_images else None)
        except Exception as exc:  # noqa: BLE001 - whatever would crash the rollout is this row's problem
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            problems.append(DataProblem(*where, f"the prompt cannot be built: {type(exc).__name__}: {text}"
                                        + ("; check the image's size and aspect ratio" if images else "")))
            continue
        if config.max_prompt_length is not None and length > config.max_prompt_length:
            problems.append(DataProblem(*where, (
                f"the prompt has {length} tokens{' (image tokens included)' if images else ''} but "
                f"max_prompt_length is {config.max_prompt_length}; raise max_prompt_length"
                f"{', lower max_pixels' if images else ''} or shorten the problem")))
    return problems
