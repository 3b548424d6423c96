"""Extend a causal LM's vocabulary with text-to-image tokens (SimpleAR's recipe).

:func:`prepare_t2i` adds four special tokens (``<|t2i|>`` task marker, ``<|soi|>`` / ``<|eoi|>``
start / end of image, ``<|t2i_uncond|>`` the unconditional prompt for classifier-free guidance)
and one token per image code, ``<|v_0|> .. <|v_{K-1}|>``, with contiguous ids:

    token id = first_visual_id + code

The visual tokens are added as *non-special* tokens, so text decoded with
``skip_special_tokens=True`` keeps them and re-tokenising that text gives the same ids back. The
new embedding rows (input and, when untied, output) start at the mean of the old rows. The output
folder is a normal ``from_pretrained`` folder plus ``t2i.json`` (read by :meth:`T2IVocab.load`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

__all__ = [
    "DEFAULT_SPECIAL_TOKENS",
    "VISUAL_TOKEN_FORMAT",
    "T2IVocab",
    "T2IVocabError",
    "prepare_t2i",
    "visual_token_offset",
]

DEFAULT_SPECIAL_TOKENS = ("<|t2i|>", "<|soi|>", "<|eoi|>", "<|t2i_uncond|>")
SPECIAL_ROLES = ("t2i", "soi", "eoi", "uncond")
VISUAL_TOKEN_FORMAT = "<|v_{}|>"
T2I_JSON = "t2i.json"


class T2IVocabError(Exception):
    """A model folder or tokenizer is not (or cannot be made) a text-to-image vocabulary."""


def _token_id(tokenizer, token: str) -> int | None:
    tid = tokenizer.convert_tokens_to_ids(token)
    if tid is None or not isinstance(tid, int):
        return None
    if tokenizer.convert_ids_to_tokens(tid) != token:  # unk fallback
        return None
    return tid


def visual_token_offset(tokenizer, visual_token_format: str = VISUAL_TOKEN_FORMAT) -> int:
    """Id of the visual token of code 0 (``<|v_0|>``): token id = offset + code."""
    token = visual_token_format.format(0)
    tid = _token_id(tokenizer, token)
    if tid is None:
        raise T2IVocabError(
            f"the tokenizer has no visual token {token!r}: prepare the model with "
            f"mmr1.imagegen.vocab.prepare_t2i(model_dir, out_dir, codebook_size)"
        )
    return tid


@dataclass(frozen=True)
class T2IVocab:
    """Ids of the text-to-image tokens; maps image codes to token ids and back."""

    first_visual_id: int
    codebook_size: int
    t2i_id: int
    soi_id: int
    eoi_id: int
    uncond_id: int
    special_tokens: dict = field(default_factory=dict)  # token string -> id
    visual_token_format: str = VISUAL_TOKEN_FORMAT
    image_tokenizer: str | None = None

    # -- ranges -----------------------------------------------------------------------------------
    @property
    def end_visual_id(self) -> int:
        """One past the last visual token id."""
        return self.first_visual_id + self.codebook_size

    @property
    def visual_slice(self) -> slice:
        """``logits[..., vocab.visual_slice]`` are the logits of codes 0..K-1."""
        return slice(self.first_visual_id, self.end_visual_id)

    def code_to_id(self, codes):
        """Codes (int, tensor or array) -> token ids."""
        if isinstance(codes, int):
            return self.first_visual_id + codes
        return torch.as_tensor(codes).long() + self.first_visual_id

    def id_to_code(self, ids, check: bool = True):
        """Token ids -> codes; with ``check`` a non-visual id is an error."""
        if isinstance(ids, int):
            if check and not self.first_visual_id <= ids < self.end_visual_id:
                raise T2IVocabError(f"token id {ids} is not a visual token ({self.first_visual_id}..{self.end_visual_id - 1})")
            return ids - self.first_visual_id
        ids = torch.as_tensor(ids).long()
        if check and ids.numel() and not bool(self.is_visual(ids).all()):
            bad = ids[~self.is_visual(ids)][:5].tolist()
            raise T2IVocabError(f"token ids {bad} are not visual tokens ({self.first_visual_id}..{self.end_visual_id - 1})")
        return ids - self.first_visual_id

    def is_visual(self, ids) -> torch.Tensor:
        ids = torch.as_tensor(ids)
        return (ids >= self.first_visual_id) & (ids < self.end_visual_id)

    # -- persistence ------------------------------------------------------------------------------
    def to_json(self) -> dict:
        d = asdict(self)
        d["version"] = 1
        return d

    @classmethod
    def load(cls, model_dir) -> "T2IVocab":
        """Read ``t2i.json`` from a folder written by :func:`prepare_t2i` (or a checkpoint of it)."""
        path = Path(model_dir) / T2I_JSON
        if not path.is_file():
            raise T2IVocabError(
                f"{str(model_dir)!r} has no {T2I_JSON}: it is not a text-to-image model folder. Prepare one with "
                f"prepare_t2i(model_dir, out_dir, codebook_size), or use T2IVocab.from_tokenizer(tokenizer, codebook_size)"
            )
        try:
            data = json.loads(path.read_text())
            data.pop("version", None)
            return cls(**data)
        except (ValueError, TypeError) as exc:
            raise T2IVocabError(f"{path} is not a valid {T2I_JSON}: {exc}") from exc

    def save(self, model_dir) -> Path:
        path = Path(model_dir) / T2I_JSON
        tmp = path.with_name(f".{T2I_JSON}.tmp{os.getpid()}")
        tmp.write_text(json.dumps(self.to_json(), indent=2))
        os.replace(tmp, path)
        return path

    @classmethod
    def from_tokenizer(
        cls,
        tokenizer,
        codebook_size: int | None = None,
        special_tokens=DEFAULT_SPECIAL_TOKENS,
        visual_token_format: str = VISUAL_TOKEN_FORMAT,
    ) -> "T2IVocab":
        """Derive the ids from a tokenizer that already has the tokens (codebook size counted if not given)."""
        first = visual_token_offset(tokenizer, visual_token_format)
        if codebook_size is None:
            codebook_size = 0
            while _token_id(tokenizer, visual_token_format.format(codebook_size)) == first + codebook_size:
                codebook_size += 1
        else:
            last = visual_token_format.format(codebook_size - 1)
            if _token_id(tokenizer, last) != first + codebook_size - 1:
                raise T2IVocabError(f"visual token {last!r} is missing or not at id {first + codebook_size - 1}")
        ids = {}
        for token in special_tokens:
            tid = _token_id(tokenizer, token)
            if tid is None:
                raise T2IVocabError(f"the tokenizer has no special token {token!r}")
            ids[token] = tid
        roles = dict(zip(SPECIAL_ROLES, special_tokens))
        return cls(
            first_visual_id=first,
            codebook_size=int(codebook_size),
            t2i_id=ids[roles["t2i"]],
            soi_id=ids[roles["soi"]],
            eoi_id=ids[roles["eoi"]],
            uncond_id=ids[roles["uncond"]],
            special_tokens=ids,
            visual_token_format=visual_token_format,
        )


def _set_new_rows(weight: torch.Tensor, n_old: int) -> None:
    with torch.no_grad():
        n_old = min(n_old, weight.shape[0])
        mean = weight[:n_old].float().mean(0)
        weight[n_old:] = mean.to(weight.dtype)


def prepare_t2i(
    model_dir,
    out_dir,
    codebook_size: int,
    special_tokens=DEFAULT_SPECIAL_TOKENS,
    visual_token_format: str = VISUAL_TOKEN_FORMAT,
    image_tokenizer: str | None = None,
    pad_to_multiple_of: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Copy the causal LM in ``model_dir`` to ``out_dir`` with the text-to-image vocabulary added.

    ``special_tokens`` are, in order, the task marker, start of image, end of image and the
    unconditional prompt token. ``image_tokenizer`` (e.g. ``"cosmos:/models/di16x16"``) is only
    recorded in ``t2i.json``. ``pad_to_multiple_of`` pads the embedding matrix (extra rows are also
    set to the mean). The folder is written to a temporary sibling and renamed into place; an
    existing non-empty ``out_dir`` is an error unless ``overwrite``. Returns ``out_dir``.
    """
    from tokenizers import AddedToken
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    codebook_size = int(codebook_size)
    if codebook_size < 1:
        raise T2IVocabError("codebook_size must be >= 1")
    if len(special_tokens) != len(SPECIAL_ROLES):
        raise T2IVocabError(f"special_tokens must be 4 tokens ({', '.join(SPECIAL_ROLES)}), got {list(special_tokens)}")
    if (model_dir / T2I_JSON).is_file():
        raise T2IVocabError(f"{str(model_dir)!r} already has a text-to-image vocabulary ({T2I_JSON}); use it as is")
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise T2IVocabError(f"output folder {str(out_dir)!r} exists and is not empty (pass overwrite=True to replace it)")

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    n_old = len(tokenizer)

    visual = [visual_token_format.format(i) for i in range(codebook_size)]
    clash = [t for t in (visual[0], visual[-1]) if _token_id(tokenizer, t) is not None]
    if clash:
        raise T2IVocabError(f"the tokenizer of {str(model_dir)!r} already has visual tokens {clash}")
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in special_tokens], special_tokens=True)
    first = len(tokenizer)
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in visual])
    if _token_id(tokenizer, visual[0]) != first or _token_id(tokenizer, visual[-1]) != first + codebook_size - 1:
        raise T2IVocabError("the visual tokens did not receive contiguous ids; is the tokenizer a fast tokenizer?")
    vocab = T2IVocab.from_tokenizer(tokenizer, codebook_size, special_tokens, visual_token_format)
    vocab = T2IVocab(**{**asdict(vocab), "image_tokenizer": image_tokenizer})

    new_len = len(tokenizer)
    rows = model.get_input_embeddings().weight.shape[0]
    if new_len > rows or pad_to_multiple_of:
        model.resize_token_embeddings(max(new_len, rows), pad_to_multiple_of=pad_to_multiple_of, mean_resizing=False)
    inp = model.get_input_embeddings().weight
    _set_new_rows(inp, n_old)
    out = model.get_output_embeddings()
    if out is not None and out.weight.data_ptr() != inp.data_ptr():
        _set_new_rows(out.weight, n_old)
        if getattr(out, "bias", None) is not None:
            _set_new_rows(out.bias.unsqueeze(1), n_old)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        vocab.save(tmp)
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old{os.getpid()}")
            os.replace(out_dir, old)
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
