#!/usr/bin/env bash
# Qwen2.5-VL GRPO: detection. Edit local_scripts/train/configs/qwen25vl_detection.yaml or pass --key value.
#   MODEL=path/or/hub-id DATA=path/to/train.jsonl bash local_scripts/train/qwen25vl_detection.sh
# Multi-node: NUM_MACHINES=2 MACHINE_RANK=0|1 MAIN_PROCESS_IP=<rank-0 host> on every machine.
set -euo pipefail
source "$(dirname "$0")/launch.sh"
mmr1_launch "$MMR1_ROOT/local_scripts/train/configs/qwen25vl_detection.yaml" \
  --model_name_or_path "${MODEL:-Qwen/Qwen2.5-VL-3B-Instruct}" \
  --dataset_path "${DATA:-data/detection/train.jsonl}" \
  --output_dir "${OUT:-outputs/qwen25vl_detection}" "$@"
