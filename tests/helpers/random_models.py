"""Tiny models with larger random weights than their initialisation gives: non-trivial, tie-free
distributions to sample from and score (tests only)."""

import torch


def randomize_weights(model, seed: int, scale: float):
    """Redraw every parameter of ``model`` in place from N(0, scale**2), seeded by ``seed``; returns it."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * scale)
    return model


def random_t2i(model_dir, seed: int, scale: float):
    """The ``t2i`` adapter (not bound) and its float32 model from ``model_dir``, weights randomized."""
    from mmr1.imagegen.adapter import T2IAdapter

    adapter = T2IAdapter(T2IAdapter.load_processor(model_dir))
    model = T2IAdapter.load_model(model_dir, torch.float32)
    return adapter, randomize_weights(model, seed, scale)
