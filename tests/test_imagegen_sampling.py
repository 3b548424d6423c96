"""CFG maths, KV-cached sampling of image tokens (vs a no-cache reference), per-row seeds, grids."""

import math

import pytest
import torch
from PIL import Image
from transformers import AutoModelForCausalLM, AutoTokenizer

from random_models import randomize_weights

from mmr1.fixtures.models import build_tiny_causal_lm
from mmr1.imagegen.sampling import (
    cfg_logits,
    codes_to_images,
    generate_image_tokens,
    save_grid,
    visual_logprobs,
)
from mmr1.imagegen.sequence import t2i_prompt_ids, uncond_prompt_ids
from mmr1.imagegen.tokenizers import VQTokenizer
from mmr1.imagegen.vocab import T2IVocab, prepare_t2i
from mmr1.rollout.sampling import filter_logits

K = 48
N = 9  # a 3 x 3 code grid
CAPTIONS = ["a red circle", "a big green square on the left of the picture", "blue"]


@pytest.fixture(scope="module")
def t2i(tmp_path_factory):
    root = tmp_path_factory.mktemp("sampling")
    out = prepare_t2i(build_tiny_causal_lm(root / "base", chat=False), root / "t2i", codebook_size=K)
    model = randomize_weights(AutoModelForCausalLM.from_pretrained(out), seed=0, scale=0.5)  # peaked, tie-free
    return model, AutoTokenizer.from_pretrained(out), T2IVocab.load(out)


def test_cfg_logits_by_hand():
    cond = torch.log_softmax(torch.tensor([1.0, 2.0, 3.0]), -1)
    uncond = torch.log_softmax(torch.tensor([3.0, 2.0, 1.0]), -1)
    lse = math.log(math.exp(1) + math.exp(2) + math.exp(3))
    # cond - uncond = [-2, 0, 2]; 3 * that + uncond
    expected = torch.tensor([-6.0 + 3 - lse, 0.0 + 2 - lse, 6.0 + 1 - lse])
    assert torch.allclose(cfg_logits(cond, uncond, 3.0), expected, atol=1e-6)
    assert torch.allclose(cfg_logits(cond, uncond, 1.0), cond)
    assert torch.allclose(cfg_logits(cond, uncond, 0.0), uncond)


def test_filter_logits():
    x = torch.tensor([[1.0, 4.0, 3.0, 2.0]])
    assert torch.isinf(filter_logits(x, top_k=2)).tolist() == [[True, False, False, True]]
    # probs about [0.03, 0.64, 0.24, 0.09]: top_p 0.7 keeps the two largest, 0.5 only the largest
    assert torch.isinf(filter_logits(x, top_p=0.7)).tolist() == [[True, False, False, True]]
    assert torch.isinf(filter_logits(x, top_p=0.5)).tolist() == [[True, False, True, True]]
    assert torch.equal(filter_logits(x), x)


def _reference(model, vocab, prompt, n, cfg=1.0, uncond=None):
    """Greedy decoding with a full forward per step (no cache, no padding)."""
    ids, unc = list(prompt), list(uncond or [])
    codes, logps = [], []
    with torch.no_grad():
        for _ in range(n):
            lc = torch.log_softmax(model(torch.tensor([ids])).logits[0, -1, vocab.visual_slice], -1)
            scores = lc
            if cfg != 1.0:
                lu = torch.log_softmax(model(torch.tensor([unc])).logits[0, -1, vocab.visual_slice], -1)
                scores = cfg_logits(lc, lu, cfg)
            code = int(scores.argmax())
            codes.append(code)
            logps.append(float(lc[code]))
            ids.append(vocab.first_visual_id + code)
            unc.append(vocab.first_visual_id + code)
    return codes, logps


@pytest.mark.parametrize("cfg", [1.0, 4.0])
def test_greedy_matches_no_cache_reference(t2i, cfg):
    model, tok, vocab = t2i
    out = generate_image_tokens(model, vocab, CAPTIONS, N, tokenizer=tok, cfg=cfg, temperature=0)
    assert out.codes.shape == out.logp_policy.shape == (3, N)
    assert (out.logp_sample == 0).all()
    for i, caption in enumerate(CAPTIONS):
        codes, logps = _reference(model, vocab, t2i_prompt_ids(caption, vocab, tok), N, cfg, uncond_prompt_ids(vocab))
        assert out.codes[i].tolist() == codes
        assert torch.allclose(out.logp_policy[i], torch.tensor(logps), atol=1e-4)
    # chunked batches and top_k=1 give the same codes
    assert torch.equal(generate_image_tokens(model, vocab, CAPTIONS, N, tokenizer=tok, cfg=cfg, temperature=0, batch_size=2).codes, out.codes)
    assert torch.equal(generate_image_tokens(model, vocab, CAPTIONS, N, tokenizer=tok, cfg=cfg, top_k=1).codes, out.codes)


def test_negative_prompt_changes_guidance(t2i):
    model, tok, vocab = t2i
    out = generate_image_tokens(model, tok, CAPTIONS[:1], N, cfg=4.0, negative_prompt="blurry", temperature=0)
    codes, _ = _reference(model, vocab, t2i_prompt_ids(CAPTIONS[0], vocab, tok), N, 4.0,
                          uncond_prompt_ids(vocab, tok, "blurry"))
    assert out.codes[0].tolist() == codes


def test_only_visual_tokens_even_when_model_wants_to_stop(t2i):
    model, tok, vocab = t2i
    hook = model.lm_head.register_forward_hook(lambda m, i, o: o.index_add(-1, torch.tensor([vocab.eoi_id, 0]), torch.full((*o.shape[:-1], 2), 1e4)))
    try:
        out = generate_image_tokens(model, vocab, CAPTIONS, 16, tokenizer=tok, cfg=2.0, seed=0)
    finally:
        hook.remove()
    assert out.codes.shape == (3, 16)
    assert out.codes.min() >= 0 and out.codes.max() < K
    assert vocab.is_visual(out.token_ids(vocab)).all()


def test_sampling_is_seeded_and_logp_policy_matches_training_forward(t2i):
    model, tok, vocab = t2i
    kw = dict(tokenizer=tok, cfg=3.0, temperature=0.8, top_k=20, top_p=0.95)
    a = generate_image_tokens(model, vocab, CAPTIONS, N, seed=1, **kw)
    b = generate_image_tokens(model, vocab, CAPTIONS, N, seed=1, **kw)
    c = generate_image_tokens(model, vocab, CAPTIONS, N, seed=2, **kw)
    assert torch.equal(a.codes, b.codes) and not torch.equal(a.codes, c.codes)
    assert (a.logp_sample <= 0).all() and (a.logp_policy <= 0).all()
    # logp_policy is what a training forward over prompt + codes gives (cond, temperature 1, visual tokens only)
    for i, caption in enumerate(CAPTIONS):
        prompt = t2i_prompt_ids(caption, vocab, tok)
        full = torch.tensor([prompt + a.token_ids(vocab)[i].tolist()])
        with torch.no_grad():
            logits = model(full).logits[:, len(prompt) - 1 : -1]
        train_logp = visual_logprobs(logits, full[:, len(prompt):], vocab)[0]
        assert torch.allclose(train_logp, a.logp_policy[i], atol=1e-4)


def test_token_id_prompts_and_errors(t2i):
    model, tok, vocab = t2i
    prompt = t2i_prompt_ids("a red circle", vocab, tok)
    by_ids = generate_image_tokens(model, vocab, [prompt], N, temperature=0)
    by_text = generate_image_tokens(model, vocab, ["a red circle"], N, tokenizer=tok, temperature=0)
    assert torch.equal(by_ids.codes, by_text.codes)
    with pytest.raises(ValueError, match="tokenizer"):
        generate_image_tokens(model, vocab, ["a red circle"], N)
    with pytest.raises(ValueError, match="num_tokens"):
        generate_image_tokens(model, vocab, [prompt], 0)
    model.train()
    generate_image_tokens(model, vocab, [prompt], 2, temperature=0)
    assert model.training  # the caller's mode is restored
    model.eval()


def test_codes_to_images_and_save_grid(tmp_path):
    vq = VQTokenizer(torch.rand(K, 3 * 4 * 4), patch=4)
    images = codes_to_images(torch.randint(K, (5, 9)), vq)
    assert len(images) == 5 and images[0].size == (12, 12)
    grid = save_grid(images, tmp_path / "samples")
    assert grid == tmp_path / "samples" / "grid.png"
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["0000.png", "0001.png", "0002.png", "0003.png", "0004.png", "grid.png"]
    assert Image.open(grid).size == (3 * 12 + 4 * 2, 2 * 12 + 3 * 2)
    g2 = save_grid(images, tmp_path / "step10.png", nrow=5, scale=2)
    assert g2.is_file() and (tmp_path / "step10_0004.png").is_file()
    with pytest.raises(ValueError, match="square"):
        codes_to_images(torch.zeros(1, 8, dtype=torch.long), vq)


def test_num_generations_shares_the_prompt_encoding(t2i):
    model, tok, vocab = t2i
    greedy = generate_image_tokens(model, vocab, CAPTIONS, N, tokenizer=tok, cfg=2.0, temperature=0)
    grouped = generate_image_tokens(model, vocab, CAPTIONS, N, tokenizer=tok, cfg=2.0, temperature=0, num_generations=3)
    assert grouped.codes.shape == (9, N)
    assert torch.equal(grouped.codes, greedy.codes.repeat_interleave(3, dim=0))
    assert torch.allclose(grouped.logp_policy, greedy.logp_policy.repeat_interleave(3, dim=0), atol=1e-5)
    sampled = generate_image_tokens(model, vocab, CAPTIONS, N, tokenizer=tok, num_generations=4, batch_size=2,
                                    seed=0)
    assert sampled.codes.shape == (12, N)
    assert len({tuple(r) for r in sampled.codes[:4].tolist()}) > 1  # a group's samples differ
    for i in (0, 5, 11):  # every row's log-probs belong to its own prompt
        prompt = t2i_prompt_ids(CAPTIONS[i // 4], vocab, tok)
        full = torch.tensor([prompt + sampled.token_ids(vocab)[i].tolist()])
        with torch.no_grad():
            logits = model(full).logits[:, len(prompt) - 1 : -1]
        assert torch.allclose(visual_logprobs(logits, full[:, len(prompt):], vocab)[0], sampled.logp_policy[i], atol=1e-4)


@pytest.mark.parametrize("cfg", [1.0, 3.0])
def test_a_row_draws_from_its_own_seed_whatever_the_batch(t2i, cfg):
    model, tok, vocab = t2i
    kw = dict(tokenizer=tok, cfg=cfg, temperature=1.0, seed=7)
    alone = generate_image_tokens(model, vocab, CAPTIONS[1:2], N, **kw)
    batch = generate_image_tokens(model, vocab, [CAPTIONS[1], CAPTIONS[0], CAPTIONS[2]], N, **kw)
    assert torch.equal(alone.codes[0], batch.codes[0])            # the other prompts change nothing
    assert torch.allclose(alone.logp_policy[0], batch.logp_policy[0], atol=1e-5)
    one_by_one = generate_image_tokens(model, vocab, CAPTIONS, N, batch_size=1, num_generations=2, **kw)
    together = generate_image_tokens(model, vocab, CAPTIONS, N, num_generations=2, **kw)
    assert torch.equal(one_by_one.codes, together.codes)          # nor does batch_size
    same = generate_image_tokens(model, vocab, [CAPTIONS[0]] * 3, N, **kw)
    assert len({tuple(r) for r in same.codes.tolist()}) == 3      # each row has its own stream
