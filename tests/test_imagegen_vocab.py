"""Vocabulary extension: special + visual tokens, mean-initialised rows, from_pretrained reload."""

import dataclasses
import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from mmr1.fixtures.models import build_tiny_causal_lm
from mmr1.imagegen.vocab import T2IVocab, T2IVocabError, prepare_t2i, visual_token_offset

K = 64


@pytest.fixture(scope="module", params=[True, False], ids=["tied", "untied"])
def prepared(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("vocab")
    base = build_tiny_causal_lm(root / "base", hidden_size=32, num_hidden_layers=2, tie_word_embeddings=request.param,
                                chat=False)
    out = prepare_t2i(base, root / "t2i", codebook_size=K, image_tokenizer="vq:runs/vq")
    return base, out


def test_tokens_ids_and_t2i_json(prepared):
    base, out = prepared
    old = AutoTokenizer.from_pretrained(base)
    tok = AutoTokenizer.from_pretrained(out)
    vocab = T2IVocab.load(out)
    n_old = len(old)
    assert len(tok) == n_old + 4 + K
    assert [vocab.t2i_id, vocab.soi_id, vocab.eoi_id, vocab.uncond_id] == list(range(n_old, n_old + 4))
    assert vocab.first_visual_id == n_old + 4 == visual_token_offset(tok)
    assert vocab.codebook_size == K and vocab.image_tokenizer == "vq:runs/vq"
    data = json.loads((out / "t2i.json").read_text())
    assert data["first_visual_id"] == vocab.first_visual_id and data["special_tokens"]["<|soi|>"] == vocab.soi_id
    for code in (0, 1, K - 1):
        assert tok.convert_tokens_to_ids(f"<|v_{code}|>") == vocab.code_to_id(code)
    assert T2IVocab.from_tokenizer(tok) == dataclasses.replace(vocab, image_tokenizer=None)


def test_visual_tokens_survive_skip_special_tokens(prepared):
    _, out = prepared
    tok = AutoTokenizer.from_pretrained(out)
    vocab = T2IVocab.load(out)
    codes = torch.tensor([3, 0, K - 1, 5, 5])
    ids = [vocab.t2i_id, *tok("A photo of a red circle", add_special_tokens=False)["input_ids"], vocab.soi_id,
           *vocab.code_to_id(codes).tolist(), vocab.eoi_id]
    text = tok.decode(ids, skip_special_tokens=True)
    assert "<|t2i|>" not in text and "<|v_3|><|v_0|>" in text
    back = tok(text, add_special_tokens=False)["input_ids"]
    visual = [i for i in back if vocab.is_visual(i)]
    assert visual == vocab.code_to_id(codes).tolist()
    assert vocab.id_to_code(torch.tensor(visual)).tolist() == codes.tolist()
    with pytest.raises(T2IVocabError, match="not visual"):
        vocab.id_to_code(torch.tensor([vocab.eoi_id]))


def test_new_rows_are_the_mean_and_model_reloads(prepared):
    base, out = prepared
    old_model = AutoModelForCausalLM.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(out)
    n_old = old_model.get_input_embeddings().weight.shape[0]
    vocab = T2IVocab.load(out)
    for get in ("get_input_embeddings", "get_output_embeddings"):
        old_w = getattr(old_model, get)().weight
        new_w = getattr(model, get)().weight
        assert new_w.shape[0] == vocab.end_visual_id
        assert torch.equal(new_w[:n_old], old_w)
        assert torch.allclose(new_w[n_old:], old_w.mean(0).expand(new_w.shape[0] - n_old, -1), atol=1e-6)
    assert model.config.vocab_size == vocab.end_visual_id
    ids = torch.tensor([[vocab.t2i_id, 5, vocab.soi_id, vocab.first_visual_id + K - 1]])
    assert model(ids).logits.shape == (1, 4, vocab.end_visual_id)


def test_errors(prepared, tmp_path):
    base, out = prepared
    with pytest.raises(T2IVocabError, match="already has a text-to-image vocabulary"):
        prepare_t2i(out, tmp_path / "again", codebook_size=K)
    with pytest.raises(T2IVocabError, match="exists and is not empty"):
        prepare_t2i(base, out, codebook_size=K)
    with pytest.raises(T2IVocabError, match="no t2i.json"):
        T2IVocab.load(base)
    with pytest.raises(T2IVocabError, match="prepare_t2i"):
        visual_token_offset(AutoTokenizer.from_pretrained(base))
