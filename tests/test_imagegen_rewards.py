"""Image rewards: the rule-based colour check and CLIP-based scorers on tiny random CLIP models."""

import pytest
import torch
from PIL import Image

from mmr1 import get_reward, list_rewards
from mmr1.fixtures.models import build_tiny_clip
from mmr1.fixtures.shapes import T2I_COLORS, draw_shape, make_shapes


def test_rewards_registered_through_entry_point():
    assert {"color_fidelity", "clip_score", "pickscore", "aesthetic", "hps"} <= set(list_rewards())


# -- color_fidelity ------------------------------------------------------------------------------
def test_color_fidelity_on_synthetic_shapes():
    reward = get_reward("color_fidelity")
    samples = make_shapes(60, seed=4, colors=tuple(T2I_COLORS))
    images = [s["image"] for s in samples]
    right = reward(["" for _ in samples], generated_images=images, caption=[s["caption"] for s in samples])
    assert right == [1.0] * len(samples)
    wrong_caption = ["a red circle" if s["color"] != "red" else "a blue circle" for s in samples]
    assert reward([""] * len(samples), generated_images=images, caption=wrong_caption) == [0.0] * len(samples)


def test_color_fidelity_reads_prompts_and_soft_score():
    reward = get_reward("color_fidelity")
    red = draw_shape("circle", "red")
    half = draw_shape("square", "blue", box=(4, 4, 24))
    half.paste(Image.new("RGB", (24, 8), T2I_COLORS["yellow"]), (4, 20))  # 2/3 blue, 1/3 yellow
    prompts = ["<|t2i|>A photo of a red circle<|soi|>", [{"role": "user", "content": "a Blue square"}], "a square", None]
    out = reward(["", "", "", ""], generated_images=[red, half, red, red], prompts=prompts)
    assert out == [1.0, 1.0, None, None]  # no colour word -> no opinion
    soft = reward([""], generated_images=[half], prompts=["a yellow square"], soft=True)
    assert soft[0] == pytest.approx(1 / 3, abs=0.02)
    assert reward([""], generated_images=[None], prompts=["a red circle"]) == [None]
    blank = Image.new("RGB", (32, 32), "white")
    assert reward(["", ""], generated_images=[blank, blank], prompts=["a red circle", "a white square"]) == [0.0, 1.0]
    with pytest.raises(ValueError, match="generated_images"):
        reward([""], prompts=["a red circle"])


# -- CLIP-based scorers --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return build_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip", image_size=32, projection_dim=16)


@pytest.fixture(scope="module")
def shapes():
    return make_shapes(5, seed=2)


def _reference_cosines(clip_dir, images, texts):
    from transformers import CLIPModel, CLIPProcessor

    model, proc = CLIPModel.from_pretrained(clip_dir).eval(), CLIPProcessor.from_pretrained(clip_dir)
    with torch.no_grad():
        out = model(**proc(text=texts, images=images, return_tensors="pt", padding=True))
    img = torch.nn.functional.normalize(out.image_embeds, dim=-1)
    txt = torch.nn.functional.normalize(out.text_embeds, dim=-1)
    return (img * txt).sum(-1), model.logit_scale.exp().item()


def test_clip_score_matches_clip_forward(clip_dir, shapes):
    cls = get_reward("clip_score")
    reward = cls(model=str(clip_dir), batch_size=2, device="cpu")  # batches of 2 over 5 images
    images = [s["image"] for s in shapes]
    captions = [s["caption"] for s in shapes]
    scores = reward([""] * 5, generated_images=images, caption=captions)
    expected, scale = _reference_cosines(clip_dir, images, captions)
    assert scores == pytest.approx(expected.tolist(), abs=1e-5)
    assert all(-1.0 <= s <= 1.0 for s in scores)
    # without a caption column the prompt text is used, markers removed; a missing image -> None
    prompts = [f"<|t2i|>{c}<|soi|>" for c in captions]
    again = reward([""] * 5, generated_images=images[:4] + [None], prompts=prompts)
    assert again[:4] == pytest.approx(scores[:4], abs=1e-5) and again[4] is None

    pick = get_reward("pickscore")(model=str(clip_dir), device="cpu")
    assert pick([""] * 5, generated_images=images, caption=captions) == pytest.approx((expected * scale).tolist(), abs=1e-4)


def test_aesthetic_linear_head(clip_dir, shapes, tmp_path):
    from transformers import CLIPModel, CLIPProcessor

    head = torch.nn.Linear(16, 1)
    torch.save(head.state_dict(), tmp_path / "head.pth")
    reward = get_reward("aesthetic")(model=str(clip_dir), head=str(tmp_path / "head.pth"), device="cpu")
    images = [s["image"] for s in shapes]
    scores = reward([""] * 5, generated_images=images)
    model, proc = CLIPModel.from_pretrained(clip_dir).eval(), CLIPProcessor.from_pretrained(clip_dir)
    with torch.no_grad():
        emb = model.vision_model(pixel_values=proc(images=images, return_tensors="pt")["pixel_values"]).pooler_output
        emb = torch.nn.functional.normalize(model.visual_projection(emb), dim=-1)
        expected = head(emb).reshape(-1)
    assert scores == pytest.approx(expected.tolist(), abs=1e-5)
    # the v2 MLP layout (layers.N.*) loads too
    mlp = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.Dropout(0.2), torch.nn.Linear(8, 1))
    torch.save({f"layers.{k}": v for k, v in mlp.state_dict().items()}, tmp_path / "mlp.pth")
    mlp.eval()
    reward2 = get_reward("aesthetic")(model=str(clip_dir), head=str(tmp_path / "mlp.pth"), device="cpu")
    with torch.no_grad():
        assert reward2([""] * 5, generated_images=images) == pytest.approx(mlp(emb).reshape(-1).tolist(), abs=1e-5)
    torch.save(torch.nn.Linear(8, 1).state_dict(), tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match="expects 8-d embeddings"):
        get_reward("aesthetic")(model=str(clip_dir), head=str(tmp_path / "wrong.pth"))


def test_missing_weights_give_clear_errors(clip_dir, tmp_path):
    with pytest.raises(ValueError, match=r"clip_score.*reward_kwargs: \{clip_score: \{model:"):
        get_reward("clip_score")()
    with pytest.raises(ValueError, match=r"model path .*nowhere.* does not exist \(option `model`"):
        get_reward("clip_score")(model=str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match=r"pickscore.*option `processor`"):
        get_reward("pickscore")(model=str(clip_dir), processor=str(tmp_path))
    with pytest.raises(ValueError, match=r"aesthetic.*\{head:"):
        get_reward("aesthetic")(model=str(clip_dir))
    with pytest.raises(ValueError, match=r"head weights .*missing.pth.* do not exist \(option `head`\)"):
        get_reward("aesthetic")(model=str(clip_dir), head=str(tmp_path / "missing.pth"))
    with pytest.raises(ValueError, match=r"hps.*\{checkpoint:"):
        get_reward("hps")()


def test_hps_needs_open_clip(tmp_path):
    try:
        import open_clip  # noqa: F401
    except Exception:  # noqa: BLE001
        pass
    else:
        pytest.skip("open_clip is installed here")
    with pytest.raises(ImportError, match=r"mmr1\[imagegen\]"):
        get_reward("hps")(checkpoint=str(tmp_path / "HPS_v2.1_compressed.pt"))
