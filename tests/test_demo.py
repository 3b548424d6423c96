"""The demo pipeline end to end in quick mode (a few steps of each phase)."""

import json

from mmr1.demo import run_vl_demo


def test_vl_demo_quick_runs_and_reports(tmp_path):
    summary = run_vl_demo(tmp_path / "demo", seed=0, quick=True)
    for key in ("accuracy_before", "accuracy_after", "format_before", "format_after"):
        assert 0.0 <= summary[key] <= 1.0
    assert (tmp_path / "demo" / "reward_curve.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert saved["accuracy_after"] == summary["accuracy_after"]
    metrics = (tmp_path / "demo" / "grpo" / "metrics.jsonl").read_text().splitlines()
    assert len(metrics) == summary["grpo_steps"]
