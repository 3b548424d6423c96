"""A small pool of math-verify worker processes with a per-sample deadline.

Why a process: math-verify bounds its own work with SIGALRM, which only works on the main thread
of the main interpreter, and cannot interrupt sympy while it is inside C code (``9^{9^{9^9}}``
computes a huge integer in one C call). A child process can always be killed. Workers are started
with :class:`subprocess.Popen` (not :mod:`multiprocessing`), so this also works in daemonic
processes such as dataloader workers, and from any thread.

Each task gets ``timeout`` seconds from the moment it is sent; if no answer comes, the worker is
killed, the sample is reported as timed out, and a fresh worker is started for the next task
(about 0.5 s). A pool created before a ``fork`` is abandoned, not shared, by the child.

A call may also have a ``deadline`` (a :func:`_clock` time) for the whole batch: each task's own
deadline is cut to what is left of it, a task cut short that way (or never sent because nothing was
left) is reported as ``budget``, not ``timeout`` (it did not use its own deadline, so it is no proof
that the sample is pathological). Starting a slot's first worker (once per process, about a second)
is not counted against the call's deadline; restarts after a timeout or crash are.
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

WORKER_SCRIPT = str(Path(__file__).with_name("_mv_worker.py"))
STARTUP_TIMEOUT_S = 120.0

TIMEOUT = "timeout"
CRASH = "crash"
OK = "ok"
BUDGET = "budget"  # not scored: the call's deadline ran out before or while the task ran
#: The call's deadline is read from this clock (tests replace it with a fake one).
_clock = time.monotonic
#: A task is not sent when less than this is left of the call's deadline.
MIN_SLICE_S = 0.05
_DEAD = "dead"  # the worker was gone before the task reached it: retried on a fresh one


class WorkerStartError(RuntimeError):
    """The math-verify worker process could not be started."""


class _Worker:
    def __init__(self, cpu_guard_s: float, memory_mb: int):
        cmd = [sys.executable, "-P", "-u", WORKER_SCRIPT, str(cpu_guard_s), str(int(memory_mb))]
        try:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                close_fds=True,
                start_new_session=True,  # Ctrl-C in a terminal is the parent's business
            )
        except OSError as exc:
            raise WorkerStartError(f"cannot start {WORKER_SCRIPT}: {exc}") from exc
        self.fd = self.proc.stdout.fileno()
        self.buf = b""
        status, line = self._read_line(STARTUP_TIMEOUT_S)
        if status != OK or b"ready" not in line:
            self.kill()
            raise WorkerStartError(
                f"the math-verify worker did not start ({status}); is math-verify installed for "
                f"{sys.executable}?"
            )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _read_line(self, timeout: float) -> tuple[str, bytes]:
        deadline = time.monotonic() + timeout
        poller = select.poll()
        poller.register(self.fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        while b"\n" not in self.buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return TIMEOUT, b""
            if not poller.poll(max(1, int(remaining * 1000))):
                continue
            try:
                chunk = os.read(self.fd, 1 << 16)
            except OSError:
                return CRASH, b""
            if not chunk:
                return CRASH, b""
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return OK, line

    def ask(self, task: dict, timeout: float) -> tuple[str, dict]:
        try:
            self.proc.stdin.write(json.dumps(task).encode("utf-8") + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            return _DEAD, {}
        status, line = self._read_line(timeout)
        if status != OK:
            return status, {}
        try:
            return OK, json.loads(line)
        except ValueError:
            return CRASH, {}

    def kill(self) -> None:
        try:
            self.proc.kill()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass


class VerifyPool:
    """``run(tasks, ...)`` -> one ``(status, reply)`` per task, status ``ok``/``timeout``/``crash``."""

    def __init__(self):
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._workers: list[_Worker | None] = []
        self.restarts = 0
        self.started = 0
        self._slots_started: set[int] = set()

    def _check_fork(self) -> None:
        if os.getpid() != self._pid:  # inherited through fork: the workers belong to the parent
            self._pid = os.getpid()
            self._lock = threading.Lock()
            self._workers = []
            self._slots_started = set()

    def _worker(self, k: int, cpu_guard_s: float, memory_mb: int) -> _Worker:
        w = self._workers[k]
        if w is None or not w.alive():
            if w is not None:
                w.kill()
                self.restarts += 1
            w = _Worker(cpu_guard_s, memory_mb)
            self.started += 1
            self._workers[k] = w
        return w

    def run(self, tasks: list[dict], timeout: float, workers: int = 1, memory_mb: int = 0,
            deadline: float | None = None):
        """One ``(status, reply)`` per task. ``deadline``: a :func:`_clock` time by which the whole call
        ends; tasks it leaves unscored get status ``budget``."""
        self._check_fork()
        results: list[tuple[str, dict] | None] = [None] * len(tasks)
        if not tasks:
            return results
        # the worker's own CPU guard only matters if this process dies mid-task
        cpu_guard_s = max(2.0 * timeout, 10.0)
        with self._lock:
            n = max(1, min(int(workers), len(tasks)))
            while len(self._workers) < n:
                self._workers.append(None)
            counter = itertools.count()
            errors: list[BaseException] = []

            def drain(k: int) -> None:
                end = deadline  # this thread's deadline: plus the time its first worker took to start

                def slice_left() -> float | None:
                    return None if end is None else end - _clock()

                def start(k: int) -> _Worker:
                    nonlocal end
                    first = k not in self._slots_started
                    began = _clock()
                    w = self._worker(k, cpu_guard_s, memory_mb)
                    self._slots_started.add(k)
                    if first and end is not None:
                        end += _clock() - began
                    return w

                def ask(w: _Worker, task: dict) -> tuple[str, dict, bool]:
                    """(status, reply, whether the worker is left busy or broken and must go)."""
                    left = slice_left()
                    if left is not None and left < MIN_SLICE_S:
                        return BUDGET, {}, False  # not sent
                    limit = timeout if left is None else min(timeout, left)
                    status, reply = w.ask(task, limit)
                    if status == TIMEOUT and limit < timeout:
                        return BUDGET, {}, True  # cut short by the call's deadline, not past its own
                    return status, reply, status != OK

                try:
                    while True:
                        idx = next(counter)
                        if idx >= len(tasks):
                            return
                        left = slice_left()
                        if left is not None and left < MIN_SLICE_S:
                            results[idx] = (BUDGET, {})
                            continue
                        w = start(k)
                        status, reply, broken = ask(w, tasks[idx])
                        if status == _DEAD:  # died while idle: not this task's fault
                            w.kill()
                            self._workers[k] = None
                            self.restarts += 1
                            w = start(k)
                            status, reply, broken = ask(w, tasks[idx])
                            if status == _DEAD:
                                status = CRASH
                        if broken:
                            w.kill()
                            self._workers[k] = None
                            self.restarts += 1
                        results[idx] = (status, reply)
                except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
                    errors.append(exc)

            if n == 1:
                drain(0)
            else:
                threads = [threading.Thread(target=drain, args=(k,), daemon=True) for k in range(1, n)]
                for t in threads:
                    t.start()
                drain(0)
                for t in threads:
                    t.join()
            if errors:
                raise errors[0]
        return results

    def close(self) -> None:
        if os.getpid() != self._pid:
            return
        for w in self._workers:
            if w is not None:
                w.kill()
        self._workers = []


_POOL: VerifyPool | None = None
_POOL_LOCK = threading.Lock()


def get_pool() -> VerifyPool:
    global _POOL
    if _POOL is not None:
        return _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = VerifyPool()
            atexit.register(_POOL.close)
        return _POOL


def shutdown() -> None:
    """Stop the worker processes (they are restarted on the next use)."""
    pool = _POOL
    if pool is not None:
        pool.close()
