"""Tiny random-weight models (mmr1.fixtures.models) and processor loading (mmr1.models.processors).

Everything is built locally in tmp folders and reloaded through the standard transformers path, offline.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from PIL import Image

from mmr1.fixtures.corpora import default_corpus
from mmr1.fixtures.models import TINY_KINDS, build_tiny_causal_lm, make_tiny
from mmr1.fixtures.tokenizers import QWEN_SPECIAL_TOKENS, train_tokenizer
from mmr1.models.processors import load_processor, mm_token_type_ids, processor_tokenizer, smart_resize_hw

VL_FAMILIES = ["qwen2_5_vl", "qwen2_vl"]
ROUND_TRIP_STRINGS = [
    "<think>The red circle is left of the blue square.</think><answer>red</answer>",
    "How many objects are there? 0123456789 12 + 30 = 42",
    '{"bbox_2d": [12, 34, 56, 78], "label": "purple star"}',
    "\\frac{1}{2} + \\sqrt{16} = 4.5 and $x^2$",
    "Ünïcödé café naïve Zürich ∑ π × 東京 😀",
    "  leading spaces\n\nnew lines\ttabs  ",
    "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>What colour?<|im_end|>\n",
]


def _image(w: int, h: int, colour=(255, 0, 0)) -> Image.Image:
    img = Image.new("RGB", (w, h), (255, 255, 255))
    img.paste(Image.new("RGB", (w // 2, h // 2), colour), (w // 4, h // 4))
    return img


def _messages(text: str = "What colour is the shape?", image=None):
    item = {"type": "image"} if image is None else {"type": "image", "image": image}
    return [{"role": "user", "content": [item, {"type": "text", "text": text}]}]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(default_corpus())


@pytest.fixture(scope="module")
def vlm_dirs(tmp_path_factory):
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    root = tmp_path_factory.mktemp("tiny_vlm")
    return {family: make_tiny(family, root / family, seed=0) for family in VL_FAMILIES}


@pytest.fixture(scope="module")
def causal_dir(tmp_path_factory):
    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny_lm") / "lm", seed=0)


# ----------------------------------------------------------------------------------------------- tokenizer


def test_tokenizer_ids_round_trip_through_auto_tokenizer(tokenizer, tmp_path):
    from transformers import AutoTokenizer

    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    for text in ROUND_TRIP_STRINGS:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert reloaded(text, add_special_tokens=False)["input_ids"] == ids, text
        assert reloaded.decode(ids) == tokenizer.decode(ids) == text
    # The chat template travels with the tokenizer.
    assert reloaded.chat_template == tokenizer.chat_template


def test_tokenizer_has_merges_and_qwen_special_tokens(tokenizer):
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    assert len(state["model"]["merges"]) > 100
    assert len(tokenizer) > len(QWEN_SPECIAL_TOKENS) + 256 + 100
    for word in ["red", " red", " purple", " circle", " triangle", " answer", " count"]:
        assert len(tokenizer(word, add_special_tokens=False)["input_ids"]) == 1, word
    for tag in ["<answer>", "</answer>", "<think>", "</think>"]:
        assert len(tokenizer(tag, add_special_tokens=False)["input_ids"]) < len(tag) / 2, tag
    for special in QWEN_SPECIAL_TOKENS:
        assert tokenizer(special, add_special_tokens=False)["input_ids"] == [tokenizer.convert_tokens_to_ids(special)]
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token == "<|endoftext|>"


def test_tokenizer_extra_special_tokens(tmp_path):
    tok = train_tokenizer(default_corpus(n=400), vocab_size=600, special_tokens=["<|img_0|>", "<|img_1|>"])
    assert tok("<|img_0|><|img_1|>", add_special_tokens=False)["input_ids"] == tok.convert_tokens_to_ids(
        ["<|img_0|>", "<|img_1|>"]
    )


def test_tokenizer_too_small_vocab_is_a_clear_error():
    with pytest.raises(ValueError, match="no room for BPE merges"):
        train_tokenizer(default_corpus(n=100), vocab_size=256 + len(QWEN_SPECIAL_TOKENS))


def test_chat_template(tokenizer):
    text = tokenizer.apply_chat_template(_messages("Count."), tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Count.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    conversation = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": [{"type": "text", "text": "<answer>red</answer>"}]},
    ]
    text = tokenizer.apply_chat_template(conversation, tokenize=False)
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n<answer>red</answer><|im_end|>\n"
    )


# --------------------------------------------------------------------------------------------------- VLMs


@pytest.mark.parametrize("family", VL_FAMILIES)
def test_vlm_reloads_offline_with_same_weights(vlm_dirs, family):
    from transformers import AutoConfig, AutoModelForImageTextToText

    out = vlm_dirs[family]
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    assert size < 2_000_000
    config = AutoConfig.from_pretrained(out)
    assert config.model_type == family
    text_cfg = config.text_config
    head_dim = text_cfg.hidden_size // text_cfg.num_attention_heads
    assert sum(text_cfg.rope_parameters["mrope_section"]) == head_dim // 2

    model = AutoModelForImageTextToText.from_pretrained(out).eval()
    n_params = sum(p.numel() for p in model.parameters())
    assert 100_000 < n_params < 400_000
    # Same weights as a fresh model built from the saved config with the same seed.
    torch.manual_seed(0)
    fresh = AutoModelForImageTextToText.from_config(config).eval()
    for (name, a), (_, b) in zip(model.state_dict().items(), fresh.state_dict().items()):
        assert torch.equal(a, b), name

    processor = load_processor(out)
    tok = processor_tokenizer(processor)
    assert config.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    assert config.video_token_id == tok.convert_tokens_to_ids("<|video_pad|>")
    assert config.vision_start_token_id == tok.convert_tokens_to_ids("<|vision_start|>")
    assert config.text_config.vocab_size == len(tok)

    text = processor.apply_chat_template(_messages(), tokenize=False, add_generation_prompt=True)
    batch = processor(images=[_image(56, 56)], text=[text], return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
        logits_fresh = fresh(**batch).logits
    assert logits.shape == (1, batch["input_ids"].shape[1], len(tok))
    assert torch.allclose(logits, logits_fresh, atol=1e-6)


@pytest.mark.parametrize("family", VL_FAMILIES)
def test_vlm_processor_forward_and_generate(vlm_dirs, family):
    from transformers import AutoModelForImageTextToText

    out = vlm_dirs[family]
    processor = load_processor(out)
    assert getattr(processor, "image_processor", None) is not None, "got a bare tokenizer"
    assert processor.chat_template
    tok = processor_tokenizer(processor)
    merge = processor.image_processor.merge_size
    image_pad = tok.convert_tokens_to_ids("<|image_pad|>")
    images = [_image(56, 56), _image(112, 84, (0, 0, 255))]
    texts = [
        processor.apply_chat_template(_messages(q), tokenize=False, add_generation_prompt=True)
        for q in ["What colour?", "What colour is the square in the picture?"]
    ]
    batch = processor(images=images, text=texts, padding=True, return_tensors="pt")
    grid = batch["image_grid_thw"]
    assert grid.tolist() == [[1, 4, 4], [1, 6, 8]]  # (t, h / 14, w / 14)
    assert batch["pixel_values"].shape[0] == int(grid.prod(dim=1).sum())
    for row, thw in enumerate(grid):
        assert int((batch["input_ids"][row] == image_pad).sum()) == int(thw.prod()) // merge**2

    model = AutoModelForImageTextToText.from_pretrained(out).eval()
    # transformers >= 5.17 also needs the processor's mm_token_type_ids for M-RoPE (Qwen2-VL raises
    # without it; Qwen2.5-VL silently falls back to 1-D positions). mm_token_type_ids() rebuilds it.
    assert torch.equal(batch["mm_token_type_ids"], mm_token_type_ids(batch["input_ids"], image_pad))
    keys = ("input_ids", "attention_mask", "pixel_values", "image_grid_thw", "mm_token_type_ids")
    inputs = {k: batch[k] for k in keys}
    with torch.no_grad():
        logits = model(**inputs).logits
        generated = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert logits.shape[:2] == batch["input_ids"].shape
    assert torch.isfinite(logits).all()
    prompt_len = batch["input_ids"].shape[1]
    assert prompt_len < generated.shape[1] <= prompt_len + 4
    assert torch.equal(generated[:, :prompt_len], batch["input_ids"])
    assert len(processor.batch_decode(generated[:, prompt_len:], skip_special_tokens=True)) == 2

    # apply_chat_template can also tokenize and load the image from the message.
    encoded = processor.apply_chat_template(
        _messages(image=_image(56, 56)), add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    assert encoded["image_grid_thw"].tolist() == [[1, 4, 4]]
    assert int((encoded["input_ids"] == image_pad).sum()) == 4


def test_load_processor_applies_pixel_budget(vlm_dirs, tmp_path):
    out = vlm_dirs["qwen2_5_vl"]
    text = "<|vision_start|><|image_pad|><|vision_end|>colour?"
    image = _image(112, 112)

    def rows(processor, img=image):
        return processor(images=[img], text=[text], return_tensors="pt")["pixel_values"].shape[0]

    assert rows(load_processor(out)) == 64  # 112x112 -> 8x8 patches of 14 px
    small = load_processor(out, max_pixels=56 * 56)
    assert rows(small) == 16  # down to 56x56
    large = load_processor(out, min_pixels=224 * 224)
    assert rows(large, _image(56, 56)) == 256  # up to 224x224
    h, w = smart_resize_hw(84, 112, min_pixels=56 * 56, max_pixels=6000)
    assert (h, w) == (56, 84)
    mid = load_processor(out, min_pixels=56 * 56, max_pixels=6000)
    assert rows(mid, _image(112, 84)) == (h // 14) * (w // 14)

    # The budget is saved with the processor, under the standard class name.
    small.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "processor_config.json").read_text())
    assert saved["processor_class"] == "Qwen2_5_VLProcessor"
    assert rows(load_processor(tmp_path)) == 16


def test_load_processor_on_a_real_checkpoint_layout(vlm_dirs, tmp_path):
    """The layout of the real Qwen2.5-VL repos: legacy preprocessor_config.json with min/max_pixels,
    chat_template.json, no processor_config.json."""
    src = vlm_dirs["qwen2_5_vl"]
    dst = tmp_path / "qwen2_5_vl_like_hub"
    shutil.copytree(src, dst)
    ip = json.loads((dst / "processor_config.json").read_text())["image_processor"]
    (dst / "processor_config.json").unlink()
    template = (dst / "chat_template.jinja").read_text()
    (dst / "chat_template.jinja").unlink()
    (dst / "chat_template.json").write_text(json.dumps({"chat_template": template}))
    legacy = {k: v for k, v in ip.items() if k != "size"}
    legacy.update(min_pixels=3136, max_pixels=56 * 56, processor_class="Qwen2_5_VLProcessor")
    (dst / "preprocessor_config.json").write_text(json.dumps(legacy))

    processor = load_processor(dst)
    assert processor.chat_template == template
    text = processor.apply_chat_template(_messages(), tokenize=False, add_generation_prompt=True)
    batch = processor(images=[_image(112, 112)], text=[text], return_tensors="pt")
    assert batch["pixel_values"].shape[0] == 16  # max_pixels from the file
    batch = load_processor(dst, max_pixels=112 * 112)(images=[_image(112, 112)], text=[text], return_tensors="pt")
    assert batch["pixel_values"].shape[0] == 64


def test_no_video_processor_rejects_videos_clearly(vlm_dirs):
    from mmr1.models.processors import torchvision_available

    if torchvision_available():
        pytest.skip("with torchvision the standard processor (with video support) is used")
    processor = load_processor(vlm_dirs["qwen2_vl"])
    assert type(processor).__name__ == "Qwen2VLProcessorNoVideo"
    frames = [_image(56, 56)] * 2
    with pytest.raises(ValueError, match="no video processor"):
        processor(videos=[frames], text=["<|vision_start|><|video_pad|><|vision_end|>"])


# ---------------------------------------------------------------------------------------------- causal LM


def test_causal_lm_reloads_with_same_logits(causal_dir, tmp_path):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(causal_dir)
    assert config.model_type == "qwen2"
    model = AutoModelForCausalLM.from_pretrained(causal_dir).eval()
    torch.manual_seed(0)
    fresh = AutoModelForCausalLM.from_config(config).eval()
    tok = load_processor(causal_dir)
    assert type(tok).__name__ == AutoTokenizer.from_pretrained(causal_dir).__class__.__name__
    assert type(tok).__name__.startswith("Qwen2Tokenizer")
    ids = tok(["<answer>blue</answer> 3 circles"], return_tensors="pt")
    with torch.no_grad():
        a = model(**ids).logits
        b = fresh(**ids).logits
    assert a.shape == (1, ids["input_ids"].shape[1], len(tok))
    assert torch.allclose(a, b, atol=1e-6)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=3, do_sample=False)
    assert out.shape[1] <= ids["input_ids"].shape[1] + 3

    # Deterministic by seed: an identical rebuild gives identical files.
    again = build_tiny_causal_lm(tmp_path / "again", seed=0)
    for name in ("model.safetensors", "tokenizer.json"):
        assert (again / name).read_bytes() == (causal_dir / name).read_bytes(), name


def test_causal_lm_accepts_a_tokenizer_and_options(tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    out = make_tiny("causal_lm", tmp_path / "lm", hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                    num_key_value_heads=1, tokenizer=tokenizer, seed=3)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.hidden_size == 32 and model.config.num_hidden_layers == 1
    assert model.config.vocab_size == len(tokenizer)


# ------------------------------------------------------------------------------------------------- errors


def test_make_tiny_unknown_kind(tmp_path):
    with pytest.raises(ValueError) as err:
        make_tiny("llama", tmp_path)
    message = str(err.value)
    assert "llama" in message
    for kind in TINY_KINDS:
        assert kind in message
    assert not any(tmp_path.iterdir())


def test_make_tiny_bad_option_names_the_kind(tmp_path):
    with pytest.raises(ValueError, match="qwen2_vl: unknown option --hidden_size; build_tiny_vlm takes: --text_hidden"):
        make_tiny("qwen2_vl", tmp_path / "x", hidden_size=8)


def test_smart_resize_hw():
    assert smart_resize_hw(56, 56, 56 * 56, 28 * 28 * 1280) == (56, 56)
    assert smart_resize_hw(10, 10, 56 * 56, 28 * 28 * 1280) == (56, 56)
    h, w = smart_resize_hw(1000, 2000, 56 * 56, 200_000)
    assert h % 28 == 0 and w % 28 == 0 and h * w <= 200_000


def test_make_tiny_t2i_has_decodable_visual_tokens(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mmr1.imagegen.vocab import T2IVocab

    out = make_tiny("t2i", tmp_path / "t2i", extract=False)
    tokenizer = AutoTokenizer.from_pretrained(out)
    vocab = T2IVocab.load(out)
    ids = [vocab.code_to_id(0), vocab.code_to_id(vocab.codebook_size - 1)]
    text = tokenizer.decode(ids, skip_special_tokens=True)
    assert tokenizer(text, add_special_tokens=False)["input_ids"] == ids     # ids survive a text round trip
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.get_input_embeddings().weight.shape[0] >= vocab.code_to_id(vocab.codebook_size - 1) + 1
