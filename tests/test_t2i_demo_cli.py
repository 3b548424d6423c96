"""The text-to-image demo (quick mode) and the prepare-t2i / generate entry points."""

import json

import pytest
from PIL import Image

from mmr1.fixtures.models import build_tiny_causal_lm, build_tiny_t2i


def test_quick_demo_smoke_completes_and_writes_its_plot(tmp_path):
    from mmr1.imagegen.demo import run_t2i_demo

    summary = run_t2i_demo(tmp_path / "demo", seed=0, quick=True)
    for key in ("fidelity_before", "fidelity_after", "shape_accuracy_before", "shape_accuracy_after"):
        assert 0.0 <= summary[key] <= 1.0
    for key in ("plot", "samples_before", "samples_after"):
        assert Image.open(summary[key]).size[0] > 0
    assert (tmp_path / "demo" / "grpo" / "final" / "t2i.json").is_file()
    assert json.loads((tmp_path / "demo" / "summary.json").read_text())["quick"] is True


def test_demo_command_line_overrides_beta_and_steps(tmp_path):
    from mmr1.imagegen.demo import main

    main(["--quick", "--out", str(tmp_path / "d"), "--beta", "0", "--grpo-steps", "3"])
    summary = json.loads((tmp_path / "d" / "summary.json").read_text())
    assert summary["settings"]["beta"] == 0.0 and summary["settings"]["grpo_steps"] == 3
    metrics = (tmp_path / "d" / "grpo" / "metrics.jsonl").read_text().splitlines()
    assert len(metrics) == 3


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return build_tiny_t2i(tmp_path_factory.mktemp("t2i-cli"), extract=False, seed=6)


def test_prepare_main(tmp_path, setup, capsys):
    from mmr1.imagegen.cli import prepare_main
    from mmr1.imagegen.vocab import T2IVocab

    base = build_tiny_causal_lm(tmp_path / "base", hidden_size=16, num_hidden_layers=1, chat=False)
    assert prepare_main(["--model", str(base), "--out", str(tmp_path / "a"), "--image-tokenizer",
                         setup["image_tokenizer"]]) == 0
    vocab = T2IVocab.load(tmp_path / "a")
    assert vocab.codebook_size == 16 and vocab.image_tokenizer == setup["image_tokenizer"]
    assert prepare_main(["--model", str(base), "--out", str(tmp_path / "b"), "--codebook-size", "24"]) == 0
    assert T2IVocab.load(tmp_path / "b").codebook_size == 24
    capsys.readouterr()
    assert prepare_main(["--model", str(tmp_path / "nope"), "--out", str(tmp_path / "c"), "--codebook-size", "8"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert prepare_main(["--model", str(base), "--out", str(tmp_path / "d")]) == 2
    assert "--codebook-size" in capsys.readouterr().err
    assert prepare_main(["--model", str(base), "--out", str(tmp_path / "b"), "--codebook-size", "8"]) == 2
    assert "not empty" in capsys.readouterr().err            # no silent overwrite


def test_generate_main(tmp_path, setup, capsys):
    from mmr1.imagegen.cli import generate_main

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a blue square\na green triangle\n")
    out = tmp_path / "gen"
    assert generate_main(["--model", str(setup["model"]), "--prompt", "a red circle", "--prompts-file", str(prompts),
                          "--resolution", "32", "--cfg", "3", "--num-images", "2", "--batch-size", "2",
                          "--top-k", "8", "--seed", "1", "--out", str(out)]) == 0
    record = json.loads((out / "images.json").read_text())
    assert [r["prompt"] for r in record["images"]] == ["a red circle"] * 2 + ["a blue square"] * 2 + ["a green triangle"] * 2
    assert all(Image.open(out / r["file"]).size == (32, 32) for r in record["images"])
    assert (out / "grid.png").is_file()
    capsys.readouterr()
    assert generate_main(["--model", str(setup["model"]), "--prompt", "x", "--resolution", "30",
                          "--out", str(tmp_path / "bad")]) == 2
    assert "multiple" in capsys.readouterr().err
    assert generate_main(["--model", str(tmp_path / "none"), "--prompt", "x", "--out", str(tmp_path / "bad")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert generate_main(["--model", str(setup["model"]), "--out", str(tmp_path / "bad")]) == 2
    assert "no prompts" in capsys.readouterr().err
