"""The ``t2i`` rollout backend and a GRPO run with adapter ``t2i`` through GRPOTrainer."""

import json

import pytest
import torch
from PIL import Image

from random_models import random_t2i

from mmr1.config import build_config
from mmr1.imagegen.adapter import T2IAdapter
from mmr1.imagegen.rollout import T2IRollout
from mmr1.fixtures.models import build_tiny_t2i
from mmr1.rollout.base import SamplingParams


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("t2i-rollout")
    s = build_tiny_t2i(root, extract=False, seed=2)
    captions = root / "captions.json"
    captions.write_text(json.dumps(["a red circle", {"caption": "a blue square"}, "a green triangle",
                                    "a yellow circle"]))
    s["captions"] = captions
    return s


@pytest.fixture(scope="module")
def adapter_model(setup):
    return random_t2i(setup["model"], seed=1, scale=0.5)


def _prompts(adapter, captions):
    return adapter.encode_prompts([[{"role": "user", "content": c}] for c in captions])


def _config(**over):
    data = {"image_resolution": 32, "max_completion_length": 16}
    data.update(over)
    return build_config(data)


def test_rollout_writes_exactly_hw_visual_tokens_and_decodes_images(adapter_model):
    adapter, model = adapter_model
    backend = T2IRollout(adapter, None, config=_config())     # image tokenizer from t2i.json
    prompts = _prompts(adapter, ["a red circle", "a big green square on the left"])
    index = torch.tensor([0, 0, 0, 1, 1, 1])
    out = backend.generate(model, prompts, index, SamplingParams(max_tokens=3, seeds=list(range(6))))
    assert out.completion_ids.shape == (6, 16)                  # (32 / 8)^2, whatever max_tokens said
    assert bool(adapter.vocab.is_visual(out.completion_ids).all())
    assert out.completion_mask.all() and not out.is_truncated.any()
    images = out.extras["generated_images"]
    assert len(images) == 6 and all(isinstance(im, Image.Image) and im.size == (32, 32) for im in images)
    # the images are the decoded codes
    codes = adapter.vocab.id_to_code(out.completion_ids).reshape(-1, 4, 4)
    assert images[0].tobytes() == backend.image_tokenizer.decode(codes[:1])[0].tobytes()
    # per-completion seeds: the same completion whatever the batch layout
    alone = backend.generate(model, _prompts(adapter, ["a big green square on the left"]), torch.tensor([0]),
                             SamplingParams(seeds=[4]))
    assert torch.equal(alone.completion_ids[0], out.completion_ids[4])


@pytest.mark.parametrize("cfg", [1.0, 3.0])
@pytest.mark.parametrize("settings", [dict(temperature=0.0), dict(temperature=1.0),
                                      dict(temperature=0.7, top_k=10, top_p=0.9)], ids=["greedy", "t1", "filtered"])
def test_rollout_and_generate_image_tokens_are_one_decoder(adapter_model, cfg, settings):
    """The same prompts, seeds and settings give the same codes in a rollout and in generate_image_tokens."""
    from mmr1.imagegen.sampling import generate_image_tokens
    from mmr1.rollout.sampling import completion_seed

    adapter, model = adapter_model
    backend = T2IRollout(adapter, None, config=_config(rollout_cfg_scale=cfg))
    captions = ["a red circle", "a blue triangle at the top"]
    seeds = [completion_seed(5, 0, i) for i in range(4)]
    out = backend.generate(model, _prompts(adapter, captions), torch.tensor([0, 0, 1, 1]),
                           SamplingParams(seeds=seeds, **settings))
    ref = generate_image_tokens(model, adapter.vocab, captions, 16, tokenizer=adapter.tokenizer, cfg=cfg,
                                seed=5, num_generations=2, **settings)
    assert torch.equal(out.completion_ids, ref.token_ids(adapter.vocab))


def test_guided_rollouts_differ_from_unguided_and_are_reproducible(adapter_model):
    adapter, model = adapter_model
    backend = T2IRollout(adapter, None, config=_config(rollout_cfg_scale=3.0))
    captions = ["a red circle", "a blue triangle at the top"]
    out = backend.generate(model, _prompts(adapter, captions), torch.tensor([0, 1]),
                           SamplingParams(temperature=0.0, seeds=[0, 1]))
    unguided = T2IRollout(adapter, None, config=_config()).generate(
        model, _prompts(adapter, captions), torch.tensor([0, 1]), SamplingParams(temperature=0.0))
    assert not torch.equal(unguided.completion_ids, out.completion_ids)
    # sampling with guidance stays inside the code range and is reproducible
    s1 = backend.generate(model, _prompts(adapter, captions), torch.tensor([0, 0, 1]), SamplingParams(seeds=[5, 6, 7]))
    s2 = backend.generate(model, _prompts(adapter, captions), torch.tensor([0, 0, 1]), SamplingParams(seeds=[5, 6, 7]))
    assert torch.equal(s1.completion_ids, s2.completion_ids)
    assert bool(adapter.vocab.is_visual(s1.completion_ids).all())


def test_rollout_config_errors(adapter_model, setup):
    adapter, _ = adapter_model
    with pytest.raises(ValueError, match="multiple of the image tokenizer's downsample factor 8"):
        T2IRollout(adapter, None, config=_config(image_resolution=36))
    with pytest.raises(Exception, match="/nonexistent/vq"):
        T2IRollout(adapter, None, config=_config(image_tokenizer="vq:/nonexistent/vq"))


def test_grpo_with_t2i_adapter_updates_weights_and_rewards_see_images(setup, tmp_path):
    from mmr1.grpo.trainer import GRPOTrainer

    plugin = tmp_path / "image_size_reward.py"
    plugin.write_text(
        "from mmr1 import hookimpl\n"
        "def image_check(completions, *, generated_images, completion_ids, caption, **kw):\n"
        "    assert len(generated_images) == len(completions) == len(completion_ids) == len(caption)\n"
        "    assert all(im.size == (32, 32) and len(ids) == 16 for im, ids in zip(generated_images, completion_ids))\n"
        "    return [im.convert('L').getpixel((16, 16)) / 255.0 for im in generated_images]\n"
        "@hookimpl\n"
        "def register_rewards(register):\n"
        "    register('t2i_test_image_check', image_check)\n")
    config = build_config({
        "model_name_or_path": str(setup["model"]), "model_adapter": "t2i", "rollout_backend": "t2i",
        "dataset": "captions", "dataset_path": str(setup["captions"]), "template": "default",
        "rewards": ["color_fidelity", "t2i_test_image_check"], "plugins": [str(plugin)],
        "image_resolution": 32, "num_generations": 4, "per_device_train_batch_size": 8,
        "max_completion_length": 16, "max_steps": 2, "beta": 0.04, "learning_rate": 5e-3, "seed": 3,
        "output_dir": str(tmp_path / "run"), "disable_tqdm": True,
    })
    trainer = GRPOTrainer(config)
    before = {k: v.detach().clone() for k, v in trainer.policy.state_dict().items()}
    history = trainer.train()
    assert len(history) == 2
    assert history[-1]["rewards/t2i_test_image_check/failures"] == 0
    assert history[-1]["rewards/color_fidelity/failures"] == 0
    assert history[-1]["completion_length"] == 16 and history[-1]["truncated_fraction"] == 0
    changed = sum((before[k] - v).abs().sum().item() for k, v in trainer.policy.state_dict().items())
    assert changed > 0
    final = tmp_path / "run" / "final"
    assert (final / "t2i.json").is_file()                      # a loadable text-to-image folder
    assert T2IAdapter.load_processor(final).vocab == trainer.adapter.vocab
    logged = [json.loads(line) for line in (tmp_path / "run" / "completions.jsonl").read_text().splitlines()]
    assert logged and logged[0]["completion"] == "<image 4x4>"
