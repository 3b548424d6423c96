"""The ``t2i`` model adapter: SimpleAR prompts, logits restricted to image codes, shared-prefix scoring."""

import pytest
import torch

from random_models import random_t2i

from mmr1.config import build_config
from mmr1.imagegen.adapter import T2IAdapter, T2IProcessor
from mmr1.fixtures.models import build_tiny_t2i
from mmr1.imagegen.vocab import T2I_JSON, T2IVocab


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return build_tiny_t2i(tmp_path_factory.mktemp("t2i-adapter"), extract=False, seed=1)


@pytest.fixture(scope="module")
def adapter_model(setup):
    adapter, model = random_t2i(setup["model"], seed=0, scale=0.3)  # larger random weights: non-trivial distributions
    adapter.bind(model)
    return adapter, model


def _messages(caption, system="You are a helpful assistant."):
    return [{"role": "system", "content": [{"type": "text", "text": system}]},
            {"role": "user", "content": [{"type": "text", "text": caption}]}]


def test_prompt_is_simplear_layout_and_prefix_is_configurable(adapter_model):
    adapter, _ = adapter_model
    tok, vocab = adapter.tokenizer, adapter.vocab
    batch = adapter.encode_prompts([_messages("a red circle"), _messages("a big blue square on the left")])
    text = tok("A photo of a red circle", add_special_tokens=False)["input_ids"]
    row = batch.input_ids[0][batch.attention_mask[0].bool()].tolist()
    assert row == [vocab.t2i_id, *text, vocab.soi_id]            # the system prompt is ignored
    assert batch.attention_mask[0, 0] == 0                        # left padding
    assert batch.next_position.tolist() == batch.attention_mask.sum(1).tolist()
    assert batch.texts[0] == "<|t2i|>A photo of a red circle<|soi|>"
    # a caption that already carries the prefix (the t2i template) gets no second one
    again = adapter.encode_prompts([_messages("A photo of a red circle")])
    assert again.input_ids[0].tolist() == row
    adapter.configure(build_config({"prompt_prefix": "An image of "}))
    try:
        other = adapter.encode_prompts([_messages("a red circle")])
        text = tok("An image of a red circle", add_special_tokens=False)["input_ids"]
        assert other.input_ids[0].tolist() == [vocab.t2i_id, *text, vocab.soi_id]
    finally:
        adapter.prompt_prefix = "A photo of "


def test_logits_are_masked_to_visual_tokens_and_shared_prefix_equals_full_rows(adapter_model):
    adapter, model = adapter_model
    vocab = adapter.vocab
    prompts = adapter.encode_prompts([_messages("a red circle"), _messages("a green triangle on the right side")])
    index = torch.tensor([0, 0, 1, 1, 1])
    gen = torch.Generator().manual_seed(3)
    ids = torch.randint(0, vocab.codebook_size, (5, 7), generator=gen) + vocab.first_visual_id
    mask = torch.ones_like(ids)
    grads = []
    outs = []
    for shared in (True, False):
        model.zero_grad()
        logits = adapter.completion_logits(model, prompts, index, ids, mask, shared_prefix=shared)
        assert logits.shape == (5, 7, model.config.vocab_size)
        visual = logits[..., vocab.visual_slice]
        assert torch.isfinite(visual).all()
        assert torch.isinf(logits[..., : vocab.first_visual_id]).all()
        assert torch.isinf(logits[..., vocab.end_visual_id:]).all()
        logp = torch.log_softmax(logits, -1).gather(-1, ids[..., None]).squeeze(-1)
        assert torch.allclose(torch.logsumexp(logits, -1), torch.logsumexp(visual, -1))  # a distribution over codes
        logp.sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        outs.append(logp.detach())
    assert torch.allclose(outs[0], outs[1], atol=1e-5)
    for name in grads[1]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-5), name
    model.zero_grad()


def test_processor_saves_t2i_json_and_auto_resolves_the_adapter(setup, tmp_path):
    from mmr1.models.adapters import resolve_adapter

    processor = T2IAdapter.load_processor(setup["model"])
    assert isinstance(processor, T2IProcessor)
    processor.save_pretrained(tmp_path)
    assert (tmp_path / T2I_JSON).is_file()
    assert T2IVocab.load(tmp_path) == T2IVocab.load(setup["model"])
    assert len(processor) == len(processor.tokenizer)
    assert resolve_adapter(str(setup["model"]), "auto") is T2IAdapter
    assert resolve_adapter(str(setup["model"]), "t2i") is T2IAdapter
    assert not T2IAdapter.matches(type("C", (), {"_name_or_path": str(tmp_path / "nothing")})())


def test_a_model_without_image_tokens_is_a_clear_error(tmp_path):
    from mmr1.fixtures.models import build_tiny_causal_lm
    from mmr1.imagegen.vocab import T2IVocabError

    base = build_tiny_causal_lm(tmp_path / "plain", hidden_size=16, num_hidden_layers=1, chat=False)
    with pytest.raises(T2IVocabError, match="prepare-t2i"):
        T2IAdapter.load_processor(base)
