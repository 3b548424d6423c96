"""Trainer-level tests on a tiny Qwen2.5-VL: shared-prefix scoring, multi-process, resume, options."""

import json
from pathlib import Path

import pytest
import torch

from crashing import train_until_crash
from launching import run_processes

from mmr1.config import build_config
from mmr1.fixtures.shapes import make_shapes_rows
from mmr1.grpo.trainer import GRPOTrainer
from mmr1.models.adapters import QwenVLAdapter
from mmr1.models.base import ModelAdapter
from mmr1.templates import Template

HELPER = Path(__file__).parent / "helpers" / "train_run.py"
TEST_REWARDS = str(Path(__file__).parent / "helpers" / "test_rewards_plugin.py")


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    from mmr1.fixtures.models import build_tiny_causal_lm

    return str(build_tiny_causal_lm(tmp_path_factory.mktemp("lm") / "m", hidden_size=64, num_hidden_layers=2, seed=3))


def base_config(model, out, **over):
    data = {
        "model_name_or_path": model, "dataset": "shapes",
        "dataset_kwargs": {"n": 64, "seed": 5, "image_size": 56}, "template": "demo",
        "rewards": ["accuracy", "format", "vowel_share"], "plugins": [TEST_REWARDS], "num_generations": 4, "per_device_train_batch_size": 8,
        "max_completion_length": 6, "max_steps": 2, "learning_rate": 5e-3, "seed": 11,
        "output_dir": str(out), "disable_tqdm": True, "log_completions": False,
    }
    data.update(over)
    return data


def _vl(model_path):
    proc = QwenVLAdapter.load_processor(model_path)
    model = QwenVLAdapter.load_model(model_path, torch.float32)
    adapter = QwenVLAdapter(proc)
    adapter.bind(model)
    return adapter, model


def test_shared_prefix_matches_full_rows_logits_and_gradients(tiny_vl):
    adapter, model = _vl(tiny_vl)
    rows = make_shapes_rows(3, seed=1, image_size=56)
    template = Template("t")
    messages = [template.messages(r["problem"] + " please" * i, 1) for i, r in enumerate(rows)]
    prompts = adapter.encode_prompts(messages, [r["image"] for r in rows])
    assert len(set(prompts.attention_mask.sum(1).tolist())) == 3      # really different prompt lengths
    index = torch.tensor([0, 0, 1, 2, 2, 2])
    ids = torch.randint(0, 500, (6, 5))
    mask = torch.ones_like(ids)
    grads = []
    for shared in (True, False):
        model.zero_grad()
        logits = adapter.completion_logits(model, prompts, index, ids, mask, shared_prefix=shared)
        torch.log_softmax(logits, -1).gather(-1, ids[..., None]).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        if shared:
            first = logits.detach()
        else:
            torch.testing.assert_close(first, logits.detach(), atol=1e-5, rtol=1e-5)
    assert grads[0].keys() == grads[1].keys()
    assert any("visual" in n for n in grads[0])                        # the vision tower gets gradients
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-5, rtol=1e-4)
    # each completion scored alone (no padding, no sharing) gives the same logits
    for n in (0, 3):
        p = int(index[n])
        alone = adapter.encode_prompts([messages[p]], [rows[p]["image"]])
        single = adapter.completion_logits(model, alone, torch.tensor([0]), ids[n:n + 1], mask[n:n + 1], False)
        torch.testing.assert_close(single[0].detach(), first[n], atol=1e-5, rtol=1e-5)


def test_shared_prefix_matches_full_rows_causal_lm(tiny_lm):
    proc = ModelAdapter.load_processor(tiny_lm)
    model = ModelAdapter.load_model(tiny_lm, torch.float32)
    adapter = ModelAdapter(proc)
    messages = [Template("t").messages(q, 0) for q in ("one", "two three four five")]
    prompts = adapter.encode_prompts(messages)
    index = torch.tensor([1, 0, 1])
    ids = torch.randint(0, 300, (3, 4))
    a = adapter.completion_logits(model, prompts, index, ids, torch.ones_like(ids), shared_prefix=True)
    b = adapter.completion_logits(model, prompts, index, ids, torch.ones_like(ids), shared_prefix=False)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_rollout_is_independent_of_batch_layout(tiny_vl):
    """Per-completion random streams: the same completion samples the same tokens in any batch."""
    from mmr1.rollout.base import SamplingParams
    from mmr1.rollout.hf import HFRollout

    adapter, model = _vl(tiny_vl)
    rows = make_shapes_rows(2, seed=2, image_size=56)
    messages = [Template("t").messages(r["problem"], 1) for r in rows]
    prompts = adapter.encode_prompts(messages, [r["image"] for r in rows])
    backend = HFRollout(adapter)
    both = backend.generate(model, prompts, torch.tensor([0, 0, 1, 1]), SamplingParams(1.0, max_tokens=8, seeds=[7, 8, 9, 10]))
    alone = adapter.encode_prompts(messages[1:], [rows[1]["image"]])
    one = backend.generate(model, alone, torch.tensor([0]), SamplingParams(1.0, max_tokens=8, seeds=[9]))
    width = one.completion_ids.shape[1]
    assert torch.equal(both.completion_ids[2, :width], one.completion_ids[0])
    assert both.texts[2] == one.texts[0]
    assert not torch.equal(both.completion_ids[2], both.completion_ids[3])  # different seeds differ


def _load(out):
    return torch.load(Path(out) / "weights.pt"), json.loads((Path(out) / "rewards.json").read_text())


def _launch(config: dict, tmp_path, name, processes):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(config))
    run_processes([str(HELPER), str(path)], processes)


# Multi-process equality: why float64, and where the tolerance comes from.
#
# One process with 16 completions and two with 8 each compute the same gradient, summed in another
# order (one batch against two halves averaged by all-reduce). In float32 that order changes the
# last bits: about 1e-8 x |g|. Adam's step is lr * m / (sqrt(v) + eps); its derivative in g is at most
# lr / eps = 5e-3 / 1e-8 = 5e5, reached where |g| is near zero. Wherever a gradient is round-off only
# (true value 0), Adam turns the round-off's *sign* into a step of up to lr. The tiny text-to-image
# model has exactly such gradients: its image-code rows start equal (vocabulary extension sets new
# rows to the mean), so at step 1 every code logit is the same, the hidden states get a gradient of
# 0 + round-off, and the two layouts step by +-0.74 lr on 2-5% of the layer weights (measured 7.4e-3
# = 1.49 lr at step 2, on every run, from sign flips). Which bits flip depends on the CPU's kernels
# (oneDNN/MKL pick code paths by instruction set), which is why it passed on one machine and failed
# on another. Not a sharding bug: the float32 gradients agree to 1e-7 relative wherever they are
# not round-off.
#
# So these tests run in float64 (model and loss): gradients agree to about 1e-15, the Adam bound gives
# 5e5 x 1e-15 = 5e-10 per step, and two steps are held to atol 1e-9 (measured: 3e-13). A real sharding
# error (a wrong slice, a missing all-reduce, a wrong normaliser) moves weights by about lr = 5e-3.
EXACT = {"torch_dtype": "float64"}
ADAM_BOUND_2_STEPS = 1e-9


def _assert_same_weights(w1: dict, w2: dict, base: dict) -> int:
    """Equal to the fp64 Adam bound; returns how many tensors moved from ``base``."""
    moved = 0
    for name in w1:
        torch.testing.assert_close(w1[name], w2[name], atol=ADAM_BOUND_2_STEPS, rtol=0)
        moved += int(not torch.equal(w1[name], base[name].to(w1[name].dtype)))
    return moved


def test_two_processes_equal_one_process_same_global_batch(tiny_vl, tmp_path):
    one = base_config(tiny_vl, tmp_path / "one", per_device_train_batch_size=16, max_steps=2, **EXACT)
    two = base_config(tiny_vl, tmp_path / "two", per_device_train_batch_size=8, max_steps=2, **EXACT)
    _launch(one, tmp_path, "one", 1)
    _launch(two, tmp_path, "two", 2)
    w1, r1 = _load(tmp_path / "one")
    w2, r2 = _load(tmp_path / "two")
    assert json.loads((tmp_path / "two" / "world.json").read_text()) == {"num_processes": 2}
    assert r1 == pytest.approx(r2, abs=1e-6)
    assert next(iter(w1.values())).dtype == torch.float64
    base = QwenVLAdapter.load_model(tiny_vl, torch.float32).state_dict()
    assert _assert_same_weights(w1, w2, base) > 10                      # training really changed weights


def test_text_to_image_two_processes_equal_one_process(tmp_path):
    """The t2i backend under torchrun: rollouts, decoded images and rewards split over 2 processes give
    the same rewards and weights as 1 process with the same global batch (float64: see the note above
    the VL twin for why float32 cannot be held to this)."""
    from mmr1.fixtures.models import build_tiny_t2i
    from mmr1.imagegen.adapter import T2IAdapter

    setup = build_tiny_t2i(tmp_path / "t2i", extract=False, seed=2)
    captions = tmp_path / "captions.json"
    captions.write_text(json.dumps([f"a {c} {s}" for c in ("red", "green", "blue", "yellow") for s in ("circle", "square")]))
    plugin = tmp_path / "brightness.py"   # a dense image reward, so every group has an advantage
    plugin.write_text(
        "from mmr1 import hookimpl\n"
        "def brightness(completions, *, generated_images, **kw):\n"
        "    return [sum(im.convert('L').getdata()) / (255.0 * im.width * im.height) for im in generated_images]\n"
        "@hookimpl\n"
        "def register_rewards(register):\n"
        "    register('test_brightness', brightness)\n")

    def config(out, per_device):
        return {"model_name_or_path": str(setup["model"]), "model_adapter": "t2i", "rollout_backend": "t2i",
                "dataset": "captions", "dataset_path": str(captions), "template": "default",
                "rewards": ["test_brightness", "color_fidelity"], "plugins": [str(plugin)], "image_resolution": 32,
                "num_generations": 4, "per_device_train_batch_size": per_device, "max_completion_length": 16,
                "max_steps": 2, "beta": 0.04, "learning_rate": 5e-3, "seed": 7, "output_dir": str(tmp_path / out),
                "disable_tqdm": True, "log_completions": False, **EXACT}

    _launch(config("one", 16), tmp_path, "t2i-one", 1)
    _launch(config("two", 8), tmp_path, "t2i-two", 2)
    w1, r1 = _load(tmp_path / "one")
    w2, r2 = _load(tmp_path / "two")
    assert json.loads((tmp_path / "two" / "world.json").read_text()) == {"num_processes": 2}
    assert r1 == pytest.approx(r2, abs=1e-6)
    base = T2IAdapter.load_model(str(setup["model"]), torch.float32).state_dict()
    assert _assert_same_weights(w1, w2, base) > 5


def test_resume_gives_the_same_weights(tiny_vl, tmp_path, monkeypatch):
    """A run that crashes after train() saved checkpoint-2 resumes from it ('latest') to the straight run's weights."""
    straight = base_config(tiny_vl, tmp_path / "straight", max_steps=4)
    GRPOTrainer(build_config(straight)).train()
    first = base_config(tiny_vl, tmp_path / "resumed", max_steps=4, save_steps=2)
    train_until_crash(GRPOTrainer(build_config(first)), monkeypatch, after_step=2)
    assert [p.name for p in (tmp_path / "resumed").glob("checkpoint-*")] == ["checkpoint-2"]
    resumed = GRPOTrainer(build_config({**first, "resume_from_checkpoint": "latest"}))
    assert resumed.total_steps == 4
    resumed.train()
    assert resumed.global_step == 4
    a = QwenVLAdapter.load_model(tmp_path / "straight" / "final", torch.float32).state_dict()
    b = QwenVLAdapter.load_model(tmp_path / "resumed" / "final", torch.float32).state_dict()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=1e-5)
    metrics = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]


def test_metrics_and_completion_logs(tiny_vl, tmp_path):
    cfg = base_config(tiny_vl, tmp_path / "out", log_completions=True, num_completions_to_log=3)
    GRPOTrainer(build_config(cfg)).train()
    metrics = [json.loads(x) for x in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 2
    for key in ("reward", "reward_std", "rewards/accuracy", "rewards/format", "advantages/abs_mean", "loss",
                "entropy", "clip_ratio/region_mean", "completion_length", "frac_reward_zero_std",
                "time/rollout", "time/reward", "time/update", "learning_rate", "grad_norm"):
        assert key in metrics[0], key
    logged = [json.loads(x) for x in (tmp_path / "out" / "completions.jsonl").read_text().splitlines()]
    assert len(logged) == 6 and set(logged[0]["rewards"]) == {"accuracy", "format", "vowel_share"}
    assert (tmp_path / "out" / "final" / "config.json").is_file()


def test_tensorboard_tracker_gets_the_metrics(tiny_vl, tmp_path):
    cfg = base_config(tiny_vl, tmp_path / "out", report_to="tensorboard", run_name="tb-run")
    GRPOTrainer(build_config(cfg)).train()
    metrics = [json.loads(x) for x in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    from tensorboard_events import tensorboard_scalars

    scalars = tensorboard_scalars(tmp_path / "out" / "tb-run")
    for tag in ("reward", "rewards/accuracy", "loss", "learning_rate"):
        assert [step for step, _ in scalars[tag]] == [1, 2], tag
        assert [v for _, v in scalars[tag]] == pytest.approx([m[tag] for m in metrics], rel=1e-5, abs=1e-6), tag


def test_reward_exceptions_are_contained_and_counted(tiny_vl, tmp_path):
    plugin = tmp_path / "bad.py"
    plugin.write_text(
        "from mmr1 import hookimpl\n"
        "def flaky(completions, **kw):\n    raise RuntimeError('boom')\n"
        "@hookimpl\ndef register_rewards(register):\n    register('flaky_test_reward', flaky)\n")
    from mmr1.plugins import reset_plugin_manager

    try:
        cfg = base_config(tiny_vl, tmp_path / "out", rewards=["vowel_share", "flaky_test_reward"],
                          plugins=[TEST_REWARDS, str(plugin)])
        history = GRPOTrainer(build_config(cfg)).train()
    finally:
        reset_plugin_manager()
    assert history[-1]["rewards/flaky_test_reward/failures"] == 2
    assert history[-1]["rewards/vowel_share"] > 0                           # the other reward still counts


def test_freeze_vision_tower_keeps_it_fixed(tiny_vl, tmp_path):
    cfg = base_config(tiny_vl, tmp_path / "out", freeze_vision_tower=True)
    trainer = GRPOTrainer(build_config(cfg))
    before = {n: p.detach().clone() for n, p in trainer.policy.named_parameters()}
    trainer.train()
    after = dict(trainer.policy.named_parameters())
    vision = [n for n in before if ".visual." in f".{n}" and "merger" not in n]
    assert vision
    assert all(torch.equal(before[n], after[n]) for n in vision)
    assert any(not torch.equal(before[n], after[n]) for n in before if n not in vision)


def test_lora_trains_adapters_only(tiny_vl, tmp_path):
    cfg = base_config(tiny_vl, tmp_path / "out", use_peft=True, lora_r=4, lora_target_modules=["q_proj", "v_proj"],
                      beta=0.05)
    trainer = GRPOTrainer(build_config(cfg))
    trainable = [n for n, p in trainer.policy.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    history = trainer.train()
    assert "kl" in history[-1]
    assert (tmp_path / "out" / "final" / "config.json").is_file()


def test_scoring_encodes_only_the_prompts_of_the_micro_batch(tiny_vl):
    adapter, model = _vl(tiny_vl)
    rows = make_shapes_rows(3, seed=4, image_size=56)
    messages = [Template("t").messages(r["problem"], 1) for r in rows]
    prompts = adapter.encode_prompts(messages, [r["image"] for r in rows])
    seen = []
    handle = model.model.visual.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[0]))
    ids = torch.randint(0, 300, (2, 3))
    try:
        part = adapter.completion_logits(model, prompts, torch.tensor([2, 2]), ids, torch.ones_like(ids))
    finally:
        handle.remove()
    patches_per_image = int(prompts.extra["image_grid_thw"][2].prod())
    assert seen == [patches_per_image]                                  # one image through the vision tower
    alone = adapter.encode_prompts(messages[2:], [rows[2]["image"]])
    full = adapter.completion_logits(model, alone, torch.tensor([0, 0]), ids, torch.ones_like(ids))
    torch.testing.assert_close(part, full, atol=1e-5, rtol=1e-5)


def test_rollouts_never_sample_vision_placeholders(tiny_vl):
    from mmr1.rollout.base import SamplingParams
    from mmr1.rollout.hf import HFRollout

    adapter, model = _vl(tiny_vl)
    image_pad = model.config.image_token_id
    assert image_pad in adapter.suppressed_token_ids
    rows = make_shapes_rows(1, seed=6, image_size=56)
    prompts = adapter.encode_prompts([Template("t").messages(rows[0]["problem"], 1)], [rows[0]["image"]])

    def favour_image_pad(logits, step):
        logits[:, image_pad] = 1e4                                     # the model "wants" the placeholder
        return logits

    out = HFRollout(adapter).generate(model, prompts, torch.zeros(4, dtype=torch.long),
                                      SamplingParams(1.0, max_tokens=6, seeds=[1, 2, 3, 4]), logits_hook=favour_image_pad)
    assert not torch.isin(out.completion_ids, torch.tensor(adapter.suppressed_token_ids)).any()


def test_repetition_penalty_matches_the_ctrl_rule():
    from mmr1.rollout.sampling import apply_repetition_penalty

    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0]])
    out = apply_repetition_penalty(logits, torch.tensor([[0, 1, 1]]), 2.0)
    assert out.tolist() == [[1.0, -2.0, 0.5, 3.0]]                   # seen: 2/2, -1*2; unseen unchanged
