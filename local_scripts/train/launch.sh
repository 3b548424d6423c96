# Shared launcher for the recipes: source it, then call `mmr1_launch CONFIG [--key value ...]`.
# Every setting is an environment variable with a default; nothing here is an absolute path.
#   ACCELERATE_CONFIG  zero2 | zero3 | ddp, or a path to an accelerate config (default zero3)
#   NUM_PROCESSES      processes per machine (default: visible GPUs, else 1)
#   NUM_MACHINES       machines (default 1); MACHINE_RANK this machine's rank (default 0)
#   MAIN_PROCESS_IP / MAIN_PROCESS_PORT   rank-0 address for multi-node (default 127.0.0.1:29500)
set -euo pipefail
MMR1_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

mmr1_launch() {
  local config="$1"; shift
  local acc="${ACCELERATE_CONFIG:-zero3}"
  [[ -f "$acc" ]] || acc="$MMR1_ROOT/local_scripts/accelerate/${acc}.yaml"
  local gpus
  gpus=$(python -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)
  local per_machine="${NUM_PROCESSES:-$(( gpus > 0 ? gpus : 1 ))}"
  local machines="${NUM_MACHINES:-1}"
  if [[ "$gpus" == "0" ]]; then
    echo "no GPU found: running on the CPU in one process (set ACCELERATE_CONFIG for GPUs)" >&2
    exec mmr1 train "$config" "$@"
  fi
  exec accelerate launch --config_file "$acc" \
    --num_processes $(( per_machine * machines )) --num_machines "$machines" \
    --machine_rank "${MACHINE_RANK:-0}" \
    --main_process_ip "${MAIN_PROCESS_IP:-127.0.0.1}" --main_process_port "${MAIN_PROCESS_PORT:-29500}" \
    -m mmr1.cli train "$config" "$@"
}
