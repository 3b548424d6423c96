"""Loading processors for Qwen2-VL / Qwen2.5-VL (and tokenizers for plain causal LMs), with or without
torchvision.

Why this module exists: without torchvision (CPU machines here cannot install it), transformers'
``Qwen2VLProcessor`` / ``Qwen2_5_VLProcessor`` cannot be built, because their video processor needs
torchvision, and ``AutoProcessor.from_pretrained`` of a Qwen-VL folder then *silently* returns the bare
tokenizer. :func:`load_processor` detects that and builds a processor without the video sub-processor
(image processor + tokenizer + chat template), which handles images exactly like the full one. With
torchvision installed the standard processor is returned unchanged.

The no-video classes save themselves under the standard class names, so a folder they wrote loads with
the standard processor wherever torchvision is available (e.g. a GPU machine or vLLM).
"""

from __future__ import annotations

import functools
import json
import logging
import os
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = [
    "Qwen2VLProcessorNoVideo",
    "Qwen2_5_VLProcessorNoVideo",
    "build_vl_processor",
    "get_image_processor_class",
    "load_processor",
    "mm_token_type_ids",
    "processor_tokenizer",
    "register_no_video_processors",
    "set_pixel_budget",
    "smart_resize_hw",
    "torchvision_available",
]

# model_type -> (standard processor class name, our no-video class name)
_VL_FAMILIES = {
    "qwen2_vl": "Qwen2VLProcessor",
    "qwen2_5_vl": "Qwen2_5_VLProcessor",
}


def torchvision_available() -> bool:
    """Whether torchvision imports (and hence transformers' Qwen-VL video processor can be built)."""
    try:
        from transformers.utils import is_torchvision_available

        return bool(is_torchvision_available())
    except Exception:  # pragma: no cover - very old transformers
        import importlib.util

        return importlib.util.find_spec("torchvision") is not None


def _smart_resize_fn():
    # The torchvision-free module first: image_processing_qwen2_vl imports torchvision at module level in
    # transformers 5.x (in 4.x it is the slow numpy processor, without torchvision).
    for module in (
        "transformers.models.qwen2_vl.image_processing_pil_qwen2_vl",
        "transformers.models.qwen2_vl.image_processing_qwen2_vl",
    ):
        try:
            mod = __import__(module, fromlist=["smart_resize"])
            return mod.smart_resize
        except (ImportError, AttributeError):
            continue
    raise ImportError(
        "transformers' Qwen2-VL smart_resize was not found; install a transformers release with Qwen2-VL (>= 4.45)"
    )


def smart_resize_hw(
    height: int, width: int, min_pixels: int, max_pixels: int, factor: int = 28
) -> tuple[int, int]:
    """Qwen-VL's resize arithmetic (transformers' ``smart_resize``): the (height, width) an image is resized
    to so that both sides are multiples of ``factor`` (patch_size * merge_size) and the area lies within
    ``[min_pixels, max_pixels]``, keeping the aspect ratio as closely as possible."""
    h, w = _smart_resize_fn()(
        int(height), int(width), factor=int(factor), min_pixels=int(min_pixels), max_pixels=int(max_pixels)
    )
    return int(h), int(w)


@functools.lru_cache(maxsize=None)
def get_image_processor_class():
    """The Qwen2-VL image processor class that works here: transformers' default (torchvision-backed) one
    when torchvision is installed, otherwise the PIL one (transformers 5) or the slow numpy one (4.x)."""
    import transformers

    if _is_v5():  # "Qwen2VLImageProcessor" is the torchvision backend, "...Pil" the PIL one
        names = ["Qwen2VLImageProcessor", "Qwen2VLImageProcessorPil"]
    else:  # 4.x: "...Fast" is the torchvision one, "Qwen2VLImageProcessor" the slow numpy one
        names = ["Qwen2VLImageProcessorFast", "Qwen2VLImageProcessor"]
    if not torchvision_available():
        names = names[1:]
    for name in names:
        try:
            cls = getattr(transformers, name)
        except (ImportError, AttributeError):
            continue
        if isinstance(cls, type) and _usable(cls):
            return cls
    raise ImportError(
        "no usable Qwen2-VL image processor in this transformers install "
        f"(transformers {transformers.__version__}, torchvision {'present' if torchvision_available() else 'absent'})"
    )


def _is_v5() -> bool:
    import transformers

    return int(transformers.__version__.split(".")[0]) >= 5


def _usable(cls) -> bool:
    try:
        cls()
        return True
    except Exception:
        return False


# --------------------------------------------------------------------------------------------------
# Processor classes without the video sub-processor
# --------------------------------------------------------------------------------------------------


def _make_no_video_class(base_name: str):
    import transformers

    base = getattr(transformers, base_name)

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        # The base __init__ passes (image_processor, tokenizer, video_processor): with only two attributes
        # declared here, ProcessorMixin keeps the first two and never builds or stores a video processor.
        base.__init__(self, image_processor, tokenizer, None, chat_template=chat_template, **kwargs)

    def __call__(self, images=None, text=None, videos=None, **kwargs):
        if videos is not None:
            raise ValueError(
                f"{type(self).__name__} has no video processor (transformers' Qwen-VL video processor needs "
                "torchvision, which is not installed); pass images only, or install torchvision for videos"
            )
        return base.__call__(self, images=images, text=text, **kwargs)

    def save_pretrained(self, save_directory, *args, **kwargs):
        result = base.save_pretrained(self, save_directory, *args, **kwargs)
        folder = Path(save_directory)
        if not (folder / "preprocessor_config.json").exists():
            # As real Qwen-VL repos have it: older transformers read the image processor from it, and the
            # standard processor builds its video processor from it where torchvision is installed.
            self.image_processor.save_pretrained(folder)
        _rename_processor_class(folder, type(self).__name__, base_name)
        return result

    def to_dict(self):
        out = base.to_dict(self)
        if out.get("processor_class") == type(self).__name__:
            out["processor_class"] = base_name
        return out

    cls = type(
        base_name + "NoVideo",
        (base,),
        {
            "__init__": __init__,
            "__call__": __call__,
            "save_pretrained": save_pretrained,
            "to_dict": to_dict,
            "__module__": __name__,
            "__doc__": (
                f"``{base_name}`` without the video sub-processor (works without torchvision). Images are "
                f"processed exactly as by ``{base_name}``; passing videos raises an error. Saves itself as "
                f"``{base_name}``."
            ),
            "saved_as": base_name,
        },
    )
    return cls


def _rename_processor_class(folder: Path, old: str, new: str) -> None:
    for name in ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json"):
        path = folder / name
        if not path.is_file():
            continue
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("processor_class") == old:
            data["processor_class"] = new
            path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


class _LazyClasses:
    """Creates the no-video classes on first use (importing transformers' processors is not free)."""

    _cache: dict[str, type] = {}

    @classmethod
    def get(cls, family: str) -> type:
        if family not in cls._cache:
            cls._cache[family] = _make_no_video_class(_VL_FAMILIES[family])
            _register(family, cls._cache[family])
        return cls._cache[family]


def _register(family: str, processor_cls: type) -> None:
    """Map the Qwen-VL config to the no-video processor for AutoProcessor, but only where the standard
    processor cannot be built (no torchvision); with torchvision the standard mapping stays untouched."""
    if torchvision_available():
        return
    try:
        from transformers import AutoConfig, AutoProcessor

        config_cls = type(AutoConfig.for_model(family))
        AutoProcessor.register(config_cls, processor_cls, exist_ok=True)
    except Exception as exc:  # pragma: no cover - registration is a convenience
        logger.debug("could not register %s with AutoProcessor: %s", processor_cls.__name__, exc)


def register_no_video_processors() -> None:
    """Create the no-video processor classes and, where torchvision is missing, register them with
    ``AutoProcessor`` for the Qwen2-VL / Qwen2.5-VL configs (so ``AutoProcessor.from_pretrained`` of a
    folder that names no processor class builds a working processor instead of a bare tokenizer)."""
    for family in _VL_FAMILIES:
        _LazyClasses.get(family)


def __getattr__(name: str):
    # Module attributes Qwen2VLProcessorNoVideo / Qwen2_5_VLProcessorNoVideo, created lazily.
    for family, base_name in _VL_FAMILIES.items():
        if name == base_name + "NoVideo":
            return _LazyClasses.get(family)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------------------------------
# Building and loading
# --------------------------------------------------------------------------------------------------


def set_pixel_budget(image_processor, min_pixels: int | None = None, max_pixels: int | None = None):
    """Apply a min/max pixel budget to a Qwen2-VL image processor in place (any transformers version)."""
    if min_pixels is None and max_pixels is None:
        return image_processor
    if min_pixels is not None and max_pixels is not None and min_pixels > max_pixels:
        raise ValueError(f"min_pixels={min_pixels} is larger than max_pixels={max_pixels}")
    size = getattr(image_processor, "size", None)
    if hasattr(size, "__dict__") and not isinstance(size, dict):  # transformers 5 SizeDict
        size = {k: v for k, v in vars(size).items() if v is not None}
    size = dict(size or {})
    if min_pixels is not None:
        size["shortest_edge"] = int(min_pixels)
        if hasattr(image_processor, "min_pixels"):
            image_processor.min_pixels = int(min_pixels)
    if max_pixels is not None:
        size["longest_edge"] = int(max_pixels)
        if hasattr(image_processor, "max_pixels"):
            image_processor.max_pixels = int(max_pixels)
    for key in ("min_pixels", "max_pixels", "height", "width"):
        size.pop(key, None)
    try:
        from transformers.image_processing_utils import SizeDict  # type: ignore[attr-defined]
    except ImportError:
        SizeDict = None
    current = getattr(image_processor, "size", None)
    if SizeDict is not None and current is not None and type(current).__name__ == "SizeDict":
        image_processor.size = SizeDict(**size)
    else:
        image_processor.size = size
    return image_processor


def build_vl_processor(
    tokenizer,
    family: str = "qwen2_5_vl",
    image_processor=None,
    chat_template: str | None = None,
    patch_size: int = 14,
    merge_size: int = 2,
    temporal_patch_size: int = 2,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
):
    """A Qwen-VL processor from a tokenizer (+ optionally an image processor): the standard class when
    torchvision is available, otherwise the no-video class."""
    if family not in _VL_FAMILIES:
        raise ValueError(f"unknown VL family {family!r}: expected one of {sorted(_VL_FAMILIES)}")
    if image_processor is None:
        image_processor = get_image_processor_class()(
            patch_size=patch_size, merge_size=merge_size, temporal_patch_size=temporal_patch_size
        )
    set_pixel_budget(image_processor, min_pixels, max_pixels)
    template = chat_template or getattr(tokenizer, "chat_template", None)
    if torchvision_available():
        try:
            import transformers

            base = getattr(transformers, _VL_FAMILIES[family])
            video_processor = _video_processor_like(image_processor)
            if video_processor is not None:
                return base(
                    image_processor=image_processor,
                    tokenizer=tokenizer,
                    video_processor=video_processor,
                    chat_template=template,
                )
        except Exception as exc:
            logger.debug("standard %s could not be built (%s); using the no-video one", family, exc)
    return _LazyClasses.get(family)(image_processor=image_processor, tokenizer=tokenizer, chat_template=template)


def _video_processor_like(image_processor):
    try:
        from transformers import Qwen2VLVideoProcessor
    except ImportError:
        return None
    kwargs = {
        k: getattr(image_processor, k)
        for k in ("patch_size", "merge_size", "temporal_patch_size")
        if getattr(image_processor, k, None) is not None
    }
    return Qwen2VLVideoProcessor(**kwargs)


def mm_token_type_ids(input_ids, image_token_id: int, video_token_id: int | None = None):
    """Per-token modality ids as Qwen-VL processors return them (0 text, 1 image pad, 2 video pad).

    Recent transformers (>= 5.17) compute Qwen-VL's multimodal rotary positions only when the forward
    gets ``mm_token_type_ids``: Qwen2-VL raises without it and Qwen2.5-VL silently falls back to plain 1-D
    positions (different logits). Use this to rebuild it for sequences assembled after the processor
    (prompt + completion).
    """
    import torch

    ids = torch.as_tensor(input_ids)
    out = torch.zeros_like(ids)
    out[ids == int(image_token_id)] = 1
    if video_token_id is not None:
        out[ids == int(video_token_id)] = 2
    return out


def _model_type(path_or_id: str | os.PathLike, **kwargs) -> str | None:
    try:
        from transformers import AutoConfig

        return getattr(AutoConfig.from_pretrained(path_or_id, **kwargs), "model_type", None)
    except Exception:
        return None


def _is_tokenizer(obj) -> bool:
    from transformers import PreTrainedTokenizerBase

    return isinstance(obj, PreTrainedTokenizerBase)


def processor_tokenizer(processor):
    """The tokenizer of a processor (or the object itself when it is a tokenizer)."""
    return processor if _is_tokenizer(processor) else getattr(processor, "tokenizer", processor)


def load_processor(
    path_or_id: str | os.PathLike, min_pixels: int | None = None, max_pixels: int | None = None, **kwargs: Any
):
    """Load a working processor for ``path_or_id`` (local folder or hub id).

    * Qwen2-VL / Qwen2.5-VL: a processor with image processor + tokenizer + chat template, whether or not
      torchvision is installed (without it, a no-video processor: see the module docstring).
      ``min_pixels`` / ``max_pixels`` set the image processor's pixel budget.
    * Other models with a processor: whatever ``AutoProcessor`` gives (pixel budget applied where the
      image processor has one).
    * Plain causal LMs: the tokenizer.

    ``kwargs`` (``revision``, ``local_files_only``, ``trust_remote_code``, ...) go to ``from_pretrained``.
    """
    from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer

    path = str(path_or_id)
    if not torchvision_available():
        register_no_video_processors()
    model_type = _model_type(path, **kwargs)
    family = model_type if model_type in _VL_FAMILIES else None
    if family is not None and not torchvision_available():
        # Known not to build: go straight to the parts instead of through AutoProcessor's fallback.
        return _assemble(path, family, min_pixels, max_pixels, **kwargs)

    error: Exception | None = None
    try:
        processor = AutoProcessor.from_pretrained(path, **kwargs)
    except Exception as exc:  # e.g. a video processor that cannot be built
        processor, error = None, exc

    if processor is not None and not _is_tokenizer(processor):
        if getattr(processor, "image_processor", None) is not None:
            set_pixel_budget(processor.image_processor, min_pixels, max_pixels)
        return processor

    # AutoProcessor gave the bare tokenizer (or failed). For a VL model, build the processor from parts.
    if family is None and _has_image_processor_config(path, **kwargs):
        family = _family_from_image_processor(path, **kwargs)
    if family is not None:
        return _assemble(path, family, min_pixels, max_pixels, **kwargs)
    if processor is not None:
        return processor
    try:
        return AutoTokenizer.from_pretrained(path, **kwargs)
    except Exception:
        pass
    try:
        image_processor = AutoImageProcessor.from_pretrained(path, **kwargs)
        return set_pixel_budget(image_processor, min_pixels, max_pixels)
    except Exception:
        pass
    raise ValueError(
        f"could not load a processor or tokenizer from {path!r}: {error}. Pass a local folder or hub id "
        "holding tokenizer files (and preprocessor/processor config for vision-language models)."
    )


def _assemble(path: str, family: str, min_pixels, max_pixels, **kwargs):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
    # The family is known, so load its image processor class directly: AutoImageProcessor may pick a
    # torchvision-backed class (or, in some releases, refuse to run at all without torchvision).
    try:
        image_processor = get_image_processor_class().from_pretrained(path, **kwargs)
    except Exception as exc:
        raise ValueError(
            f"{path!r} is a {family} model but its image processor could not be loaded ({exc}); it needs a "
            "preprocessor_config.json or processor_config.json"
        ) from exc
    chat_template = _read_chat_template(path, **kwargs) or getattr(tokenizer, "chat_template", None)
    return build_vl_processor(
        tokenizer,
        family=family,
        image_processor=image_processor,
        chat_template=chat_template,
        min_pixels=min_pixels,
        max_pixels=max_pixels,
    )


def _model_files(path: str, names, **kwargs):
    """Each of ``names`` that the model folder (or hub repo, through the cache) has, as a local path, in order;
    the hub keywords of ``kwargs`` (revision, cache_dir, token, local_files_only, subfolder) are passed on."""
    try:
        from transformers.utils import cached_file
    except ImportError:  # pragma: no cover
        return
    hub = {k: kwargs[k] for k in ("revision", "cache_dir", "token", "local_files_only", "subfolder") if k in kwargs}
    for name in names:
        try:
            file = cached_file(path, name, _raise_exceptions_for_missing_entries=False,
                               _raise_exceptions_for_connection_errors=False,
                               _raise_exceptions_for_gated_repo=False, **hub)
        except Exception:
            file = None
        if file:
            yield Path(file)


def _read_chat_template(path: str, **kwargs) -> str | None:
    """The processor chat template saved next to the model (chat_template.jinja / chat_template.json)."""
    for file in _model_files(path, ("chat_template.jinja", "chat_template.json"), **kwargs):
        text = file.read_text(encoding="utf-8")
        if file.name.endswith(".json"):
            try:
                return json.loads(text).get("chat_template")
            except (ValueError, AttributeError):
                continue
        return text
    return None


def _has_image_processor_config(path: str, **kwargs) -> bool:
    return any(True for _ in _model_files(path, ("preprocessor_config.json", "processor_config.json"), **kwargs))


def _family_from_image_processor(path: str, **kwargs) -> str | None:
    """For folders without a config.json: a Qwen2-VL image processor + processor_class names the family."""
    names = ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json")
    for file in _model_files(path, names, **kwargs):
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except ValueError:
            continue
        cls = str(data.get("processor_class") or "")
        for family, base_name in _VL_FAMILIES.items():
            if cls in (base_name, base_name + "NoVideo"):
                return family
    return None
