"""The VL demo in quick mode (a smoke test: a few steps of each phase, no claim about learning), and
the verdict every demo ends with. Learning itself is measured over seeds and threads by
``bench/demo_seeds.py`` (``bench/demo_seeds.md``)."""

import json
from pathlib import Path

import pytest
import yaml

from mmr1 import cli, demo
from mmr1.demo import run_vl_demo
from mmr1.verdicts import t2i_verdict, vl_verdict


def test_vl_demo_quick_smoke_runs_and_reports(tmp_path, capsys):
    summary = run_vl_demo(tmp_path / "demo", seed=0, quick=True)
    for key in ("accuracy_before", "accuracy_after", "format_before", "format_after"):
        assert 0.0 <= summary[key] <= 1.0
    assert (tmp_path / "demo" / "reward_curve.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert saved["accuracy_after"] == summary["accuracy_after"]
    metrics = (tmp_path / "demo" / "grpo" / "metrics.jsonl").read_text().splitlines()
    assert len(metrics) == summary["grpo_steps"]
    assert capsys.readouterr().out.rstrip().endswith("quick run: a smoke test, no verdict on learning")


VL_OK = {"accuracy_before": 0.25, "accuracy_after": 0.80, "format_before": 1.0, "format_after": 1.0}


@pytest.mark.parametrize("change, learned", [
    ({}, True),
    ({"accuracy_after": 0.75}, True),                 # the bar itself passes
    ({"accuracy_after": 0.74}, False),
    ({"accuracy_after": 0.3125}, False),              # a collapsed run
    ({"format_after": 0.94}, False),                  # right colours, broken format
])
def test_vl_verdict_says_plainly_when_a_run_did_not_learn(change, learned):
    ok, line = vl_verdict({**VL_OK, **change})
    assert ok is learned
    assert line.startswith("verdict: LEARNED" if learned else "verdict: DID NOT LEARN")
    assert f"{VL_OK['accuracy_before']:.3f} -> {change.get('accuracy_after', 0.8):.3f}" in line


T2I_OK = {"fidelity_before": 0.5, "fidelity_after": 0.9, "shape_before": 0.97, "shape_after": 0.95}


@pytest.mark.parametrize("change, learned, reason", [
    ({}, True, None),
    ({"shape_after": 0.92}, True, None),              # exactly 5 points down
    ({"shape_after": 0.91}, False, "shapes were lost"),
    ({"fidelity_after": 0.84}, False, "fidelity below the bar"),
])
def test_t2i_verdict_catches_low_fidelity_and_the_reward_hack(change, learned, reason):
    ok, line = t2i_verdict({**T2I_OK, **change})
    assert ok is learned
    assert line.startswith("verdict: LEARNED" if learned else "verdict: DID NOT LEARN")
    if reason:
        assert reason in line


def test_demo_command_exits_nonzero_when_a_demo_did_not_learn(monkeypatch, tmp_path, capsys):
    import mmr1.demo

    bad = {**VL_OK, "accuracy_after": 0.3, "plot": "p.png"}
    monkeypatch.setattr(mmr1.demo, "run_vl_demo", lambda *a, **k: bad)
    assert cli.main(["demo", "--only", "vl", "--out", str(tmp_path)]) == 1
    assert "verdict: DID NOT LEARN" in capsys.readouterr().out
    monkeypatch.setattr(mmr1.demo, "run_vl_demo", lambda *a, **k: {**VL_OK, "plot": "p.png"})
    assert cli.main(["demo", "--only", "vl", "--out", str(tmp_path)]) == 0


def test_demo_command_runs_both_parts_and_summarises_each(monkeypatch, tmp_path, capsys):
    import mmr1.demo
    import mmr1.imagegen.demo

    ran = []
    monkeypatch.setattr(mmr1.demo, "run_vl_demo", lambda out, **k: ran.append(out.name) or {**VL_OK, "plot": "v.png"})
    monkeypatch.setattr(mmr1.imagegen.demo, "run_t2i_demo",
                        lambda out, **k: ran.append(out.name) or {**T2I_OK, "shape_after": 0.5, "plot": "t.png"})
    assert cli.main(["demo", "--out", str(tmp_path)]) == 1          # the t2i part's shape accuracy fell
    out = capsys.readouterr().out
    assert ran == ["vl", "t2i"]
    assert "vision-language: held-out accuracy 0.250 -> 0.800 (format 1.00); plot v.png" in out
    assert "text-to-image: held-out colour fidelity 0.500 -> 0.900, shape accuracy 0.970 -> 0.500; plot t.png" in out
    assert out.count("verdict: LEARNED") == 1 and out.count("verdict: DID NOT LEARN") == 1


CONFIG = Path(__file__).resolve().parent.parent / "local_scripts" / "train" / "configs" / "demo_cpu.yaml"


def test_demo_cpu_yaml_matches_the_demo_settings():
    cfg = yaml.safe_load(CONFIG.read_text())
    assert cfg["num_generations"] == demo.GENERATIONS
    assert cfg["per_device_train_batch_size"] == demo.PROMPTS_PER_STEP * demo.GENERATIONS
    assert cfg["beta"] == demo.BETA and cfg["kl_approximator"] == "k3"
    assert cfg["max_completion_length"] == demo.MAX_TOKENS
