"""GPU checks for the text-to-image pieces: devices, dtypes, generators.

Not part of `make test` (CI has no GPU). Run on a CUDA machine: `python -m pytest bench/gpu_checks`.
"""

from typing import Tuple

import pytest
import torch
from PIL import Image

pytestmark = [pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")]

if not torch.cuda.is_available():
    raise RuntimeError("bench/gpu_checks needs a CUDA GPU; the CPU test suite is `make test`")


@pytest.fixture(scope="module")
def t2i(tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mmr1.fixtures.models import build_tiny_causal_lm
    from mmr1.imagegen.vocab import T2IVocab, prepare_t2i

    root = tmp_path_factory.mktemp("gpu")
    out = prepare_t2i(build_tiny_causal_lm(root / "base", chat=False), root / "t2i", codebook_size=64)
    return AutoModelForCausalLM.from_pretrained(out).cuda(), AutoTokenizer.from_pretrained(out), T2IVocab.load(out)


def test_sampling_on_gpu(t2i):
    from mmr1.imagegen.sampling import generate_image_tokens

    model, tok, vocab = t2i
    kw = dict(tokenizer=tok, cfg=3.0, top_k=10, top_p=0.9, seed=0, num_generations=2)
    out = generate_image_tokens(model, vocab, ["a red circle", "a blue square on the left"], 16, **kw)
    assert out.codes.shape == (4, 16) and out.codes.device.type == "cpu"
    again = generate_image_tokens(model, vocab, ["a red circle", "a blue square on the left"], 16, batch_size=1, **kw)
    assert torch.equal(out.codes, again.codes)        # per-row streams on the GPU too
    assert 0 <= out.codes.min() and out.codes.max() < 64
    greedy = generate_image_tokens(model.to(torch.bfloat16), vocab, ["a red circle"], 16, tokenizer=tok, temperature=0)
    model.float()
    assert greedy.codes.shape == (1, 16) and greedy.logp_policy.dtype == torch.float32


class _Enc(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        p = torch.nn.functional.avg_pool2d(x * self.w, 16)
        q = ((p + 1.0) / 2.0 * 3.0).round().clamp(0, 3).long()
        return q[:, 0] * 16 + q[:, 1] * 4 + q[:, 2], p


class _Dec(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))

    def forward(self, i: torch.Tensor) -> torch.Tensor:
        rgb = torch.stack([i // 16, (i // 4) % 4, i % 4], 1).to(self.w.dtype) / 3.0 * 2.0 - 1.0
        return torch.nn.functional.interpolate(rgb * self.w, scale_factor=16.0, mode="nearest")


def test_cosmos_on_gpu_in_bfloat16(tmp_path):
    from mmr1.imagegen.tokenizers import load_image_tokenizer

    torch.jit.script(_Enc()).save(str(tmp_path / "encoder.jit"))
    torch.jit.script(_Dec()).save(str(tmp_path / "decoder.jit"))
    tok = load_image_tokenizer(f"cosmos:{tmp_path}", device="cuda", dtype="bfloat16", codebook_size=64)
    image = Image.new("RGB", (64, 32), (255, 0, 85))
    codes = tok.encode([image])
    assert codes.shape == (1, 2, 4) and codes.device.type == "cpu" and codes[0, 0, 0].item() == 49
    assert tok.decode(codes)[0].getpixel((3, 3)) == (255, 0, 85)


def test_clip_rewards_on_gpu(tmp_path):
    from mmr1_imagegen.clip import ClipScore, PickScore

    from mmr1.fixtures.models import build_tiny_clip
    from mmr1.fixtures.shapes import make_shapes

    clip = build_tiny_clip(tmp_path / "clip")
    samples = make_shapes(6, seed=0)
    images, captions = [s["image"] for s in samples], [s["caption"] for s in samples]
    cpu = ClipScore(model=str(clip), device="cpu")([""] * 6, generated_images=images, caption=captions)
    reward = ClipScore(model=str(clip), batch_size=4)  # default device: this process's GPU
    assert next(reward.encoder.model.parameters()).device.type == "cuda"
    assert reward([""] * 6, generated_images=images, caption=captions) == pytest.approx(cpu, abs=1e-3)
    scores = PickScore(model=str(clip), dtype="bfloat16")([""] * 6, generated_images=images, caption=captions)
    assert len(scores) == 6 and all(isinstance(s, float) for s in scores)
