"""Tiny random-weight models built from config, for the demo and the tests.

Everything here is built locally: a byte-level BPE tokenizer trained with the ``tokenizers`` library on a
small synthetic corpus, and Qwen2.5-VL / Qwen2-VL / Qwen2 models instantiated from a config with random
weights. The results are saved with ``save_pretrained`` so that the *standard* loading path
(``AutoModelForImageTextToText`` / ``AutoModelForCausalLM`` / :func:`mmr1.models.processors.load_processor`)
reloads them offline, exactly as it would load a real checkpoint.

Nothing in this module reads from a model hub.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

__all__ = [
    "QWEN_SPECIAL_TOKENS",
    "QWEN_VL_CHAT_TEMPLATE",
    "TINY_KINDS",
    "build_tiny_causal_lm",
    "build_tiny_vlm",
    "default_corpus",
    "make_tiny",
    "train_tokenizer",
]

# Qwen's special tokens used by the chat template and by the VL models. The first one doubles as the
# padding / document-end token, ``<|im_end|>`` ends a chat turn (the eos of instruct models).
QWEN_SPECIAL_TOKENS: list[str] = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# Qwen2's pre-tokenization: NFC normalisation, then this split regex (contractions, letter runs with one
# optional leading non-letter, single digits, punctuation runs, newlines, whitespace), then byte-level
# mapping without the GPT-2 regex. transformers rebuilds Qwen2Tokenizer from vocab + merges with exactly
# this pipeline, so a BPE trained with anything else would tokenize differently after a reload.
QWEN2_SPLIT_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# Qwen2-VL style chat template (ChatML): every turn is ``<|im_start|>role\n...<|im_end|>\n``; images in
# the content become ``<|vision_start|><|image_pad|><|vision_end|>`` (the processor expands the single
# pad to one pad per merged patch); a default system turn is inserted when the conversation has none.
QWEN_VL_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if loop.first and message['role'] != 'system' -%}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}"
    "{{- message['content'] -}}"
    "{%- else -%}"
    "{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' or item['type'] == 'image_url' or 'image' in item or 'image_url' in item -%}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif item['type'] == 'video' or 'video' in item -%}"
    "{{- '<|vision_start|><|video_pad|><|vision_end|>' -}}"
    "{%- elif 'text' in item -%}"
    "{{- item['text'] -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- endif -%}"
)

TINY_KINDS = ("qwen2_5_vl", "qwen2_vl", "causal_lm", "t2i")

_COLOURS = [
    "red", "green", "blue", "yellow", "purple", "orange", "black", "white", "gray", "grey", "pink",
    "brown", "cyan", "magenta",
]
_SHAPES = [
    "circle", "square", "triangle", "rectangle", "star", "hexagon", "ellipse", "diamond", "line",
    "cross", "heart", "pentagon",
]
_NUMBER_WORDS = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
]
_OBJECTS = ["object", "objects", "shape", "shapes", "item", "items", "dot", "dots", "block", "blocks"]
_QUESTIONS = [
    "What colour is the {shape}?",
    "What color is the {shape} in the image?",
    "How many {shape}s are there?",
    "Count the {colour} objects in the image.",
    "Which shape is {colour}?",
    "Describe the image.",
    "Where is the {colour} {shape}? Give the bounding box.",
    "Is there a {colour} {shape} in the picture?",
    "Answer with a single word.",
    "Think step by step, then give the final answer.",
    "Solve the problem and put the answer in the answer tags.",
    "Output the thinking process in <think> </think> and the final answer in <answer> </answer> tags.",
]
_SENTENCES = [
    "The {colour} {shape} is on the left of the image.",
    "There are {n} {colour} {shape}s on a white background.",
    "A {colour} {shape} next to a {colour2} {shape2}.",
    "I count {n} objects in total.",
    "The answer is {n}.",
    "The image shows a {colour} {shape}.",
    "Let me look at the picture carefully.",
    "First, I find the {shape}. Then I check its colour.",
    "So the final answer is {colour}.",
    "a photo of a {colour} {shape} on a {colour2} background",
    "A picture of {n} {colour} {shape}s.",
]
_WORDS = (
    "the a an of to in on at by for with from and or not is are was be this that these those it its "
    "there here what which who where when why how many much more less most least than then so because "
    "image picture photo scene view left right top bottom middle center corner above below next near far "
    "inside outside between behind front back large small big tiny long short wide tall thin bright dark "
    "light color colour colors colours shape shapes size number count total each every some all none only "
    "first second third last final answer question problem solution step think reason look see find check "
    "give show tell describe compare choose select option options correct wrong true false yes no maybe "
    "please carefully answer_format output format tag tags box boxes bounding coordinates point points "
    "x y width height area angle degree degrees length side sides radius diameter triangle's sum difference "
    "product quotient equal equals plus minus times divided half double twice value values result results "
    "user assistant system helpful you are I we they he she can could would should will must may might "
    "has have had do does did make made get got put take took use used write read text word words letter "
    "letters digit digits sign signs chart table graph bar bars axis row rows column columns cell label "
    "labels title figure diagram map grid pattern background foreground object's person people car cars "
    "tree trees house sky water cat dog bird apple ball cup book chair table's"
).split()
_UNICODE = ["café", "naïve", "façade", "Zürich", "résumé", "×", "÷", "≤", "≥", "≠", "°", "π", "√", "∑", "→", "·"]
_MATH = [
    "\\frac{{{a}}}{{{b}}}",
    "$x^2 + {a}x + {b} = 0$",
    "\\sqrt{{{a}}} \\times {b} = ?",
    "\\boxed{{{a}}}",
    "{a} + {b} = {c}",
    "{a} - {b} = {d}",
    "{a} \\cdot {b}",
    "Let $x = {a}$, then $2x = {e}$.",
    "\\angle ABC = {a}^\\circ",
    "\\pi r^2",
]


def default_corpus(n: int = 3000, seed: int = 0) -> list[str]:
    """A small synthetic training corpus for :func:`train_tokenizer`.

    It covers English prompt text, digits, colour / shape / counting words, the reasoning tags
    ``<think>``, ``</think>``, ``<answer>``, ``</answer>`` (frequent enough to merge into few tokens),
    JSON and bounding-box punctuation, and LaTeX-ish math. Deterministic for a given ``seed``.
    """
    rng = random.Random(seed)
    out: list[str] = []

    def fill(template: str) -> str:
        a, b = rng.randint(0, 99), rng.randint(1, 99)
        return template.format(
            colour=rng.choice(_COLOURS),
            colour2=rng.choice(_COLOURS),
            shape=rng.choice(_SHAPES),
            shape2=rng.choice(_SHAPES),
            n=rng.randint(0, 12),
            a=a,
            b=b,
            c=a + b,
            d=a - b,
            e=2 * a,
        )

    for i in range(n):
        colour, shape, count = rng.choice(_COLOURS), rng.choice(_SHAPES), rng.randint(0, 12)
        kind = i % 8
        if kind == 0:
            out.append(fill(rng.choice(_QUESTIONS)))
        elif kind == 1:
            out.append(
                f"<think>{fill(rng.choice(_SENTENCES))} {fill(rng.choice(_SENTENCES))}</think>"
                f"<answer>{colour}</answer>"
            )
        elif kind == 2:
            out.append(f"<think>\n{fill(rng.choice(_SENTENCES))}\n</think>\n<answer>\n{count}\n</answer>")
        elif kind == 3:
            x1, y1 = rng.randint(0, 400), rng.randint(0, 400)
            x2, y2 = x1 + rng.randint(1, 200), y1 + rng.randint(1, 200)
            box = json.dumps({"bbox_2d": [x1, y1, x2, y2], "label": f"{colour} {shape}"})
            out.append(rng.choice([box, f"[{x1}, {y1}, {x2}, {y2}]", f"({x1},{y1}),({x2},{y2})"]))
        elif kind == 4:
            out.append(f"<think>{fill(rng.choice(_MATH))}</think> <answer>{fill(rng.choice(_MATH))}</answer>")
        elif kind == 5:
            words = [rng.choice(_NUMBER_WORDS), colour, shape, rng.choice(_OBJECTS)]
            out.append(" ".join(words) + f" {count} " + " ".join(str(rng.randint(0, 9)) for _ in range(5)))
        elif kind == 6:
            out.append(f"<answer>{rng.choice([colour, shape, str(count), rng.choice(_NUMBER_WORDS)])}</answer>")
        else:
            out.append(fill(rng.choice(_SENTENCES)) + " " + fill(rng.choice(_QUESTIONS)))
    # Plain English prompt text over a few hundred common words, with some non-ASCII text mixed in.
    for _ in range(n // 2):
        words = rng.choices(_WORDS + _COLOURS + _SHAPES, k=rng.randint(6, 16))
        if rng.random() < 0.2:
            words.insert(rng.randrange(len(words)), rng.choice(_UNICODE))
        sentence = " ".join(words)
        out.append(sentence[0].upper() + sentence[1:] + rng.choice([".", "?", "!", ":", ","]))
    # Every colour / shape / number word in isolation and capitalised, so each ends up as one token.
    vocab_words = _COLOURS + _SHAPES + _NUMBER_WORDS + _OBJECTS
    for _ in range(20):
        out.append(" ".join(vocab_words))
        out.append(" ".join(w.capitalize() for w in vocab_words))
        out.append("<think> </think> <answer> </answer> <think></think><answer></answer>")
    return out


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int = 2000,
    special_tokens: list[str] | None = None,
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer locally, Qwen2-style, and return it as a fast tokenizer.

    The tokenizer uses Qwen2's normalizer (NFC) and pre-tokenizer (Qwen's split regex + byte-level), so
    after ``save_pretrained`` it reloads through ``AutoTokenizer`` (which for ``model_type`` qwen2 /
    qwen2_vl / qwen2_5_vl rebuilds a ``Qwen2Tokenizer`` from vocab + merges) with identical ids. Qwen's
    special tokens (``<|endoftext|>``, ``<|im_start|>``, ``<|im_end|>``, vision / box tokens) come first,
    followed by ``special_tokens`` (extra specials), the 256 byte symbols and the merges. The Qwen2-VL chat
    template is set. eos is ``<|im_end|>``, pad (and unk) ``<|endoftext|>``.

    Args:
        texts: training texts (e.g. :func:`default_corpus`).
        vocab_size: largest vocabulary size (specials + 256 bytes + merges); must leave room for merges.
            BPE stops earlier when no pair occurs twice more: :func:`default_corpus` gives about 1500.
        special_tokens: extra special tokens, added after Qwen's.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = list(QWEN_SPECIAL_TOKENS)
    for tok in special_tokens or []:
        if tok not in specials:
            specials.append(tok)
    min_size = len(specials) + 256
    if vocab_size < min_size + 32:
        raise ValueError(
            f"vocab_size={vocab_size} leaves no room for BPE merges: {len(specials)} special tokens + 256 "
            f"byte symbols already take {min_size} ids. Use vocab_size >= {min_size + 32} (e.g. 2000)."
        )
    texts = list(texts)
    if not texts:
        raise ValueError("train_tokenizer needs at least one training text (try default_corpus()).")

    backend = Tokenizer(models.BPE())
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)

    merges = _merges_of(backend)
    if not merges:
        raise RuntimeError(
            "the trained tokenizer has no merges (character-level); give it a larger corpus or vocab_size"
        )

    fast = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=[t for t in specials if t not in ("<|endoftext|>", "<|im_end|>")],
        clean_up_tokenization_spaces=False,
        split_special_tokens=False,
        model_max_length=32768,
        errors="replace",
    )
    fast.chat_template = QWEN_VL_CHAT_TEMPLATE
    tokenizer = _as_qwen2_tokenizer(fast)
    tokenizer.padding_side = "left"

    # The tokenizer must give the ids the trained backend gives (it is rebuilt from vocab + merges).
    sample = texts[:: max(1, len(texts) // 64)][:64] + ["".join(specials) + " 0123 Ünïcödé ∑ π ×"]
    for text in sample:
        want = backend.encode(text).ids
        got = tokenizer(text, add_special_tokens=False)["input_ids"]
        if got != want:
            raise RuntimeError(f"tokenizer rebuilt as {type(tokenizer).__name__} changes the ids of {text!r}")
    return tokenizer


def _as_qwen2_tokenizer(fast):
    """Re-load ``fast`` through ``AutoTokenizer`` declared as ``Qwen2Tokenizer``, as real Qwen repos are.

    This is the path every later load takes (transformers rebuilds Qwen2Tokenizer from vocab + merges
    with Qwen's own pre-tokenizer), so the tokenizer returned is the one a reload gives.
    """
    import tempfile

    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory(prefix="mmr1-tok-") as tmp:
        fast.save_pretrained(tmp)
        cfg_path = Path(tmp) / "tokenizer_config.json"
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        cfg["tokenizer_class"] = "Qwen2Tokenizer"
        cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False), encoding="utf-8")
        try:
            tok = AutoTokenizer.from_pretrained(tmp)
        except Exception:  # pragma: no cover - very old/new transformers without a Qwen2 fast tokenizer
            return fast
        if tok.chat_template is None:
            tok.chat_template = fast.chat_template
        # Detach from the temporary folder (these would otherwise be written into tokenizer_config.json).
        for key in ("vocab_file", "merges_file", "tokenizer_file", "name_or_path", "is_local", "local_files_only"):
            tok.init_kwargs.pop(key, None)
        tok.name_or_path = ""
        return tok


def _merges_of(backend) -> list:
    state = json.loads(backend.to_str())
    return list(state.get("model", {}).get("merges", []))


def _tokenizer_for(corpus: Iterable[str] | None, vocab_size: int):
    return train_tokenizer(default_corpus() if corpus is None else corpus, vocab_size=vocab_size)


def _mrope_section(head_dim: int) -> list[int]:
    """Split head_dim / 2 rotary frequencies over (temporal, height, width) like Qwen's [16, 24, 24]."""
    half = head_dim // 2
    t = max(1, half // 4)
    h = (half - t) // 2
    w = half - t - h
    if min(t, h, w) < 1:
        raise ValueError(f"head_dim={head_dim} is too small for multimodal rotary embeddings (needs >= 6)")
    return [t, h, w]


def build_tiny_vlm(
    out_dir: str | os.PathLike,
    family: str = "qwen2_5_vl",
    text_hidden: int = 64,
    text_layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    vision_depth: int = 2,
    vision_hidden: int = 32,
    vision_heads: int = 2,
    patch_size: int = 14,
    spatial_merge_size: int = 2,
    vocab_size: int = 2000,
    seed: int = 0,
    corpus: Iterable[str] | None = None,
) -> Path:
    """Build a tiny random-weight Qwen2.5-VL (or ``family="qwen2_vl"``) and save model + processor.

    The result loads offline with ``AutoModelForImageTextToText.from_pretrained(out_dir)`` and
    :func:`mmr1.models.processors.load_processor` (image processor + tokenizer + chat template). The
    weights depend only on ``seed``. Returns ``Path(out_dir)``.
    """
    import torch

    if family not in ("qwen2_5_vl", "qwen2_vl"):
        raise ValueError(f"unknown VLM family {family!r}: expected 'qwen2_5_vl' or 'qwen2_vl'")
    if text_hidden % heads:
        raise ValueError(f"text_hidden={text_hidden} must be divisible by heads={heads}")
    if heads % kv_heads:
        raise ValueError(f"heads={heads} must be divisible by kv_heads={kv_heads}")
    if vision_hidden % vision_heads:
        raise ValueError(f"vision_hidden={vision_hidden} must be divisible by vision_heads={vision_heads}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    tokenizer = _tokenizer_for(corpus, vocab_size)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    head_dim = text_hidden // heads
    text_config: dict[str, Any] = dict(
        vocab_size=len(tokenizer),
        hidden_size=text_hidden,
        intermediate_size=2 * text_hidden,
        num_hidden_layers=text_layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=4096,
        max_window_layers=text_layers,
        rms_norm_eps=1e-6,
        rope_parameters={
            "rope_type": "default",
            "rope_theta": 10000.0,
            "mrope_section": _mrope_section(head_dim),
        },
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        tie_word_embeddings=True,
        use_cache=True,
    )
    common = dict(
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    if family == "qwen2_5_vl":
        from transformers import Qwen2_5_VLConfig as ConfigClass
        from transformers import Qwen2_5_VLForConditionalGeneration as ModelClass

        # Window attention: windows of window_size pixels, full attention in the last block.
        vision_config = dict(
            depth=vision_depth,
            hidden_size=vision_hidden,
            intermediate_size=2 * vision_hidden,
            num_heads=vision_heads,
            patch_size=patch_size,
            spatial_merge_size=spatial_merge_size,
            temporal_patch_size=2,
            window_size=patch_size * spatial_merge_size * 4,
            fullatt_block_indexes=[vision_depth - 1],
            out_hidden_size=text_hidden,
            tokens_per_second=2,
        )
    else:
        from transformers import Qwen2VLConfig as ConfigClass
        from transformers import Qwen2VLForConditionalGeneration as ModelClass

        vision_config = dict(
            depth=vision_depth,
            embed_dim=vision_hidden,
            hidden_size=text_hidden,
            mlp_ratio=2,
            num_heads=vision_heads,
            patch_size=patch_size,
            spatial_merge_size=spatial_merge_size,
            temporal_patch_size=2,
        )
    config = ConfigClass(text_config=text_config, vision_config=vision_config, **common)
    config.eos_token_id = ids["<|im_end|>"]
    config.pad_token_id = ids["<|endoftext|>"]

    torch.manual_seed(seed)
    model = ModelClass(config).to(torch.float32).eval()
    _set_generation_defaults(model, eos=[ids["<|im_end|>"], ids["<|endoftext|>"]], pad=ids["<|endoftext|>"])

    from mmr1.models.processors import build_vl_processor

    processor = build_vl_processor(
        tokenizer,
        family=family,
        patch_size=patch_size,
        merge_size=spatial_merge_size,
        temporal_patch_size=2,
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)
    if not (out / "preprocessor_config.json").exists():
        # Like the real Qwen-VL repos: older transformers (and the standard processor's video
        # processor) read the image settings from this file.
        processor.image_processor.save_pretrained(out)
    return out


def build_tiny_causal_lm(
    out_dir: str | os.PathLike,
    hidden: int = 96,
    layers: int = 3,
    heads: int = 4,
    kv_heads: int = 2,
    vocab_size: int = 2000,
    seed: int = 0,
    corpus: Iterable[str] | None = None,
    tokenizer=None,
) -> Path:
    """Build a tiny random-weight Qwen2-architecture causal LM and save it with its tokenizer.

    Loads offline with ``AutoModelForCausalLM`` / ``AutoTokenizer`` (or ``load_processor``, which returns
    the tokenizer). Text-to-image jobs extend its vocabulary with visual tokens later. Pass ``tokenizer``
    to reuse one (it must follow Qwen2's pre-tokenization to round-trip, see :func:`train_tokenizer`).
    """
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    if hidden % heads:
        raise ValueError(f"hidden={hidden} must be divisible by heads={heads}")
    if heads % kv_heads:
        raise ValueError(f"heads={heads} must be divisible by kv_heads={kv_heads}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if tokenizer is None:
        tokenizer = _tokenizer_for(corpus, vocab_size)
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>") if "<|im_end|>" in tokenizer.get_vocab() else None
    eos = eos if eos is not None else tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=4096,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        bos_token_id=pad,
        eos_token_id=eos,
        pad_token_id=pad,
        tie_word_embeddings=True,
        use_cache=True,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).to(torch.float32).eval()
    eos_ids = [i for i in dict.fromkeys([eos, tokenizer.convert_tokens_to_ids("<|endoftext|>")]) if i is not None]
    _set_generation_defaults(model, eos=eos_ids, pad=pad)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _set_generation_defaults(model, eos: list[int], pad: int | None) -> None:
    gc = model.generation_config
    gc.eos_token_id = eos if len(eos) > 1 else eos[0]
    gc.pad_token_id = pad
    gc.bos_token_id = pad
    gc.do_sample = False
    # A random model never emits eos on its own; keep generation bounded by default.
    gc.max_new_tokens = 64
    for name in ("temperature", "top_p", "top_k"):
        if hasattr(gc, name):
            setattr(gc, name, None)


def _build_tiny_t2i(out_dir, **options) -> Path:
    from mmr1.imagegen.tiny import build_tiny_t2i

    built = build_tiny_t2i(out_dir, **options)
    print(f"t2i model: {built['model']}; image tokenizer: {built['image_tokenizer']}")
    return Path(built["model"])


_BUILDERS = {
    "qwen2_5_vl": lambda out_dir, **o: build_tiny_vlm(out_dir, family="qwen2_5_vl", **o),
    "qwen2_vl": lambda out_dir, **o: build_tiny_vlm(out_dir, family="qwen2_vl", **o),
    "causal_lm": lambda out_dir, **o: build_tiny_causal_lm(out_dir, **o),
    "t2i": _build_tiny_t2i,   # causal LM + visual-token vocabulary + a VQ image tokenizer
}


def make_tiny(kind: str, out_dir: str | os.PathLike, **options) -> Path:
    """Build the tiny model ``kind`` (one of :data:`TINY_KINDS`) into ``out_dir``; returns the path.

    ``options`` go to :func:`build_tiny_vlm` (kinds ``qwen2_5_vl``, ``qwen2_vl``) or
    :func:`build_tiny_causal_lm` (kind ``causal_lm``).
    """
    builder = _BUILDERS.get(kind)
    if builder is None:
        raise ValueError(
            f"unknown tiny model kind {kind!r}; choose one of: {', '.join(TINY_KINDS)}"
        )
    try:
        return builder(out_dir, **options)
    except TypeError as exc:
        if "unexpected keyword argument" in str(exc):
            raise TypeError(f"make_tiny({kind!r}): {exc}") from exc
        raise
