"""Command-line entry points of the text-to-image tools (wired into ``mmr1`` by mmr1/cli.py).

Each function takes the arguments after the sub-command and returns an exit status: 0 on success,
2 for a user error (missing folder, bad resolution, ...), printed as one line naming what to fix.

- ``mmr1 tokenize ...``   -> :func:`tokenize_main` (images -> codes; see :mod:`mmr1.imagegen.extract`)
- ``mmr1 prepare-t2i ...`` -> :func:`prepare_main` (add the image vocabulary to a causal LM)
- ``mmr1 generate ...``   -> :func:`generate_main` (sample images, PNGs + a grid)
- ``mmr1 sft CONFIG`` for a text-to-image model -> :func:`sft_t2i_main` (SimpleAR pretrain / SFT)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mmr1.imagegen.extract import tokenize_main

__all__ = ["tokenize_main", "prepare_main", "generate_main", "sft_t2i_main", "is_t2i_config"]


class _UserError(Exception):
    pass


def _user_errors() -> tuple[type, ...]:
    from mmr1.imagegen.extract import ExtractError
    from mmr1.imagegen.meta import MetaError
    from mmr1.imagegen.tokenizers import ImageTokenizerError
    from mmr1.imagegen.vocab import T2IVocabError
    from mmr1.registry import RegistryError

    errors = [_UserError, ImageTokenizerError, T2IVocabError, MetaError, ExtractError, RegistryError,
              FileNotFoundError, ValueError]
    try:
        from mmr1.config import ConfigError
        from mmr1.data import DataError
        from mmr1.plugins import PluginError

        errors += [ConfigError, DataError, PluginError]
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


def _fail(prog: str, exc) -> int:
    print(f"{prog}: error: {exc}", file=sys.stderr)
    return 2


# ---------------------------------------------------------------------------------------------
# prepare-t2i
# ---------------------------------------------------------------------------------------------
def _prepare_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mmr1 prepare-t2i",
        description="Add the text-to-image vocabulary (<|t2i|> <|soi|> <|eoi|> <|t2i_uncond|> and one token per "
                    "image code) to a causal LM; the new embedding rows start at the mean of the old ones.")
    p.add_argument("--model", required=True, help="causal LM folder (e.g. a local copy of Qwen2.5-0.5B-Instruct) or hub id")
    p.add_argument("--out", required=True, help="output folder (a from_pretrained folder plus t2i.json)")
    p.add_argument("--image-tokenizer", default=None,
                   help="image tokenizer NAME:PATH (vq:runs/vq, cosmos:/models/Cosmos-Tokenizer-DV8x16x16); its "
                        "codebook size is used and the spec recorded in t2i.json")
    p.add_argument("--codebook-size", type=int, default=None,
                   help="number of image codes (64000 for Cosmos DV8x16x16); without it the image tokenizer is "
                        "loaded to read its codebook size")
    p.add_argument("--pad-to-multiple-of", type=int, default=None, help="pad the embedding matrix (e.g. 64)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    return p


def _codebook_of(spec: str) -> int:
    """Codebook size of an image tokenizer (loads it)."""
    from mmr1.imagegen.tokenizers import load_image_tokenizer_for

    return int(load_image_tokenizer_for(spec).codebook_size)


def prepare_main(argv: list[str] | None = None) -> int:
    """``mmr1 prepare-t2i --model DIR --out DIR (--image-tokenizer NAME:PATH | --codebook-size N)``."""
    opts = _prepare_parser().parse_args(argv)
    prog = "mmr1 prepare-t2i"
    try:
        from mmr1.imagegen.vocab import prepare_t2i

        model = Path(opts.model)
        if opts.image_tokenizer is None and opts.codebook_size is None:
            raise _UserError("give --image-tokenizer NAME:PATH (its codebook size is used) or --codebook-size N")
        size = opts.codebook_size
        if size is None:  # read it from the tokenizer (with --codebook-size the spec is only recorded)
            size = _codebook_of(opts.image_tokenizer)
        if size < 1:
            raise _UserError(f"--codebook-size must be at least 1, got {size}")
        try:
            out = prepare_t2i(model, opts.out, size, image_tokenizer=opts.image_tokenizer,
                              pad_to_multiple_of=opts.pad_to_multiple_of, overwrite=opts.overwrite)
        except OSError as exc:
            if model.is_dir():
                raise
            raise _UserError(f"model {str(model)!r} does not exist as a local folder and could not be loaded as a hub "
                             f"id ({type(exc).__name__}); pass a folder holding a causal LM (config.json, weights, "
                             f"tokenizer)") from None
    except _user_errors() as exc:
        return _fail(prog, str(exc).replace("pass overwrite=True", "pass --overwrite"))
    from mmr1.imagegen.vocab import T2IVocab

    vocab = T2IVocab.load(out)
    print(f"prepared {out}: {vocab.codebook_size} visual tokens (ids {vocab.first_visual_id}.."
          f"{vocab.end_visual_id - 1}), special tokens {vocab.special_tokens}")
    return 0


# ---------------------------------------------------------------------------------------------
# generate
# ---------------------------------------------------------------------------------------------
def _generate_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mmr1 generate",
        description="Sample images from a text-to-image model (KV-cached, optional classifier-free guidance); "
                    "writes one PNG per image, grid.png and images.json.")
    p.add_argument("--model", required=True, help="text-to-image model folder (prepare-t2i, sft or train output)")
    p.add_argument("--image-tokenizer", default=None, help="NAME:PATH (default: the spec in the model's t2i.json)")
    p.add_argument("--prompt", action="append", default=[], help="a caption (repeatable)")
    p.add_argument("--prompts-file", default=None, help="a .txt file with one caption a line (or a captions .json/.jsonl)")
    p.add_argument("--resolution", type=int, default=256, help="image side in pixels, a multiple of the tokenizer's "
                                                               "downsample factor (default 256)")
    p.add_argument("--cfg", type=float, default=1.0, help="classifier-free guidance scale, 1 = off (SimpleAR: 6)")
    p.add_argument("--negative-prompt", default=None, help="text of the unconditional branch (default <|t2i_uncond|>)")
    p.add_argument("--prompt-prefix", default="A photo of ", help="text before each caption (default 'A photo of ')")
    p.add_argument("--temperature", type=float, default=1.0, help="0 = greedy")
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None, help="nucleus in (0, 1] (default 1: off)")
    p.add_argument("--num-images", type=int, default=1, help="images per prompt")
    p.add_argument("--batch-size", type=int, default=8, help="prompts per forward pass")
    p.add_argument("--seed", type=int, default=0,
                   help="image i (prompt-major) draws from its own stream seeded by (seed, i), as a training rollout's completion does: an image does not depend on --batch-size (default 0)")
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda when available)")
    p.add_argument("--dtype", default=None, choices=("float32", "bfloat16", "float16"),
                   help="model dtype (default float32 on CPU, bfloat16 on GPU)")
    p.add_argument("--grid-scale", type=int, default=1, help="enlarge grid.png by this factor (small images)")
    p.add_argument("--out", required=True, help="output folder")
    return p


def _read_prompts(opts) -> list[str]:
    prompts = list(opts.prompt)
    if opts.prompts_file:
        path = Path(opts.prompts_file)
        if not path.is_file():
            raise _UserError(f"--prompts-file {str(path)!r} does not exist")
        from mmr1.imagegen.data import load_captions

        prompts += [row["caption"] for row in load_captions(str(path))]
    if not prompts:
        raise _UserError("no prompts: pass --prompt TEXT (repeatable) or --prompts-file FILE")
    return prompts


def generate_main(argv: list[str] | None = None) -> int:
    """``mmr1 generate --model DIR --prompt "a red circle" --out DIR [...]``; see ``--help``."""
    opts = _generate_parser().parse_args(argv)
    prog = "mmr1 generate"
    try:
        import torch

        from mmr1.imagegen.adapter import load_t2i_vocab
        from mmr1.imagegen.sampling import codes_to_images, generate_image_tokens, save_grid
        from mmr1.imagegen.tokenizers import image_grid_size, load_image_tokenizer_for

        model_dir = Path(opts.model)
        if not model_dir.is_dir():
            raise _UserError(f"model folder {str(model_dir)!r} does not exist")
        if opts.num_images < 1 or opts.batch_size < 1:
            raise _UserError("--num-images and --batch-size must be at least 1")
        if opts.temperature < 0:
            raise _UserError("--temperature must be >= 0 (0 = greedy)")
        prompts = _read_prompts(opts)
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        vocab = load_t2i_vocab(model_dir, tokenizer)
        spec = opts.image_tokenizer or vocab.image_tokenizer
        if not spec:
            raise _UserError(f"{model_dir}/t2i.json names no image tokenizer: pass --image-tokenizer NAME:PATH")
        device = torch.device(opts.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        image_tokenizer = load_image_tokenizer_for(spec, device if device.type != "cpu" else None)
        if image_tokenizer.codebook_size != vocab.codebook_size:
            raise _UserError(f"image tokenizer {spec!r} has {image_tokenizer.codebook_size} codes but the model has "
                             f"{vocab.codebook_size} visual tokens")
        h, w = image_grid_size(opts.resolution, image_tokenizer.downsample)
        dtype = getattr(torch, opts.dtype) if opts.dtype else (torch.bfloat16 if device.type == "cuda" else torch.float32)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device).eval()
        out = generate_image_tokens(model, vocab, prompts, h * w, tokenizer=tokenizer, cfg=opts.cfg,
                                    negative_prompt=opts.negative_prompt, temperature=opts.temperature,
                                    top_k=opts.top_k, top_p=opts.top_p,
                                    seed=opts.seed, batch_size=opts.batch_size,
                                    prompt_prefix=opts.prompt_prefix, num_generations=opts.num_images)
        images = codes_to_images(out.codes, image_tokenizer, grid=(h, w))
    except _user_errors() as exc:
        return _fail(prog, exc)
    folder = Path(opts.out)
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for i, image in enumerate(images):
        p, k = divmod(i, opts.num_images)
        name = f"{p:04d}_{k:02d}.png"
        image.save(folder / name)
        records.append({"file": name, "prompt": prompts[p], "sample": k})
    grid = save_grid(images, folder / "grid.png", nrow=opts.num_images if opts.num_images > 1 else None,
                     scale=max(1, opts.grid_scale))
    settings = {k: v for k, v in vars(opts).items() if k not in ("prompt",)}
    (folder / "images.json").write_text(json.dumps({"settings": settings, "images": records}, indent=1))
    print(f"wrote {len(images)} images ({opts.resolution} px, {h}x{w} tokens each) and {grid} to {folder}")
    return 0


# ---------------------------------------------------------------------------------------------
# sft
# ---------------------------------------------------------------------------------------------
def is_t2i_config(config) -> bool:
    """True when ``mmr1 sft`` should run text-to-image SFT: adapter ``t2i`` or a model folder with ``t2i.json``."""
    from mmr1.imagegen.vocab import T2I_JSON

    if getattr(config, "model_adapter", None) == "t2i" or getattr(config, "dataset", None) == "t2i_meta":
        return True
    path = getattr(config, "model_name_or_path", "") or ""
    return bool(path) and (Path(path) / T2I_JSON).is_file()


def sft_t2i_main(config, overrides: list[str] | None = None) -> int:
    """SimpleAR pretrain / SFT: ``config`` is a TrainConfig, or a YAML path (with ``--key value`` overrides)."""
    prog = "mmr1 sft"
    try:
        from mmr1.config import TrainConfig, load_config
        from mmr1.sft.t2i import run_t2i_sft

        if not isinstance(config, TrainConfig):
            config = load_config(config, overrides)
        summary = run_t2i_sft(config)
    except _user_errors() as exc:
        return _fail(prog, exc)
    if summary["first_loss"] is not None:
        print(f"text-to-image SFT done: {summary['steps']} steps, loss {summary['first_loss']:.4f} -> "
              f"{summary['last_loss']:.4f} in {summary['seconds']:.0f} s; model in {summary['final']}")
    return 0


def _main(argv=None) -> int:  # python -m mmr1.imagegen.cli {tokenize|prepare-t2i|generate|sft} ...
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"tokenize": tokenize_main, "prepare-t2i": prepare_main, "generate": generate_main,
                "sft": lambda rest: sft_t2i_main(rest[0], rest[1:]) if rest else _fail("mmr1 sft", _UserError("CONFIG missing"))}
    if not argv or argv[0] not in commands:
        print(f"usage: python -m mmr1.imagegen.cli {{{'|'.join(commands)}}} ...", file=sys.stderr)
        return 2
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(_main())
