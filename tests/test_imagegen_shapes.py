"""Synthetic shapes: determinism, captions, and the rule-based shape classifier."""

import json

import numpy as np
from PIL import Image

from mmr1.fixtures.shapes import SHAPES, T2I_COLORS, draw_shape, make_shapes, write_shapes_dataset
from mmr1.imagegen.shapes import shape_of
from mmr1.imagegen.tokenizers import VQTokenizer


def test_deterministic_by_seed_with_captions():
    a, b, c = make_shapes(20, seed=7), make_shapes(20, seed=7), make_shapes(20, seed=8)
    assert [np.asarray(x["image"]).tobytes() for x in a] == [np.asarray(x["image"]).tobytes() for x in b]
    assert [np.asarray(x["image"]).tobytes() for x in a] != [np.asarray(x["image"]).tobytes() for x in c]
    for s in a:
        assert s["caption"] == f"a {s['color']} {s['shape']}"
        assert s["image"].size == (32, 32) and s["image"].mode == "RGB"
        white = (np.asarray(s["image"]) == 255).all(axis=-1).mean()
        assert white > 0.5  # a shape on a white background
    assert {s["shape"] for s in make_shapes(60, seed=0)} == set(SHAPES)


def test_shape_of_is_accurate_on_clean_samples():
    samples = make_shapes(600, seed=11, colors=tuple(T2I_COLORS))
    acc = np.mean([shape_of(s["image"]) == s["shape"] for s in samples])
    assert acc >= 0.99
    wide = make_shapes(300, seed=12, min_frac=0.2, max_frac=0.95)
    assert np.mean([shape_of(s["image"]) == s["shape"] for s in wide]) >= 0.97
    for shape in SHAPES:
        assert shape_of(draw_shape(shape, "purple", size=64, box=(10, 20, 30))) == shape
    assert shape_of(Image.new("RGB", (32, 32), "white")) == "none"


def test_shape_of_survives_vq_reconstruction():
    vq = VQTokenizer.train([s["image"] for s in make_shapes(300, seed=0)], seed=0)
    held_out = make_shapes(200, seed=1)
    recon = vq.decode(vq.encode([s["image"] for s in held_out]))
    assert np.mean([shape_of(r) == s["shape"] for r, s in zip(recon, held_out)]) >= 0.95


def test_write_shapes_dataset(tmp_path):
    meta = write_shapes_dataset(tmp_path / "shapes", 6, seed=0)
    rows = json.loads(meta.read_text())
    assert len(rows) == 6 and set(rows[0]) >= {"image_path", "caption", "shape", "color"}
    assert not rows[0]["image_path"].startswith("/")
    assert Image.open(meta.parent / rows[0]["image_path"]).size == (32, 32)
