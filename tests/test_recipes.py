"""Recipes: every config parses and resolves; scripts are valid bash with no absolute paths."""

import json
import re
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from mmr1.cli import main
from mmr1.config import load_config

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "local_scripts").rglob("*.sh"))
CONFIGS = sorted((ROOT / "local_scripts" / "train" / "configs").glob("*.yaml"))
ABSOLUTE = re.compile(r"(?<![\w.$}])/(home|mnt|data|root|usr/local|opt|workspace|nfs|cpfs|jfs)\b")


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_is_valid_bash_without_absolute_paths(script):
    subprocess.run(["bash", "-n", str(script)], check=True)
    assert not ABSOLUTE.search(script.read_text()), script


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_config_parses_with_known_keys(config):
    assert not ABSOLUTE.search(config.read_text()), config
    cfg = load_config(config)
    assert cfg.rewards


@pytest.mark.parametrize("recipe", ["qwen25vl_count", "qwen25vl_grounding", "qwen25vl_ocr", "qwen25vl_detection"])
def test_vl_recipe_checks_clean_on_a_tiny_model(recipe, tmp_path, tiny_vl_model, capsys):
    """`mmr1 check` resolves every name of the recipe against a tiny model and matching data."""
    image = tmp_path / "img.png"
    Image.new("RGB", (56, 56), (200, 30, 30)).save(image)
    solution = {"qwen25vl_count": 3, "qwen25vl_grounding": [1, 2, 30, 40], "qwen25vl_ocr": "STOP",
                "qwen25vl_detection": json.dumps([{"bbox_2d": [1, 2, 30, 40], "label": "cup"}])}[recipe]
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps({"problem": "q", "solution": solution, "image": image.name}) + "\n")
    config = ROOT / "local_scripts" / "train" / "configs" / f"{recipe}.yaml"
    code = main(["check", str(config), "--model_name_or_path", tiny_vl_model, "--dataset_path", str(data),
                 "--num-processes", "8"])
    assert code == 0, capsys.readouterr().out
    assert "config OK" in capsys.readouterr().out


@pytest.fixture(scope="module")
def tiny_vl_model(tmp_path_factory):
    from mmr1.fixtures.models import build_tiny_vlm

    return str(build_tiny_vlm(tmp_path_factory.mktemp("recipe") / "m"))


def test_t2i_demo_config_matches_the_demo_settings():
    """configs/t2i_demo.yaml re-runs the demo's GRPO half: its keys must be the demo's own."""
    from mmr1.imagegen.demo import FULL

    config = load_config(ROOT / "local_scripts/train/configs/t2i_demo.yaml")
    assert config.beta == FULL["beta"]
    assert config.learning_rate == FULL["grpo_lr"]
    assert config.max_steps == FULL["grpo_steps"]
    assert config.num_generations == FULL["generations"]
    assert config.per_device_train_batch_size == FULL["prompts_per_step"] * FULL["generations"]
