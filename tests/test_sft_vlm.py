"""`mmr1 sft` on a vision-language config: each shared key changes the run, checkpoints resume exactly, and the
checkpoint writer saves whole tensors where the live parameters are shards."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from launching import run_processes

from mmr1.config import build_config
from mmr1.grpo.checkpoint import LaunchError, check_launch, save_model
from mmr1.sft.vlm import run_vlm_sft

HELPER = Path(__file__).parent / "helpers" / "sft_vlm_run.py"
F64 = {"torch_dtype": "float64"}


def sft_config(model, out, **over):
    data = {"model_name_or_path": model, "dataset": "shapes", "dataset_kwargs": {"n": 32, "seed": 5, "image_size": 56},
            "template": "demo", "num_generations": 2, "per_device_train_batch_size": 2, "max_steps": 2,
            "learning_rate": 1e-2, "seed": 3, "output_dir": str(out), "disable_tqdm": True}
    data.update(over)
    return data


def _run(model, out, **over):
    return run_vlm_sft(build_config(sft_config(model, out, **over)))


def _final(out) -> dict:
    return load_file(str(Path(out) / "final" / "model.safetensors"))


def _metrics(out) -> list[dict]:
    return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def _close(a: dict, b: dict, atol=1e-12) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=atol, rtol=0) for k in a)


def test_gradient_accumulation_2_of_2_is_one_batch_of_4(tiny_vl, tmp_path):
    """Float64: two micro-batches of 2, each divided by the tokens of the whole step, give the batch-of-4 update."""
    _run(tiny_vl, tmp_path / "ga", gradient_accumulation_steps=2, **F64)
    _run(tiny_vl, tmp_path / "big", per_device_train_batch_size=4, **F64)
    _run(tiny_vl, tmp_path / "small", **F64)
    ga, big, small = _final(tmp_path / "ga"), _final(tmp_path / "big"), _final(tmp_path / "small")
    assert _close(ga, big, atol=1e-9)
    assert not _close(ga, small, atol=1e-6)                  # accumulation really changed the step


@pytest.mark.parametrize("over, factors", [
    ({"lr_scheduler_type": "linear", "warmup_steps": 2}, [0.5, 1.0, 0.5, 0.0]),
    ({"lr_scheduler_type": "linear", "warmup_ratio": 0.5}, [0.5, 1.0, 0.5, 0.0]),
    ({"lr_scheduler_type": "cosine_with_min_lr", "lr_scheduler_kwargs": {"min_lr_rate": 0.5}},
     [0.5 + 0.25 * (1 + 2 ** -0.5), 0.75, 0.5 + 0.25 * (1 - 2 ** -0.5), 0.5]),
])
def test_the_scheduler_sets_the_logged_learning_rate(tiny_vl, tmp_path, over, factors):
    _run(tiny_vl, tmp_path / "out", max_steps=4, learning_rate=1e-3, **over)
    assert [m["learning_rate"] for m in _metrics(tmp_path / "out")] == pytest.approx([1e-3 * f for f in factors])


def test_weight_decay_shrinks_every_trained_weight_by_lr_times_decay(tiny_vl, tmp_path):
    """One AdamW step: the same Adam update, plus -lr * weight_decay * w0 (decoupled decay)."""
    _run(tiny_vl, tmp_path / "plain", max_steps=1, **F64)
    _run(tiny_vl, tmp_path / "decay", max_steps=1, weight_decay=0.5, **F64)
    plain, decay = _final(tmp_path / "plain"), _final(tmp_path / "decay")
    base = load_file(str(Path(tiny_vl) / "model.safetensors"))
    assert plain.keys() == base.keys()
    for name, w in plain.items():
        torch.testing.assert_close(decay[name] - w, -1e-2 * 0.5 * base[name].double(), atol=1e-12, rtol=1e-6)


@pytest.mark.parametrize("max_grad_norm", [1e-3, 0.0])
def test_max_grad_norm_clips_what_the_optimizer_sees(tiny_vl, tmp_path, monkeypatch, max_grad_norm):
    seen = []
    step = torch.optim.AdamW.step

    def recording_step(self, *args, **kwargs):
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        seen.append(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item())
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", recording_step)
    _run(tiny_vl, tmp_path / "out", max_grad_norm=max_grad_norm)
    logged = [m["grad_norm"] for m in _metrics(tmp_path / "out")]
    if max_grad_norm:
        assert all(g > 10 * max_grad_norm for g in logged)             # the norm before clipping
        assert seen == pytest.approx([max_grad_norm] * 2, rel=1e-4)
    else:
        assert logged == [None, None] and all(n > 1e-2 for n in seen)  # 0 turns clipping off


def test_save_steps_and_resume_reproduce_the_straight_run(tiny_vl, tmp_path):
    straight = tmp_path / "straight"
    _run(tiny_vl, straight, max_steps=4, save_steps=1, save_total_limit=2)
    assert sorted(p.name for p in straight.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]
    assert json.loads((straight / "checkpoint-2" / "mmr1_state.json").read_text())["global_step"] == 2
    resumed = tmp_path / "resumed"
    _run(tiny_vl, resumed, max_steps=4, resume_from_checkpoint=str(straight / "checkpoint-2"))
    a, b = _final(straight), _final(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [m["step"] for m in _metrics(resumed)] == [3, 4]
    assert [m["loss"] for m in _metrics(resumed)] == [m["loss"] for m in _metrics(straight)][2:]


def test_the_model_goes_through_accelerate_and_onto_its_device(tiny_vl, tmp_path):
    from accelerate import Accelerator

    from mmr1.grpo.trainer import PolicyScorer

    accelerator = Accelerator()
    prepare, placed = accelerator.prepare, []

    def recording_prepare(*objects):
        prepared = prepare(*objects)
        placed.extend((type(o), {p.device for p in o.parameters()}) for o in prepared if isinstance(o, torch.nn.Module))
        return prepared

    accelerator.prepare = recording_prepare
    run_vlm_sft(build_config(sft_config(tiny_vl, tmp_path / "out", max_steps=1)), accelerator=accelerator)
    assert placed == [(PolicyScorer, {accelerator.device})]


def test_mmr1_sft_writes_final_and_metrics(tiny_vl, tmp_path, capsys):
    from mmr1.cli import main

    path = tmp_path / "sft.json"
    path.write_text(json.dumps(sft_config(tiny_vl, tmp_path / "out")))
    assert main(["sft", str(path)]) == 0
    assert "SFT done: loss" in capsys.readouterr().out
    assert [m["step"] for m in _metrics(tmp_path / "out")] == [1, 2]
    from mmr1.models.adapters import QwenVLAdapter

    QwenVLAdapter.load_model(str(tmp_path / "out" / "final"), torch.float32)


# ------------------------------------------------------------------------------- the writer under sharding


def test_fsdp2_full_shard_writes_whole_tensors_equal_to_one_process(tiny_vl, tmp_path):
    """2 CPU processes under accelerate's FSDP2 (FULL_SHARD, gloo), 2 rows each, against 1 process with 4 rows:
    final/ holds tensors of the model's shapes, equal to the 1-process run's (float64)."""
    one = sft_config(tiny_vl, tmp_path / "one", per_device_train_batch_size=4, **F64)
    two = sft_config(tiny_vl, tmp_path / "two", **F64)
    for name, config, processes, extra in (("one", one, 1, []), ("two", two, 2, ["--fsdp"])):
        (tmp_path / f"{name}.json").write_text(json.dumps(config))
        run_processes([str(HELPER), str(tmp_path / f"{name}.json"), *extra], processes)
    assert json.loads((tmp_path / "two" / "world.json").read_text()) == {"num_processes": 2, "sharded": True}
    shapes = {k: v.shape for k, v in load_file(str(Path(tiny_vl) / "model.safetensors")).items()}
    a, b = _final(tmp_path / "one"), _final(tmp_path / "two")
    assert {k: v.shape for k, v in b.items()} == shapes
    assert _close(a, b, atol=1e-9)


class _ShardedAccelerator:
    """ZeRO-3 as the writer sees it: the live parameters are empty, ``get_state_dict`` gathers the whole tensors."""

    is_main_process = True
    num_processes = 1

    def __init__(self, full: dict):
        self.full = full

    def get_state_dict(self, wrapped):
        return {f"model.{k}": v for k, v in self.full.items()}

    def unwrap_model(self, wrapped):
        return wrapped


def test_the_writer_saves_the_gathered_state_not_the_live_partitions(tiny_vl, tmp_path):
    from mmr1.models.adapters import QwenVLAdapter

    model = QwenVLAdapter.load_model(tiny_vl, torch.float32)
    full = {k: v.clone() for k, v in model.state_dict().items()}
    for p in model.parameters():
        p.data = torch.empty(0)
    save_model(_ShardedAccelerator(full), SimpleNamespace(model=model), None, tmp_path / "saved")
    saved = load_file(str(tmp_path / "saved" / "model.safetensors"))
    base = load_file(str(Path(tiny_vl) / "model.safetensors"))
    assert saved.keys() == base.keys() and all(torch.equal(saved[k], base[k]) for k in saved)


def _launch(distributed_type, **state):
    from accelerate.utils import DistributedType

    return SimpleNamespace(distributed_type=getattr(DistributedType, distributed_type), state=SimpleNamespace(**state))


@pytest.mark.parametrize("launch, generates, use_peft, fix", [
    (_launch("FSDP", fsdp_plugin=SimpleNamespace(fsdp_version=2)), True, False, "ddp.yaml or zero3.yaml"),
    (_launch("FSDP", fsdp_plugin=SimpleNamespace(fsdp_version=1)), False, False, "set fsdp_version: 2"),
    (_launch("FSDP", fsdp_plugin=SimpleNamespace(fsdp_version=2)), False, True, "set use_peft: false"),
    (_launch("DEEPSPEED", deepspeed_plugin=SimpleNamespace(zero_stage=3, deepspeed_config={"zero_optimization": {}})),
     True, False, "set zero3_save_16bit_model: true"),
    (_launch("DEEPSPEED", deepspeed_plugin=SimpleNamespace(zero_stage=3, deepspeed_config={
        "zero_optimization": {"stage3_gather_16bit_weights_on_model_save": True}})), False, True, "zero2.yaml"),
])
def test_unverified_launches_are_refused_with_the_fix(launch, generates, use_peft, fix):
    with pytest.raises(LaunchError, match=fix) as caught:
        check_launch(launch, SimpleNamespace(use_peft=use_peft), generates)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("launch, generates", [
    (_launch("NO"), True), (_launch("MULTI_CPU"), True),
    (_launch("FSDP", fsdp_plugin=SimpleNamespace(fsdp_version=2)), False),
    (_launch("DEEPSPEED", deepspeed_plugin=SimpleNamespace(zero_stage=2, deepspeed_config={})), True),
    (_launch("DEEPSPEED", deepspeed_plugin=SimpleNamespace(zero_stage=3, deepspeed_config={
        "zero_optimization": {"stage3_gather_16bit_weights_on_model_save": True}})), True),
])
def test_verified_and_reasoned_launches_pass(launch, generates):
    check_launch(launch, SimpleNamespace(use_peft=False), generates)
