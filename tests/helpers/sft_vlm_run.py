"""Run a short vision-language SFT from a JSON config (used by tests under torchrun).

``--fsdp`` launches it under accelerate's FSDP2 (FULL_SHARD). accelerate 1.15 turns FSDP on only for
accelerator device types (a CPU launch silently falls back to DDP), so the test sets the distributed
type and plugin on the process-wide state itself; preparing, sharding and gathering then run
accelerate's own FSDP2 code on gloo. Writes ``world.json``: process count and whether the live
parameters were shards.
"""

import json
import sys

import torch

from mmr1.config import build_config
from mmr1.sft.vlm import run_vlm_sft


def fsdp_accelerator():
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    accelerator = Accelerator()
    state = AcceleratorState()
    state.distributed_type = DistributedType.FSDP
    state.fsdp_plugin = FullyShardedDataParallelPlugin(fsdp_version=2, reshard_after_forward=True,
                                                       state_dict_type="FULL_STATE_DICT", auto_wrap_policy="NO_WRAP")
    return accelerator


def main(config_json: str, fsdp: bool) -> None:
    torch.set_num_threads(1)
    data = json.loads(open(config_json).read())
    accelerator = fsdp_accelerator() if fsdp else None
    sharded = []
    if accelerator is not None:
        prepare = accelerator.prepare

        def recording_prepare(*objects):
            prepared = prepare(*objects)
            sharded.extend(hasattr(p, "to_local") and p.to_local().shape != p.shape for p in prepared[0].parameters())
            return prepared

        accelerator.prepare = recording_prepare
    run_vlm_sft(build_config(data, where=config_json), accelerator=accelerator)
    if accelerator is None or accelerator.is_main_process:
        world = accelerator.num_processes if accelerator else 1
        json.dump({"num_processes": world, "sharded": bool(sharded) and all(sharded)},
                  open(data["output_dir"] + "/world.json", "w"))


if __name__ == "__main__":
    main(sys.argv[1], "--fsdp" in sys.argv[2:])
