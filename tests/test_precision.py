"""One dtype policy for every recipe: float32 weights (``auto``), bfloat16 compute under autocast when bf16 is on."""

import pytest
import torch

from mmr1.config import build_config
from mmr1.grpo.build import Precision, precision
from mmr1.grpo.trainer import GRPOTrainer
from test_grpo_trainer import base_config


@pytest.mark.parametrize("torch_dtype, bf16, use_gpu, expected", [
    ("auto", None, False, Precision(torch.float32, "no")),
    ("auto", None, True, Precision(torch.float32, "bf16")),
    ("auto", True, False, Precision(torch.float32, "bf16")),
    ("auto", False, True, Precision(torch.float32, "no")),
    ("float32", True, False, Precision(torch.float32, "bf16")),
    ("bfloat16", None, True, Precision(torch.bfloat16, "no")),
    ("float64", True, False, Precision(torch.float64, "no")),
])
def test_precision_policy(torch_dtype, bf16, use_gpu, expected, tmp_path):
    config = build_config({"model_name_or_path": "m", "output_dir": str(tmp_path), "torch_dtype": torch_dtype,
                           "bf16": bf16})
    assert precision(config, use_gpu) == expected


@pytest.fixture
def fresh_accelerate():
    """accelerate keeps its mixed precision process-wide: each run here starts from none."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)


@pytest.mark.parametrize("bf16, compute", [(True, torch.bfloat16), (False, torch.float32)])
def test_grpo_keeps_float32_weights_and_computes_in_the_policy_dtype(tiny_vl, tmp_path, fresh_accelerate, bf16,
                                                                     compute):
    trainer = GRPOTrainer(build_config(base_config(tiny_vl, tmp_path / "out", bf16=bf16, beta=0.05, max_steps=1)))
    assert {p.dtype for p in trainer.policy.parameters()} == {torch.float32}
    assert {p.dtype for p in trainer.ref_model.parameters()} == {torch.float32}
    seen = set()
    hooks = [m.lm_head.register_forward_hook(lambda mod, args, out, who=who: seen.add((who, torch.is_grad_enabled(),
                                                                                      out.dtype)))
             for who, m in (("policy", trainer.policy), ("reference", trainer.ref_model))]
    try:
        trainer.train()
    finally:
        for h in hooks:
            h.remove()
    # generation (no grad), the update (grad) and the reference (no grad) all compute in one dtype
    assert seen == {("policy", False, compute), ("policy", True, compute), ("reference", False, compute)}
    assert {p.dtype for p in trainer.policy.parameters()} == {torch.float32}


@pytest.fixture(scope="module")
def tiny_t2i(tmp_path_factory):
    from mmr1.fixtures.models import build_tiny_t2i

    return build_tiny_t2i(tmp_path_factory.mktemp("t2i"), n_images=8, seed=4)


def _linear_output_dtypes(run) -> set:
    """The dtypes every ``nn.Linear`` returns in forward passes with gradients on, while ``run()`` runs."""
    seen = set()

    def record(module, args, out):
        if isinstance(module, torch.nn.Linear) and torch.is_grad_enabled():
            seen.add(out.dtype)

    handle = torch.nn.modules.module.register_module_forward_hook(record)
    try:
        run()
    finally:
        handle.remove()
    return seen


@pytest.mark.parametrize("recipe", ["vlm", "t2i"])
@pytest.mark.parametrize("bf16, compute", [(True, torch.bfloat16), (False, torch.float32)])
def test_both_sft_recipes_follow_the_same_policy(recipe, bf16, compute, tiny_vl, tiny_t2i, tmp_path,
                                                 fresh_accelerate):
    """SFT trains float32 weights (what ``final/`` holds) and computes in bf16 exactly when GRPO does."""
    from safetensors.torch import load_file

    out = tmp_path / "out"
    if recipe == "vlm":
        from mmr1.sft.vlm import run_vlm_sft
        from test_sft_vlm import sft_config

        config = build_config(sft_config(tiny_vl, out, bf16=bf16, max_steps=1))
        seen = _linear_output_dtypes(lambda: run_vlm_sft(config))
    else:
        from mmr1.sft.t2i import run_t2i_sft

        config = build_config({"model_name_or_path": str(tiny_t2i["model"]), "dataset": "t2i_meta",
                               "dataset_path": str(tiny_t2i["meta"]), "per_device_train_batch_size": 4,
                               "max_steps": 1, "output_dir": str(out), "disable_tqdm": True, "bf16": bf16})
        seen = _linear_output_dtypes(lambda: run_t2i_sft(config))
    assert seen == {compute}
    final = load_file(str(out / "final" / "model.safetensors"))
    assert {t.dtype for t in final.values()} == {torch.float32}
