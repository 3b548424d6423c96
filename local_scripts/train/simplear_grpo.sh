#!/usr/bin/env bash
# SimpleAR GRPO: the SFT model generates 512 px images (1,024 Cosmos tokens), rewarded by CLIP score.
# Edit local_scripts/train/configs/simplear_grpo.yaml or pass --key value.
#   MODEL=outputs/simplear-0.5b-sft/final COSMOS=path/to/Cosmos-Tokenizer-DV8x16x16 \
#   CLIP=path/to/CLIP-ViT-H-14-laion2B-s32B-b79K CAPTIONS=data/grpo_captions.txt \
#   bash local_scripts/train/simplear_grpo.sh
# Other rewards by name: --rewards '[clip_score, aesthetic]' --reward_weights '[1.0, 0.1]' with
# their options in reward_kwargs (see docs/rewards.md). Launch settings as in launch.sh.
set -euo pipefail
source "$(dirname "$0")/launch.sh"
COSMOS="${COSMOS:-ckpt/Cosmos-Tokenizer-DV8x16x16}"
CLIP="${CLIP:-ckpt/CLIP-ViT-H-14-laion2B-s32B-b79K}"
mmr1_launch "$MMR1_ROOT/local_scripts/train/configs/simplear_grpo.yaml" \
  --model_name_or_path "${MODEL:-outputs/simplear-0.5b-sft/final}" \
  --dataset_path "${CAPTIONS:-data/grpo_captions.txt}" \
  --image_tokenizer "cosmos:$COSMOS" \
  --reward_kwargs "{clip_score: {model: $CLIP}}" \
  --output_dir "${OUT:-outputs/simplear-0.5b-grpo}" "$@"
