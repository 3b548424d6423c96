"""Pretrain / SFT sequences: layout, label masking, CFG dropout, short/long captions, length budget."""

import random

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from mmr1.fixtures.models import build_tiny_causal_lm
from mmr1.imagegen.sequence import IGNORE_INDEX, build_t2i_example, pad_t2i_batch, pick_caption
from mmr1.imagegen.vocab import T2IVocab, prepare_t2i

K = 32


@pytest.fixture(scope="module")
def t2i(tmp_path_factory):
    root = tmp_path_factory.mktemp("seq")
    out = prepare_t2i(build_tiny_causal_lm(root / "base", chat=False), root / "t2i", codebook_size=K)
    return AutoTokenizer.from_pretrained(out), T2IVocab.load(out), out


def test_conditional_layout_and_labels(t2i):
    tok, vocab, _ = t2i
    codes = np.arange(16).reshape(1, 1, 4, 4) % K  # SimpleAR's on-disk shape
    ids, labels = build_t2i_example("a red circle", codes, vocab, tok, p_drop_cond=0.0)
    text = tok("A photo of a red circle", add_special_tokens=False)["input_ids"]
    prompt = [vocab.t2i_id, *text, vocab.soi_id]
    target = [vocab.first_visual_id + c for c in range(16)] + [vocab.eoi_id]
    assert ids.tolist() == prompt + target
    assert labels.tolist() == [IGNORE_INDEX] * len(prompt) + target
    assert ids.dtype == labels.dtype == torch.long


def test_unconditional_layout(t2i):
    tok, vocab, _ = t2i
    ids, labels = build_t2i_example("a red circle", torch.zeros(2, 2, dtype=torch.long), vocab, tok, p_drop_cond=1.0)
    assert ids.tolist() == [vocab.t2i_id, vocab.uncond_id, vocab.soi_id] + [vocab.first_visual_id] * 4 + [vocab.eoi_id]
    assert labels[:3].tolist() == [IGNORE_INDEX] * 3 and labels[3:].tolist() == ids[3:].tolist()


def test_cfg_dropout_frequency_is_seeded(t2i):
    tok, vocab, _ = t2i
    codes = torch.zeros(4, dtype=torch.long)

    def drops(seed, n=2000):
        rng = random.Random(seed)
        return [build_t2i_example("a blue square", codes, vocab, tok, p_drop_cond=0.1, rng=rng)[0][1].item() == vocab.uncond_id
                for _ in range(n)]

    first = drops(0)
    assert 0.08 <= np.mean(first) <= 0.12
    assert drops(0) == first  # same seed, same draws
    assert drops(1) != first
    rng = np.random.default_rng(0)  # numpy generators work too
    n = sum(build_t2i_example("x", codes, vocab, tok, p_drop_cond=0.5, rng=rng)[0][1].item() == vocab.uncond_id for _ in range(400))
    assert 150 <= n <= 250


def test_short_long_captions(t2i):
    tok, vocab, _ = t2i
    entry = {"short": "a cat", "long": "a large black cat on the left"}
    rng = random.Random(0)
    picks = [pick_caption(entry, rng=rng) for _ in range(1000)]
    assert 0.45 <= picks.count("a cat") / 1000 <= 0.55
    assert {pick_caption(entry, sample_short=False, rng=rng) for _ in range(20)} == {entry["long"]}
    assert pick_caption(["short one", "long one"], p_short=1.0) == "short one"
    assert pick_caption({"long": "only long"}) == "only long"
    with pytest.raises(ValueError, match="no caption text"):
        pick_caption({})
    ids, _ = build_t2i_example(entry, torch.zeros(4), vocab, tok, p_drop_cond=0, sample_short=False)
    assert tok.decode(ids[1:-6]) == "A photo of a large black cat on the left"


def test_length_budget_and_truncation(t2i):
    tok, vocab, _ = t2i
    codes = torch.zeros(64, dtype=torch.long)
    with pytest.raises(ValueError, match=r"model_max_length 100 is too small.*64 visual tokens.*at least 579"):
        build_t2i_example("a red circle", codes, vocab, tok, model_max_length=100)
    ids, _ = build_t2i_example("a red circle " * 50, codes, vocab, tok, max_text_tokens=8, model_max_length=76, p_drop_cond=0)
    assert len(ids) == 1 + 8 + 1 + 64 + 1
    with pytest.raises(ValueError, match="out of range"):
        build_t2i_example("x", torch.tensor([K]), vocab, tok)


def test_batch_trains_only_visual_tokens(t2i):
    tok, vocab, out = t2i
    rng = random.Random(0)
    examples = [build_t2i_example(c, torch.randint(K, (9,)), vocab, tok, rng=rng, p_drop_cond=0)
                for c in ("a red circle", "a big green square on the left")]
    batch = pad_t2i_batch(examples, pad_token_id=tok.pad_token_id)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    assert (batch["labels"] != IGNORE_INDEX).sum().item() == 2 * 10
    model = AutoModelForCausalLM.from_pretrained(out)
    loss = model(**batch).loss
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    manual = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), batch["labels"][:, 1:].reshape(-1))
    assert torch.allclose(loss, manual, atol=1e-5)
