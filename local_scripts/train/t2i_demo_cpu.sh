#!/usr/bin/env bash
# The text-to-image CPU demo: a tiny autoregressive image model learns to respect colour words
# through GRPO (colour fidelity about 0.5 -> 0.95; shape accuracy, which the reward does not see,
# drops by 6-11 points; 5-7 minutes on 2 cores). Writes OUT/t2i_demo.png (reward curve, before/after bars),
# OUT/samples_before.png, OUT/samples_after.png and OUT/summary.json.
#   OUT=outputs/demo-t2i SEED=0 bash local_scripts/train/t2i_demo_cpu.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec python -m mmr1.imagegen.demo --out "${OUT:-outputs/demo-t2i}" --seed "${SEED:-0}" "$@"
