"""`mmr1 eval` scores a model on a data set with the config's rewards."""

import json

import yaml

from mmr1.cli import main
from mmr1.fixtures.models import build_tiny_vlm


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


def test_eval_scores_text_to_image_models_and_saves_their_images(tmp_path, capsys):
    from PIL import Image

    from mmr1.fixtures.models import build_tiny_t2i

    setup = build_tiny_t2i(tmp_path / "t2i", extract=False, seed=4)
    captions = tmp_path / "captions.json"
    captions.write_text(json.dumps([{"caption": f"a {c} {s}"} for c in ("red", "blue") for s in ("circle", "square")]))
    config = tmp_path / "t2i.yaml"
    config.write_text(yaml.safe_dump({
        "model_name_or_path": str(setup["model"]), "model_adapter": "t2i", "rollout_backend": "t2i",
        "dataset": "captions", "dataset_path": str(captions), "template": "default",
        "rewards": ["color_fidelity"], "image_tokenizer": setup["image_tokenizer"], "image_resolution": 32,
        "num_generations": 2, "per_device_train_batch_size": 2, "max_completion_length": 16}))
    records = tmp_path / "scores.jsonl"
    assert main(["eval", str(config), "--output", str(records), "--batch-size", "3", "--temperature", "1.0"]) == 0
    out = capsys.readouterr().out
    means = json.loads(out[out.index("{"):])
    lines = [json.loads(x) for x in records.read_text().splitlines()]
    assert len(lines) == 4
    scores = [r["rewards"]["color_fidelity"] for r in lines]
    assert all(s in (0.0, 1.0) for s in scores)
    assert means["color_fidelity"] == sum(scores) / 4
    # every image was decoded (32 px, 4x4 tokens of an 8 px VQ) and saved where the record says
    for r in lines:
        image = Image.open(r["image"])
        assert image.size == (32, 32)
        assert r["image"].startswith(str(records) + ".images")
