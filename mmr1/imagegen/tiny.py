"""Tiny offline models for tests and the CPU demo (random weights, built from config; nothing downloaded).

- :func:`build_tiny_causal_lm`: a Qwen2-architecture causal LM with a small byte-level BPE
  tokenizer trained here (with Qwen2's own normalizer and pre-tokenizer, so ``AutoTokenizer``
  reloads it identically).
- :func:`build_tiny_clip`: a tiny random ``CLIPModel`` + ``CLIPProcessor`` folder (for the image
  reward plumbing; its scores mean nothing).
- :func:`build_tiny_t2i`: everything a text-to-image test needs at once: a VQ image tokenizer
  trained on synthetic shapes, a tiny LM prepared with its vocabulary, and extracted tokens with a
  meta file.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

__all__ = ["build_tiny_causal_lm", "build_tiny_clip", "build_tiny_t2i", "train_tiny_bpe", "CORPUS_WORDS"]

CORPUS_WORDS = (
    "a an the of on in with and photo image picture red green blue yellow purple orange cyan white "
    "black gray pink brown circle square triangle shape small large big tiny centre left right top "
    "bottom background cat dog house tree car person man woman sky water"
).split()

# Qwen2's pre-tokenization regex (the tokenizer reloads with it whatever was trained)
_QWEN_SPLIT = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""


def _corpus(seed: int = 0, n: int = 2000) -> list[str]:
    import random

    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        k = rng.randint(2, 8)
        lines.append(" ".join(rng.choice(CORPUS_WORDS) for _ in range(k)))
    lines += ["A photo of a " + w for w in CORPUS_WORDS]
    return lines


def train_tiny_bpe(vocab_size: int = 400, seed: int = 0):
    """A byte-level BPE tokenizer (``transformers.Qwen2Tokenizer``) trained on a small caption corpus."""
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, trainers
    from tokenizers.models import BPE
    from transformers import Qwen2Tokenizer

    if vocab_size <= 257 + 8:
        raise ValueError("vocab_size must exceed 256 bytes + specials by a margin, or BPE learns no merges")
    tok = Tokenizer(BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(seed), trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return Qwen2Tokenizer(vocab=model["vocab"], merges=merges)


def build_tiny_causal_lm(
    out_dir,
    hidden_size: int = 32,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    num_key_value_heads: int = 2,
    intermediate_size: int | None = None,
    vocab_size: int = 400,
    max_position_embeddings: int = 4096,
    tie_word_embeddings: bool = True,
    seed: int = 0,
) -> Path:
    """Write a tiny random Qwen2ForCausalLM + tokenizer to ``out_dir`` (loadable with ``from_pretrained``)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    out_dir = Path(out_dir)
    tokenizer = train_tiny_bpe(vocab_size=vocab_size, seed=seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or 2 * hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads,
        head_dim=hidden_size // num_attention_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=tie_word_embeddings,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def build_tiny_clip(out_dir, image_size: int = 32, patch_size: int = 8, hidden_size: int = 32, projection_dim: int = 16, seed: int = 0) -> Path:
    """Write a tiny random ``CLIPModel`` + ``CLIPProcessor`` (byte-level vocabulary, no merges) to ``out_dir``."""
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor, CLIPTokenizer

    try:  # transformers >= 5: the PIL backend (the default one needs torchvision)
        from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil as ImageProcessor
    except ImportError:  # transformers 4
        from transformers import CLIPImageProcessor as ImageProcessor

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for code in range(33, 127):
        vocab.setdefault(chr(code), len(vocab))
        vocab.setdefault(chr(code) + "</w>", len(vocab))
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    image_processor = ImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    heads = max(1, hidden_size // 16)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                         num_hidden_layers=2, num_attention_heads=heads, max_position_embeddings=77,
                         bos_token_id=0, eos_token_id=1, pad_token_id=1),
        vision_config=dict(hidden_size=hidden_size, intermediate_size=2 * hidden_size, num_hidden_layers=2,
                           num_attention_heads=heads, image_size=image_size, patch_size=patch_size),
        projection_dim=projection_dim,
    )
    torch.manual_seed(seed)
    model = CLIPModel(config)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out_dir)
    return out_dir


def build_tiny_t2i(out_dir, codebook_size: int = 16, patch: int = 8, image_size: int = 32, n_images: int = 48,
                   hidden_size: int = 32, num_hidden_layers: int = 2, extract: bool = True, seed: int = 0) -> dict:
    """A complete tiny text-to-image setup in ``out_dir`` (offline, a few seconds).

    Returns ``{"model": prepared t2i folder, "vq": VQ folder, "image_tokenizer": "vq:<folder>",
    "meta": meta JSON of the extracted tokens (None without ``extract``), "images": the shapes JSON}``.
    """
    from mmr1.imagegen.extract import extract_tokens, write_meta
    from mmr1.imagegen.shapes import make_shapes, write_shapes_dataset
    from mmr1.imagegen.tokenizers import VQTokenizer
    from mmr1.imagegen.vocab import prepare_t2i

    out_dir = Path(out_dir)
    samples = make_shapes(n_images, seed=seed, size=image_size)
    vq = VQTokenizer.train([x["image"] for x in samples], codebook_size=codebook_size, patch=patch, iters=5, seed=seed)
    vq_dir = vq.save(out_dir / "vq")
    spec = f"vq:{vq_dir}"
    base = build_tiny_causal_lm(out_dir / "base", hidden_size=hidden_size, num_hidden_layers=num_hidden_layers, seed=seed)
    model = prepare_t2i(base, out_dir / "t2i", codebook_size=codebook_size, image_tokenizer=spec, overwrite=True)
    result = {"model": model, "vq": vq_dir, "image_tokenizer": spec, "meta": None, "images": None}
    if extract:
        images = write_shapes_dataset(out_dir / "shapes", n_images, seed=seed, size=image_size)
        extract_tokens(images, out_dir / "tokens", vq, resolution=image_size, progress=False)
        write_meta(out_dir / "tokens", out_dir / "tokens" / "meta.json")
        result.update(meta=out_dir / "tokens" / "meta.json", images=images)
    return result
