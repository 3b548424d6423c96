"""`mmr1 eval` scores a model on a data set with the config's rewards."""

import json

import yaml

from mmr1.cli import main
from mmr1.models.tiny import build_tiny_vlm


def test_eval_prints_reward_means_and_writes_records(tmp_path, capsys):
    model = build_tiny_vlm(tmp_path / "m", seed=1)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "model_name_or_path": str(model), "dataset": "shapes", "dataset_kwargs": {"n": 6, "seed": 3},
        "template": "demo", "rewards": ["accuracy", "format"], "max_completion_length": 8,
        "num_generations": 2, "per_device_train_batch_size": 2}))
    records = tmp_path / "records.jsonl"
    assert main(["eval", str(config), "--output", str(records), "--batch-size", "4"]) == 0
    out = capsys.readouterr().out
    means = json.loads(out[out.index("{"):])
    assert set(means) == {"accuracy", "format"} and all(0.0 <= v <= 1.0 for v in means.values())
    lines = [json.loads(x) for x in records.read_text().splitlines()]
    assert len(lines) == 6 and {"problem", "solution", "completion", "rewards"} <= set(lines[0])
    # a random model writes neither the format nor the right colour
    assert means["format"] == sum(r["rewards"]["format"] for r in lines) / 6
