"""Training and evaluation call rewards with the same columns (one ``reward_columns``)."""

import json

import torch

from mmr1.config import build_config
from mmr1.evaluate import evaluate
from mmr1.grpo.trainer import GRPOTrainer
from test_grpo_trainer import base_config

RECORDER = '''
import json, os

def record(completions, **columns):
    with open(os.environ["MMR1_TEST_COLUMNS"], "a") as f:
        f.write(json.dumps({"n": len(completions), "keys": sorted(columns),
                            "ids": [len(c) for c in columns["completion_ids"]],
                            "solutions": columns["solution"]}) + "\\n")
    return [0.0] * len(completions)
'''


def test_training_and_evaluation_pass_the_same_columns(tiny_vl, tmp_path, monkeypatch):
    (tmp_path / "recorder.py").write_text(RECORDER)
    log = tmp_path / "columns.jsonl"
    monkeypatch.setenv("MMR1_TEST_COLUMNS", str(log))
    config = build_config(base_config(tiny_vl, tmp_path / "out", rewards=[f"{tmp_path / 'recorder.py'}:record"],
                                      max_steps=1))
    trainer = GRPOTrainer(config)
    trajectory, _ = trainer.rollout()
    rows = [trainer.dataset[i] for i in range(3)]
    evaluate(trainer.adapter, trainer.policy, rows, trainer.template, trainer.rewards,
             max_new_tokens=4, device="cpu")
    train_call, eval_call = [json.loads(line) for line in log.read_text().splitlines()]
    assert train_call["keys"] == eval_call["keys"]              # trainer_state is None outside training
    assert {"prompts", "images", "solution", "seen_image_sizes", "box_frame", "completion_ids"} <= set(eval_call["keys"])
    # completion_ids are each completion's own tokens (padding left out), in both
    assert train_call["ids"] == trajectory.completion_mask.sum(1).tolist()
    assert eval_call["n"] == 3 and len(eval_call["ids"]) == 3 and all(0 < n <= 4 for n in eval_call["ids"])
    assert eval_call["solutions"] == [r["solution"] for r in rows]
