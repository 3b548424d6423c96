"""Run a Python script or module as 1 process, or as N CPU processes under torchrun (tests only)."""

import os
import socket
import subprocess
import sys


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_processes(args: list[str], processes: int = 1, timeout: int = 600) -> subprocess.CompletedProcess:
    """``python ARGS`` (a script path, or ``-m module``, then its arguments) in ``processes`` processes.

    More than one: torchrun starts them with gloo and accelerate joins them (``ACCELERATE_USE_CPU``).
    Fails the test with the end of stderr when the command fails.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    cmd = [sys.executable, *args]
    if processes > 1:
        env["ACCELERATE_USE_CPU"] = "1"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
               "--master_port", str(free_port()), *args]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result
