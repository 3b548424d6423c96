#!/usr/bin/env bash
# SimpleAR pretrain / SFT of Qwen2.5-0.5B-Instruct on Cosmos DV8x16x16 tokens.
# Edit local_scripts/train/configs/simplear_sft.yaml or pass --key value.
#   BASE_MODEL=path/to/Qwen2.5-0.5B-Instruct COSMOS=path/to/Cosmos-Tokenizer-DV8x16x16 \
#   TOKENS=data/tokens/meta.json bash local_scripts/train/simplear_sft.sh
# Tokens come from `mmr1 tokenize --data images.json --out data/tokens --tokenizer cosmos:$COSMOS
# --resolution 512` (local_scripts/data/extract_tokens.sh). The first run adds the image
# vocabulary to BASE_MODEL (4 special tokens + 64,000 visual tokens) in T2I_MODEL.
# Settings: ACCELERATE_CONFIG (zero3 | zero2 | ddp | a file), NUM_PROCESSES, NUM_MACHINES,
# MACHINE_RANK, MAIN_PROCESS_IP, MAIN_PROCESS_PORT, as in launch.sh.
set -euo pipefail
source "$(dirname "$0")/launch.sh"
BASE_MODEL="${BASE_MODEL:-Qwen/Qwen2.5-0.5B-Instruct}"
COSMOS="${COSMOS:-ckpt/Cosmos-Tokenizer-DV8x16x16}"
T2I_MODEL="${T2I_MODEL:-outputs/simplear-0.5b-t2i}"
CONFIG="$MMR1_ROOT/local_scripts/train/configs/simplear_sft.yaml"

if [[ ! -f "$T2I_MODEL/t2i.json" ]]; then
  python -m mmr1.imagegen.cli prepare-t2i --model "$BASE_MODEL" --out "$T2I_MODEL" \
    --image-tokenizer "cosmos:$COSMOS" --codebook-size 64000
fi

args=(--model_name_or_path "$T2I_MODEL" --dataset_path "${TOKENS:-data/tokens/meta.json}"
      --image_tokenizer "cosmos:$COSMOS" --output_dir "${OUT:-outputs/simplear-0.5b-sft}" "$@")

acc="${ACCELERATE_CONFIG:-zero3}"
[[ -f "$acc" ]] || acc="$MMR1_ROOT/local_scripts/accelerate/${acc}.yaml"
gpus=$(python -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)
per_machine="${NUM_PROCESSES:-$(( gpus > 0 ? gpus : 1 ))}"
machines="${NUM_MACHINES:-1}"
if [[ "$gpus" == "0" ]]; then
  echo "no GPU found: running on the CPU in one process (set ACCELERATE_CONFIG for GPUs)" >&2
  exec python -m mmr1.cli sft "$CONFIG" "${args[@]}"
fi
exec accelerate launch --config_file "$acc" \
  --num_processes $(( per_machine * machines )) --num_machines "$machines" \
  --machine_rank "${MACHINE_RANK:-0}" \
  --main_process_ip "${MAIN_PROCESS_IP:-127.0.0.1}" --main_process_port "${MAIN_PROCESS_PORT:-29500}" \
  -m mmr1.cli sft "$CONFIG" "${args[@]}"
