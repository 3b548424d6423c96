#!/usr/bin/env bash
# The CPU demo: a tiny Qwen2.5-VL learns to read colours through GRPO (a few minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1
exec mmr1 demo --out "${OUT:-outputs/demo}" --seed "${SEED:-0}" "$@"
