"""Tests that need the full vision stack users have on GPU machines: torchvision and open_clip.

They carry the ``vision_stack`` marker: ``make test`` runs them in a second environment
(``.venv-vision``: torch with its matching torchvision, and the ``imagegen`` extra), and runs the
rest of the suite without torchvision, in ``.venv``.
"""

import json

import pytest
import torch
from PIL import Image

from mmr1 import get_reward
from mmr1.fixtures.shapes import draw_shape

pytestmark = pytest.mark.vision_stack



class _LazyOpenClip:
    """open_clip, imported on first use: outside .venv-vision these tests are deselected, not skipped."""

    def __getattr__(self, name):
        import open_clip as module

        return getattr(module, name)


open_clip = _LazyOpenClip()

# A ViT-H-14-shaped config, shrunk: same tokenizer (open_clip's bundled BPE, 49408 tokens), same
# layer types, 32 px images.
TINY_ARCH = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


def _arch_file(folder, name, **changes):
    cfg = json.loads(json.dumps(TINY_ARCH))
    for key, value in changes.items():
        section, field = key.split("__")
        cfg[section][field] = value
    path = folder / f"{name}.json"
    path.write_text(json.dumps(cfg))
    return path


def _checkpoint(arch_path, out, seed, wrap=True):
    """A random-weight open_clip model saved as HPSv2 checkpoints are: {"state_dict": {"module.<key>": ...}}."""
    open_clip.add_model_config(arch_path)
    torch.manual_seed(seed)
    model = open_clip.create_model(arch_path.stem, pretrained=None)
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 3} if wrap else model.state_dict(), out)
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("open_clip")
    arch = _arch_file(root, "tiny-vit-h14")
    return {"root": root, "arch": arch, "hps": _checkpoint(arch, root / "HPS_tiny.pt", seed=0),
            "plain": _checkpoint(arch, root / "open_clip_tiny.bin", seed=1, wrap=False)}


@pytest.fixture(scope="module")
def images():
    return [draw_shape(shape, color, size=32, box=(2 + 3 * i, 4 + 2 * i, 12 + 3 * i))
            for i, (shape, color) in enumerate([("circle", "red"), ("square", "blue"), ("triangle", "green"),
                                                 ("circle", "yellow")])]


CAPTIONS = ["a red circle", "a blue square", "a green triangle", "a yellow circle"]


def _reference_scores(arch, checkpoint, images, texts, logit_scale=False):
    """What the hpsv2 package computes, through open_clip's own forward pass and checkpoint loader."""
    model, _, preprocess = open_clip.create_model_and_transforms(arch.stem, pretrained=None)
    open_clip.load_checkpoint(model, str(checkpoint))
    model.eval()
    tokenizer = open_clip.get_tokenizer(arch.stem)
    with torch.no_grad():
        pixels = torch.stack([preprocess(im) for im in images])
        out = model(pixels, tokenizer(texts))
        logits = out["image_features"] @ out["text_features"].T if isinstance(out, dict) else out[0] @ out[1].T
        scores = torch.diagonal(logits)
        return scores * model.logit_scale.exp() if logit_scale else scores


def test_hps_scores_match_hpsv2_computation(tiny, images):
    hps = get_reward("hps")(checkpoint=str(tiny["hps"]), arch=str(tiny["arch"]), batch_size=3)
    scores = hps(["" for _ in images], generated_images=images, caption=CAPTIONS)
    expected = _reference_scores(tiny["arch"], tiny["hps"], images, CAPTIONS)
    assert torch.allclose(torch.tensor(scores), expected, atol=1e-5), (scores, expected)
    assert all(-1.0 <= s <= 1.0 for s in scores)
    assert len({round(s, 6) for s in scores}) == len(scores)  # each image/caption pair scored on its own
    # the caption matters: scoring the same images against other captions changes the scores
    swapped = hps(["" for _ in images], generated_images=images, caption=CAPTIONS[::-1])
    assert not torch.allclose(torch.tensor(swapped), torch.tensor(scores))


def test_hps_reads_prompt_text_and_skips_missing_images(tiny, images):
    hps = get_reward("hps")(checkpoint=str(tiny["hps"]), arch=str(tiny["arch"]), scale=2.0)
    prompts = [f"<|t2i|>{c}<|soi|>" for c in CAPTIONS[:2]]
    scores = hps(["", "", ""], generated_images=[images[0], None, images[1]], prompts=prompts + ["a cat"])
    expected = _reference_scores(tiny["arch"], tiny["hps"], [images[0], images[1]], [CAPTIONS[0], "a cat"])
    assert scores[1] is None
    assert scores[0] == pytest.approx(2.0 * float(expected[0]), abs=1e-5)
    assert scores[2] == pytest.approx(2.0 * float(expected[1]), abs=1e-5)


def test_clip_score_and_pickscore_on_open_clip(tiny, images):
    clip = get_reward("clip_score")(arch=str(tiny["arch"]), checkpoint=str(tiny["plain"]))
    scores = clip(["" for _ in images], generated_images=images, caption=CAPTIONS)
    assert torch.allclose(torch.tensor(scores), _reference_scores(tiny["arch"], tiny["plain"], images, CAPTIONS), atol=1e-5)
    pick = get_reward("pickscore")(arch=str(tiny["arch"]), checkpoint=str(tiny["plain"]))
    expected = _reference_scores(tiny["arch"], tiny["plain"], images, CAPTIONS, logit_scale=True)
    assert torch.allclose(torch.tensor(pick(["" for _ in images], generated_images=images, caption=CAPTIONS)),
                          expected, atol=1e-4)


def test_aesthetic_head_on_open_clip(tiny, images, tmp_path):
    torch.manual_seed(3)
    head = torch.nn.Linear(TINY_ARCH["embed_dim"], 1)
    torch.save(head.state_dict(), tmp_path / "head.pth")
    reward = get_reward("aesthetic")(arch=str(tiny["arch"]), checkpoint=str(tiny["plain"]), head=str(tmp_path / "head.pth"))
    model, _, preprocess = open_clip.create_model_and_transforms(tiny["arch"].stem, pretrained=str(tiny["plain"]))
    with torch.no_grad():
        emb = model.eval().encode_image(torch.stack([preprocess(im) for im in images]), normalize=True)
        expected = head(emb).reshape(-1)
    assert torch.allclose(torch.tensor(reward(["" for _ in images], generated_images=images)), expected, atol=1e-5)
    # a head trained on another embedding size is refused by name
    torch.save(torch.nn.Linear(8, 1).state_dict(), tmp_path / "head8.pth")
    with pytest.raises(ValueError, match="expects 8-d embeddings but the CLIP model gives 16-d"):
        get_reward("aesthetic")(arch=str(tiny["arch"]), checkpoint=str(tiny["plain"]), head=str(tmp_path / "head8.pth"))


def test_open_clip_errors_name_the_option(tiny, tmp_path):
    with pytest.raises(ValueError, match=r"not an open_clip architecture \(option `arch`\)"):
        get_reward("hps")(checkpoint=str(tiny["hps"]), arch="ViT-Q-99")
    with pytest.raises(ValueError, match=r"checkpoint .*does not exist \(option `checkpoint`\)"):
        get_reward("hps")(checkpoint=str(tmp_path / "missing.pt"), arch=str(tiny["arch"]))
    with pytest.raises(ValueError, match=r"architecture file .* does not exist"):
        get_reward("clip_score")(arch=str(tmp_path / "nope.json"), checkpoint=str(tiny["plain"]))
    with pytest.raises(ValueError, match=r"\{clip_score: \{checkpoint:"):
        get_reward("clip_score")(arch=str(tiny["arch"]))
    with pytest.raises(ValueError, match="not both"):
        get_reward("clip_score")(arch=str(tiny["arch"]), checkpoint=str(tiny["plain"]), model="/x")
    # weights of another architecture: the load fails and the message names both options
    wide = _arch_file(tmp_path, "tiny-wide", vision_cfg__width=48)
    with pytest.raises(ValueError, match=r"option `arch`.*option `checkpoint`"):
        get_reward("hps")(checkpoint=str(tiny["hps"]), arch=str(wide))
    # a pickle that holds more than tensors is refused unless trusted
    torch.save({"state_dict": torch.load(tiny["hps"])["state_dict"], "args": argparse_like()}, tmp_path / "full.pt")
    with pytest.raises(ValueError, match="weights_only: false"):
        get_reward("hps")(checkpoint=str(tmp_path / "full.pt"), arch=str(tiny["arch"]))
    trusted = get_reward("hps")(checkpoint=str(tmp_path / "full.pt"), arch=str(tiny["arch"]), weights_only=False)
    assert trusted([""], generated_images=[Image.new("RGB", (32, 32), "white")], caption=["a"])[0] is not None


class _Args:  # stands in for the argparse.Namespace that training scripts pickle next to the weights
    lr = 1e-4


def argparse_like():
    return _Args()


# ------------------------------------------------------------------------------------------ processors


def test_qwen_vl_processor_with_torchvision_matches_the_torchvision_free_one(tmp_path, monkeypatch):
    """With torchvision, load_processor returns transformers' standard processor; the no-torchvision
    path that CPU machines use must produce exactly the same model inputs."""
    from mmr1.fixtures.models import make_tiny
    from mmr1.models import processors

    folder = make_tiny("qwen2_5_vl", tmp_path / "vl", seed=0)
    assert processors.torchvision_available()
    standard = processors.load_processor(folder)
    assert type(standard).__name__ == "Qwen2_5_VLProcessor"
    assert getattr(standard, "video_processor", None) is not None

    monkeypatch.setattr(processors, "torchvision_available", lambda: False)
    plain = processors.load_processor(folder)
    assert type(plain).__name__.endswith("NoVideo")

    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many circles?"}]}]
    image = draw_shape("circle", "red", size=120).resize((150, 90))
    batches = []
    for proc in (standard, plain):
        text = proc.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        batches.append(proc(images=[image], text=[text], return_tensors="pt"))
    a, b = batches
    assert torch.equal(a["input_ids"], b["input_ids"])
    assert torch.equal(a["image_grid_thw"], b["image_grid_thw"])
    assert torch.allclose(a["pixel_values"], b["pixel_values"], atol=1e-5)
