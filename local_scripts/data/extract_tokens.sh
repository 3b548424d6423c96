#!/usr/bin/env bash
# Encode a captioned image list into image codes for text-to-image pretraining / SFT / GRPO
# (SimpleAR's token extraction). Copy this file and edit the variables; every path is relative
# to where you run it, or given in the environment.
#
# Input:  DATA, a JSON list of {"image_path": ..., "caption": ...} (image paths relative to the JSON's folder)
# Output: OUT/<shard>/<index>.npy (codes, 1x1xHxW) + .txt/.json captions, and OUT/meta.json
#         listing {code_path, label_path} pairs. Rerunning resumes: finished images are skipped.
#
# The Cosmos tokenizer folder holds the published TorchScript files encoder.jit and decoder.jit
# (e.g. nvidia/Cosmos-Tokenizer-DI16x16, downloaded beforehand). For the CPU demo use a VQ
# tokenizer instead: TOKENIZER=vq:runs/vq RESOLUTION=32 NUM_PROCESSES=1.
set -euo pipefail

command -v mmr1 >/dev/null || { echo "mmr1 is not installed in this environment (pip install -e .)" >&2; exit 1; }

DATA=${DATA:-data/t2i/meta.json}
OUT=${OUT:-data/t2i/tokens}
TOKENIZER=${TOKENIZER:-cosmos:checkpoints/Cosmos-Tokenizer-DI16x16}
RESOLUTION=${RESOLUTION:-512}          # 512 for pretraining, 1024 for SFT (SimpleAR)
BATCH_SIZE=${BATCH_SIZE:-8}
NUM_PROCESSES=${NUM_PROCESSES:-8}      # one per GPU; rows are split between processes
MAIN_PROCESS_PORT=${MAIN_PROCESS_PORT:-29511}
DTYPE=${DTYPE:-}                       # cosmos only: bfloat16 on GPUs (as published); empty = float32

accelerate launch \
    --num_processes "${NUM_PROCESSES}" \
    --main_process_port "${MAIN_PROCESS_PORT}" \
    "$(command -v mmr1)" tokenize \
    --data "${DATA}" \
    --out "${OUT}" \
    --tokenizer "${TOKENIZER}" \
    --resolution "${RESOLUTION}" \
    --batch-size "${BATCH_SIZE}" \
    ${DTYPE:+--dtype "${DTYPE}"} \
    "$@"
