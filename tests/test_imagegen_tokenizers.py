"""Image tokenizers: the k-means VQ round trip and the Cosmos TorchScript loading path."""

from typing import Tuple

import numpy as np
import pytest
import torch
from PIL import Image

from mmr1 import get_image_tokenizer, list_image_tokenizers
from mmr1.fixtures.shapes import make_shapes
from mmr1.imagegen.tokenizers import CosmosTokenizer, ImageTokenizer, ImageTokenizerError, VQTokenizer, load_image_tokenizer

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")


def _mean_abs_error(a, b):
    return float(np.mean([np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)).mean() for x, y in zip(a, b)]))


@pytest.fixture(scope="module")
def vq():
    return VQTokenizer.train([s["image"] for s in make_shapes(300, seed=0)], codebook_size=128, patch=4, seed=0)


def test_builtins_registered():
    assert {"vq", "cosmos"} <= set(list_image_tokenizers())
    assert get_image_tokenizer("vq") is VQTokenizer
    assert get_image_tokenizer("cosmos") is CosmosTokenizer


def test_vq_round_trip_error_is_small(vq):
    held_out = [s["image"] for s in make_shapes(100, seed=1)]
    codes = vq.encode(held_out)
    assert codes.shape == (100, 8, 8) and codes.dtype == torch.long
    assert 0 <= int(codes.min()) and int(codes.max()) < 128
    err = _mean_abs_error(held_out, vq.decode(codes))
    assert err < 4.0, f"mean abs pixel error {err:.2f}/255"
    # far better than the trivial all-white reconstruction
    white = [Image.new("RGB", (32, 32), "white")] * len(held_out)
    assert err < 0.3 * _mean_abs_error(held_out, white)
    assert isinstance(vq, ImageTokenizer)


def test_vq_deterministic_and_save_load(vq, tmp_path):
    again = VQTokenizer.train([s["image"] for s in make_shapes(300, seed=0)], codebook_size=128, patch=4, seed=0)
    assert torch.equal(again.codebook, vq.codebook)
    vq.save(tmp_path / "vq")
    assert (tmp_path / "vq" / "codebook.pt").is_file() and (tmp_path / "vq" / "config.json").is_file()
    loaded = VQTokenizer.load(tmp_path / "vq")
    assert loaded.codebook_size == 128 and loaded.downsample == 4
    images = [s["image"] for s in make_shapes(4, seed=5)]
    assert torch.equal(loaded.encode(images), vq.encode(images))
    # through the registry, with NAME:PATH and a bare folder
    assert torch.equal(load_image_tokenizer(f"vq:{tmp_path / 'vq'}").codebook, vq.codebook)
    assert isinstance(load_image_tokenizer(str(tmp_path / "vq")), VQTokenizer)


def test_vq_errors(vq, tmp_path):
    with pytest.raises(ImageTokenizerError, match="multiple of the VQ patch"):
        vq.encode([Image.new("RGB", (30, 30))])
    with pytest.raises(ImageTokenizerError, match="same size"):
        vq.encode([Image.new("RGB", (32, 32)), Image.new("RGB", (16, 16))])
    with pytest.raises(ImageTokenizerError, match="codebook.pt"):
        VQTokenizer.load(tmp_path)
    with pytest.raises(ImageTokenizerError, match="out of range"):
        vq.decode(torch.full((1, 2, 2), 500))


class _Encoder(torch.nn.Module):
    """Same call signature as Cosmos' DV encoder: [-1, 1] images -> (indices (B, h, w), codes)."""

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        pooled = torch.nn.functional.avg_pool2d(x, 16)
        q = ((pooled + 1.0) / 2.0 * 3.0).round().clamp(0, 3).long()
        idx = q[:, 0] * 16 + q[:, 1] * 4 + q[:, 2]
        return idx, pooled


class _Decoder(torch.nn.Module):
    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        rgb = torch.stack([idx // 16, (idx // 4) % 4, idx % 4], dim=1).float() / 3.0 * 2.0 - 1.0
        return torch.nn.functional.interpolate(rgb, scale_factor=16.0, mode="nearest")


@pytest.fixture()
def cosmos_dir(tmp_path):
    folder = tmp_path / "cosmos"
    folder.mkdir()
    torch.jit.script(_Encoder()).save(str(folder / "encoder.jit"))
    torch.jit.script(_Decoder()).save(str(folder / "decoder.jit"))
    return folder


def test_cosmos_loads_torchscript_and_round_trips(cosmos_dir):
    tok = load_image_tokenizer(f"cosmos:{cosmos_dir}", codebook_size=64)
    assert isinstance(tok, CosmosTokenizer) and tok.downsample == 16 and tok.codebook_size == 64
    image = Image.new("RGB", (32, 48))
    px = image.load()
    for x in range(32):
        for y in range(48):
            px[x, y] = (255, 0, 85) if y < 16 else ((0, 170, 255) if y < 32 else (85, 85, 85))
    codes = tok.encode([image, image])
    assert codes.shape == (2, 3, 2) and codes.dtype == torch.long
    assert codes[0, 0, 0].item() == 3 * 16 + 0 * 4 + 1
    out = tok.decode(codes)
    assert out[0].size == (32, 48)
    assert np.array_equal(np.asarray(out[0]), np.asarray(image))
    # SimpleAR's on-disk layout (B, 1, h, w) decodes too
    assert np.array_equal(np.asarray(tok.decode(codes[:1, None])[0]), np.asarray(image))
    # a bare folder is recognised by its files
    assert isinstance(load_image_tokenizer(str(cosmos_dir)), CosmosTokenizer)


def test_cosmos_missing_files_named(tmp_path, cosmos_dir):
    with pytest.raises(ImageTokenizerError, match=r"does not exist"):
        CosmosTokenizer.load(tmp_path / "nowhere")
    (cosmos_dir / "decoder.jit").unlink()
    with pytest.raises(ImageTokenizerError, match=r"cosmos.*has no decoder\.jit"):
        CosmosTokenizer.load(cosmos_dir)


def test_unknown_tokenizer_name_suggests(tmp_path):
    from mmr1 import RegistryError

    with pytest.raises(RegistryError, match="cosmos"):
        load_image_tokenizer(f"cosmo:{tmp_path}")
