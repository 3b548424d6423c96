"""The ``mmr1`` command: ``check``, ``make-tiny``, and ``train`` refusing bad configs before any model loads."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest
from PIL import Image

from mmr1.cli import main
from mmr1.fixtures.models import build_tiny_vlm


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return build_tiny_vlm(tmp_path_factory.mktemp("tiny") / "m")


pytestmark = pytest.mark.usefixtures("fresh_plugins")


def _png(path: Path, colour=(255, 0, 0)) -> Path:
    Image.new("RGB", (8, 8), colour).save(path)
    return path


def _config(folder: Path, text: str, name: str = "run.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# what the configs below hold unless a test sets it: the rows of _good_data, 2 completions a prompt, 2 a device
BASE_SETTINGS = {"dataset_path": "good.jsonl", "num_generations": 2, "per_device_train_batch_size": 2}


def _config_for(folder: Path, model, **settings) -> Path:
    """A ``run.yaml`` for ``model``: one ``key: value`` line a setting, ``settings`` over ``BASE_SETTINGS``."""
    keys = {"model_name_or_path": model, **BASE_SETTINGS, **settings}
    return _config(folder, "".join(f"{key}: {value}\n" for key, value in keys.items()))


def _good_data(folder: Path) -> Path:
    _png(folder / "red.png")
    _png(folder / "blue.png", (0, 0, 255))
    path = folder / "good.jsonl"
    rows = [{"problem": "What colour?", "solution": "red", "image": "red.png"},
            {"problem": "And now?", "solution": "blue", "image": ["blue.png"]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _run(capsys, *argv):
    capsys.readouterr()
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -------------------------------------------------------------------------------------------- check


def test_check_reports_every_bad_row_with_its_number(tmp_path, tiny_model, capsys):
    _png(tmp_path / "good.png")
    (tmp_path / "x.png").write_bytes(b"this is not a png at all")
    lines = [
        json.dumps({"problem": "fine", "solution": "1", "image": "good.png"}),             # 1
        json.dumps({"problem": "missing image", "solution": "2", "image": "missing.png"}),  # 2
        json.dumps({"problem": "corrupt image", "solution": "3", "image": "x.png"}),        # 3
        json.dumps({"problem": "no solution", "image": "good.png"}),                       # 4
        '{"problem": "truncated", "solution": ',                                            # 5
        json.dumps({"problem": "fine too", "solution": "6", "image": ["good.png"]}),        # 6
    ]
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = _config_for(tmp_path, tiny_model, dataset_path="data.jsonl")
    code, out, _ = _run(capsys, "check", str(config))
    assert code != 0
    assert "config OK" not in out
    assert "4 problem(s)" in out
    where = f"{data}, row"
    assert re.search(rf"{re.escape(where)} 2: image file not found: .*missing\.png", out)
    assert re.search(rf"{re.escape(where)} 3: cannot read image .*x\.png", out)
    assert f"{where} 4: missing field 'solution'" in out
    assert f"{where} 5: malformed JSON line" in out
    for good_row in (1, 6):
        assert f"{where} {good_row}:" not in out


def test_check_good_config_is_ok(tmp_path, tiny_model, capsys):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    _good_data(data_dir)
    config = _config_for(tmp_path, tiny_model, dataset_path="data/good.jsonl", template="r1v",
                         rewards="[accuracy, format]", per_device_train_batch_size=4)
    code, out, _ = _run(capsys, "check", str(config))
    assert code == 0, out
    assert "config OK" in out
    assert "train data: 2 usable rows, 0 problem(s)" in out


def test_check_reports_config_problems(tmp_path, tiny_model, capsys):
    _good_data(tmp_path)
    config = _config_for(tmp_path, tiny_model, learnng_rate="1e-5", loss_type="ppo")
    code, out, _ = _run(capsys, "check", str(config), "--bogus_option", "1")
    assert code != 0 and "config OK" not in out
    assert "unknown key 'learnng_rate'" in out and "Did you mean 'learning_rate'?" in out
    assert "loss_type must be one of grpo, bnpo, dr_grpo, dapo" in out
    assert "--bogus_option" in out


def test_check_reports_unknown_reward_and_impossible_batch_together(tmp_path, tiny_model, capsys):
    _good_data(tmp_path)
    config = _config_for(tmp_path, tiny_model, rewards="[acuracy, format]", num_generations=3,
                         per_device_train_batch_size=4)
    code, out, _ = _run(capsys, "check", str(config))
    assert code != 0 and "config OK" not in out
    assert "2 problem(s)" in out
    assert "unknown reward 'acuracy'" in out and "Did you mean 'accuracy'?" in out
    assert "not divisible by num_generations (3)" in out
    assert "per_device_train_batch_size could be 3, 6, 9, 12" in out


def test_check_unknown_template_and_missing_model(tmp_path, capsys):
    _good_data(tmp_path)
    config = _config_for(tmp_path, tmp_path / "no_model_here", template="r1vv")
    code, out, _ = _run(capsys, "check", str(config))
    assert code != 0
    assert "template: unknown template 'r1vv'. Did you mean 'r1v'?" in out
    assert "model:" in out and "no_model_here" in out


def test_check_batch_arithmetic_counts_processes(tmp_path, tiny_model, capsys):
    _good_data(tmp_path)
    config = _config_for(tmp_path, tiny_model, num_generations=4)
    code, out, _ = _run(capsys, "check", str(config))
    assert code != 0 and "not divisible by num_generations (4)" in out
    code, out, _ = _run(capsys, "check", str(config), "--num-processes", "2")
    assert code == 0 and "config OK" in out


def test_check_missing_data_file(tmp_path, tiny_model, capsys):
    config = _config_for(tmp_path, tiny_model, dataset_path="nowhere.jsonl")
    code, out, _ = _run(capsys, "check", str(config))
    assert code != 0 and "train data:" in out and "nowhere.jsonl" in out


def test_check_config_plugin_reward(tmp_path, tiny_model, capsys):
    _good_data(tmp_path)
    (tmp_path / "my_rewards.py").write_text(textwrap.dedent('''
        from mmr1 import hookimpl


        @hookimpl
        def register_rewards(register):
            register("always_one", lambda completions, **kw: [1.0] * len(completions))
        '''), encoding="utf-8")
    config = _config_for(tmp_path, tiny_model, plugins="[./my_rewards.py]", rewards="[always_one]")
    code, out, _ = _run(capsys, "check", str(config))
    assert code == 0 and "config OK" in out


# ---------------------------------------------------------------------------------------- make-tiny


def test_make_tiny_builds_a_model_that_reloads(tmp_path, capsys):
    from transformers import AutoConfig, AutoModelForImageTextToText

    from mmr1.models.adapters import resolve_adapter
    from mmr1.models.processors import load_processor

    out_dir = tmp_path / "made"
    code, out, _ = _run(capsys, "make-tiny", "qwen2_5_vl", str(out_dir), "--text_hidden", "32", "--seed=1")
    assert code == 0 and f"built tiny qwen2_5_vl in {out_dir}" in out
    config = AutoConfig.from_pretrained(out_dir)
    assert config.model_type == "qwen2_5_vl"
    assert config.text_config.hidden_size == 32
    model = AutoModelForImageTextToText.from_pretrained(out_dir)
    assert sum(p.numel() for p in model.parameters()) > 0
    processor = load_processor(str(out_dir))
    assert processor.tokenizer("hello")["input_ids"]
    assert resolve_adapter(str(out_dir)).__name__ == "QwenVLAdapter"


def test_make_tiny_unknown_kind(tmp_path, capsys):
    assert main(["make-tiny", "qwen9", str(tmp_path / "x")]) == 2
    assert "unknown tiny model kind 'qwen9'" in capsys.readouterr().err


def test_make_tiny_unknown_option_names_the_builders_options(tmp_path, capsys):
    assert main(["make-tiny", "causal_lm", str(tmp_path / "x"), "--hidden", "32"]) == 2
    err = capsys.readouterr().err
    assert "unknown option --hidden" in err and "--hidden_size" in err
    assert not (tmp_path / "x").exists()


# -------------------------------------------------------- train refuses bad configs before loading models


def _forbid_model_loading(monkeypatch):
    from mmr1.models.qwen_vl import QwenVLAdapter

    def no_loading(*args, **kwargs):
        raise AssertionError("model loaded")

    # the processor (tokenizer + image processor, no weights) loads in the pre-flight: prompts are measured
    monkeypatch.setattr(QwenVLAdapter, "load_model", classmethod(no_loading))


def test_train_bad_key_exits_2_before_the_model(tmp_path, monkeypatch, capsys):
    _forbid_model_loading(monkeypatch)
    _good_data(tmp_path)
    missing_model = tmp_path / "no_such_model"
    config = _config_for(tmp_path, missing_model, learnng_rate="1e-5", output_dir=tmp_path / "out")
    code, _, err = _run(capsys, "train", str(config))
    assert code == 2
    assert "mmr1 train: error:" in err
    assert "unknown key 'learnng_rate'" in err and "Did you mean 'learning_rate'?" in err
    assert "no_such_model" not in err and "Traceback" not in err
    assert not missing_model.exists()


def test_train_bad_override_exits_2(tmp_path, capsys):
    config = _config(tmp_path, f"model_name_or_path: {tmp_path / 'no_such_model'}\n")
    code, _, err = _run(capsys, "train", str(config), "--num_generation", "4")
    assert code == 2 and "--num_generation" in err and "Did you mean 'num_generations'?" in err


def test_train_impossible_batch_exits_2_before_the_model(tmp_path, monkeypatch, capsys):
    _forbid_model_loading(monkeypatch)
    _good_data(tmp_path)
    config = _config_for(tmp_path, tmp_path / "no_such_model", num_generations=3, per_device_train_batch_size=4,
                         output_dir=tmp_path / "out")
    code, _, err = _run(capsys, "train", str(config))
    assert code == 2
    assert "per_device_train_batch_size (4)" in err and "not divisible by num_generations (3)" in err
    assert "model loaded" not in err
    # every problem at once: the missing model folder is named in the same report, as one line
    assert "no_such_model': no such folder" in err and "2 problem(s)" in err


def test_train_unknown_reward_exits_2_before_the_model(tmp_path, tiny_model, monkeypatch, capsys):
    _forbid_model_loading(monkeypatch)
    _good_data(tmp_path)
    config = _config_for(tmp_path, tiny_model, rewards="[acuracy]", max_steps=1, output_dir=tmp_path / "out")
    code, _, err = _run(capsys, "train", str(config))
    assert code == 2
    assert "unknown reward 'acuracy'" in err and "Did you mean 'accuracy'?" in err
    assert "model loaded" not in err
    assert not (tmp_path / "out" / "final").exists()


def test_train_bad_data_exits_2_before_the_model(tmp_path, tiny_model, monkeypatch, capsys):
    _forbid_model_loading(monkeypatch)
    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps({"problem": "no solution"}) + "\n", encoding="utf-8")
    config = _config_for(tmp_path, tiny_model, dataset_path="bad.jsonl", output_dir=tmp_path / "out")
    code, _, err = _run(capsys, "train", str(config))
    assert code == 2
    assert f"{data}, row 1: missing field 'solution'" in err
