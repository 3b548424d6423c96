"""Run a short GRPO training from a JSON config (used by tests under `accelerate launch`).

Writes the final weights (state dict) and the per-step rewards next to the output folder.
"""

import json
import sys

import torch

from mmr1.config import build_config
from mmr1.grpo.trainer import GRPOTrainer


def main(config_json: str) -> None:
    torch.set_num_threads(1)
    data = json.loads(open(config_json).read())
    trainer = GRPOTrainer(build_config(data, where=config_json))
    history = trainer.train()
    acc = trainer.accelerator
    if acc.is_main_process:
        state = {k: v.detach().cpu() for k, v in trainer.policy.state_dict().items()}
        torch.save(state, data["output_dir"] + "/weights.pt")
        json.dump([h["reward"] for h in history], open(data["output_dir"] + "/rewards.json", "w"))
        json.dump({"num_processes": acc.num_processes}, open(data["output_dir"] + "/world.json", "w"))


if __name__ == "__main__":
    main(sys.argv[1])
