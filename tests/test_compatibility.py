"""``mmr1 check`` pairs the model with its rollout backend and the rewards with what the rollouts provide.

A text-to-image model on the default ``hf`` backend would generate text for minutes while every image
reward fails; a text model on ``t2i`` cannot be driven at all. Both are refused before any weights load.
"""

from __future__ import annotations

import json
import textwrap

import pytest

from mmr1.cli import main
from mmr1.fixtures.models import build_tiny_t2i

pytestmark = pytest.mark.usefixtures("fresh_plugins")


@pytest.fixture(scope="module")
def t2i_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("t2i-pairing")
    built = build_tiny_t2i(root, extract=False, seed=2)
    (root / "captions.json").write_text(json.dumps(["a red circle", "a blue square"]))
    return root, built


def _check(capsys, path, *extra) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["check", str(path), *extra])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _t2i_config(root, built, backend: str, rewards: str = "[color_fidelity]"):
    path = root / f"{backend}.yaml"
    path.write_text(textwrap.dedent(f"""\
        model_name_or_path: {root / built['model']}
        dataset: captions
        dataset_path: captions.json
        template: t2i
        image_tokenizer: vq:{root / built['vq']}
        rewards: {rewards}
        rollout_backend: {backend}
        num_generations: 2
        per_device_train_batch_size: 2
        max_steps: 1
        """))
    return path


def _vl_config(folder, model, extra: str):
    """A one-row config for the tiny VL model, with ``extra`` YAML lines."""
    (folder / "data.jsonl").write_text(json.dumps({"problem": "a red circle", "solution": "1"}) + "\n")
    path = folder / "run.yaml"
    path.write_text(textwrap.dedent(f"""\
        model_name_or_path: {model}
        dataset_path: data.jsonl
        num_generations: 2
        per_device_train_batch_size: 2
        max_steps: 1
        """) + extra + "\n")
    return path


def test_a_text_to_image_model_on_the_hf_backend_is_refused_with_the_fix(capsys, t2i_folder):
    root, built = t2i_folder
    code, out = _check(capsys, _t2i_config(root, built, "hf"))
    assert code != 0
    assert "needs rollout_backend t2i" in out and "set rollout_backend: t2i" in out
    assert "reward 'color_fidelity' needs generated_images" in out


def test_the_same_model_on_the_t2i_backend_passes(capsys, t2i_folder):
    root, built = t2i_folder
    code, out = _check(capsys, _t2i_config(root, built, "t2i"))
    assert code == 0, out
    assert "config OK" in out


def test_an_image_reward_on_a_text_rollout_is_refused(capsys, tmp_path, tiny_vl):
    code, out = _check(capsys, _vl_config(tmp_path, tiny_vl, "rewards: [format, color_fidelity]"))
    assert code != 0
    assert "reward 'color_fidelity' needs generated_images" in out
    code, out = _check(capsys, tmp_path / "run.yaml", "--rewards", "[format]")
    assert code == 0, out


def test_a_text_model_on_the_t2i_backend_is_refused(capsys, tmp_path, tiny_vl):
    code, out = _check(capsys, _vl_config(tmp_path, tiny_vl, "rewards: [format]\nrollout_backend: t2i"))
    assert code != 0
    assert "rollout_backend 't2i' works only with model adapter 't2i'" in out
