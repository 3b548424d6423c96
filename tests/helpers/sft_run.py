"""Run a short text-to-image SFT from a JSON config (used by tests under torchrun).

Writes the per-step losses next to the output folder (main process).
"""

import json
import sys

import torch

from mmr1.config import build_config
from mmr1.sft.t2i import run_t2i_sft


def main(config_json: str) -> None:
    torch.set_num_threads(1)
    data = json.loads(open(config_json).read())
    summary = run_t2i_sft(build_config(data, where=config_json))
    if summary is not None and "losses" in summary:
        json.dump(summary["losses"], open(data["output_dir"] + "/losses.json", "w"))


if __name__ == "__main__":
    main(sys.argv[1])
