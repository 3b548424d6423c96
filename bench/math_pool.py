"""The math-verify worker pool: mmr1's own (subprocess.Popen workers, ``plugins/mmr1_math/_pool.py``)
against the same contract built on pebble's ``ProcessPool`` (per-task timeouts), to decide by
measurement which one the accuracy reward uses.

    python bench/math_pool.py [--n 2000] [--seed 0] [--repeats 2] [--out bench/math_pool.md]

A benchmark, not a test: it asserts nothing and writes what it measured to ``--out`` (Markdown).

Both pools run the same worker code (``mmr1_math._mv_worker.score_task``, with its gold cache, the
CPU-time guard re-armed before each task and the 4,096 MB address-space limit) on the same tasks,
with the same ``run(tasks, timeout, workers, memory_mb, deadline)`` contract and statuses
(ok / timeout / crash / budget). pebble runs with two start methods: ``fork`` (Linux's default up to
Python 3.13) and ``spawn``.

(a) throughput: ``--n`` (solution, answer) pairs from bench/rewards.py's corpus (integers, decimals,
    fractions, radicals, polynomials, intervals, sets, percentages, units), only the pairs that the
    accuracy reward's string / plain-number shortcut does not settle (those never reach the pool),
    built into tasks exactly as the reward builds them; 1 and 2 workers; warm pools; the pools run in
    turn, each repeat on a new batch.
(b) boundedness: ``9^{9^{9^9}}`` (sympy evaluates the integer power; it does not end on its own)
    with a 1 s timeout, three rounds: the wall time until it is answered, whether the 8 samples
    after it in the same call and in the next call are still scored, whether processes are left
    behind, and the peak RSS of the children (VmHWM, sampled every 50 ms).
(c) inside a daemonic process (a torch DataLoader worker, num_workers=1) and from a non-main thread.
(d) ``os.fork()`` after the pool has started its workers: does the child score with the inherited
    pool object, does the parent's pool still work afterwards, and are the child's workers gone once
    the child has ended with ``os._exit`` (as a dataloader worker does).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import multiprocessing
import os
import platform
import select
import statistics
import subprocess
import sys
import threading
import time
from importlib.metadata import version
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OMP_NUM_THREADS", "1")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PATHOLOGICAL = {"i": -1, "g": "5", "gm": "raw", "p": "9^{9^{9^9}}", "pm": "wrap"}


# -- the same contract on pebble --------------------------------------------------------------------
def _pebble_init(memory_mb: int) -> None:
    """Worker start: the same address-space limit and warm-up as ``_mv_worker.main``."""
    from mmr1_math import _mv_worker

    _mv_worker._limit_memory(memory_mb)
    _mv_worker._load()
    _mv_worker.score_task({"i": 0, "g": "\\frac{1}{2}", "gm": "wrap", "p": "0.5", "pm": "wrap"})
    _mv_worker._gold_cache.clear()


def _pebble_task(task: dict, cpu_guard_s: float) -> dict:
    from mmr1_math import _mv_worker

    _mv_worker._arm_cpu_limit(cpu_guard_s)
    return _mv_worker.score_task(task)


def _pebble_ready() -> int:
    return os.getpid()


class PebblePool:
    """``VerifyPool.run``'s contract on ``pebble.ProcessPool``: every task is scheduled at once with
    its own ``timeout`` (pebble counts it from when a worker takes the task and stops the worker when
    it runs past); at the call's ``deadline`` the unfinished futures are cancelled (a running one
    stops its worker) and reported as ``budget``. A pool inherited through fork is abandoned."""

    def __init__(self, start_method: str = "fork"):
        self.start_method = start_method
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._pool = None
        self._key = None

    def _get(self, n: int, memory_mb: int):
        import pebble
        from mmr1_math import _pool

        if os.getpid() != self._pid:  # inherited through fork: the workers belong to the parent
            self._pid, self._pool, self._key = os.getpid(), None, None
        if self._pool is not None and (self._key != (n, memory_mb) or not self._pool.active):
            self.close()
        started = 0.0
        if self._pool is None:
            began = _pool._clock()
            self._pool = pebble.ProcessPool(
                max_workers=n, initializer=_pebble_init, initargs=(memory_mb,),
                context=multiprocessing.get_context(self.start_method),
            )
            self._key = (n, memory_mb)
            # first start is not charged to the call's deadline (as in VerifyPool)
            for f in [self._pool.schedule(_pebble_ready) for _ in range(n)]:
                f.result(timeout=120)
            started = _pool._clock() - began
        return self._pool, started

    def worker_pids(self) -> list[int]:
        if self._pool is None or os.getpid() != self._pid:
            return []
        return list(self._pool._pool_manager.worker_manager.workers)

    def run(self, tasks, timeout, workers=1, memory_mb=0, deadline=None):
        from pebble import ProcessExpired

        from mmr1_math import _pool

        results = [None] * len(tasks)
        if not tasks:
            return results
        n = max(1, min(int(workers), len(tasks)))
        guard = max(2.0 * timeout, 10.0)
        with self._lock:
            pool, started = self._get(n, memory_mb)
            if deadline is not None:
                deadline += started
            futures = [pool.schedule(_pebble_task, args=(t, guard), timeout=timeout) for t in tasks]
            left = None if deadline is None else max(0.0, deadline - _pool._clock())
            _, late = concurrent.futures.wait(futures, timeout=left)
            for f in late:
                f.cancel()
            for k, f in enumerate(futures):
                if f in late:
                    results[k] = (_pool.BUDGET, {})
                    continue
                try:
                    results[k] = (_pool.OK, f.result())
                except TimeoutError:
                    results[k] = (_pool.TIMEOUT, {})
                except (ProcessExpired, Exception):  # noqa: BLE001 - the worker died / the pool broke
                    results[k] = (_pool.CRASH, {})
        return results

    def close(self) -> None:
        if self._pool is not None and os.getpid() == self._pid:
            self._pool.stop()
            self._pool.join(timeout=10)
        self._pool = None


class CurrentPool:
    """``mmr1_math._pool.VerifyPool`` as it is, plus the pids of its workers."""

    start_method = "subprocess.Popen"

    def __init__(self):
        from mmr1_math import _pool

        self._impl = _pool.VerifyPool()

    def run(self, *args, **kwargs):
        return self._impl.run(*args, **kwargs)

    def worker_pids(self) -> list[int]:
        if os.getpid() != self._impl._pid:
            return []
        return [w.proc.pid for w in self._impl._workers if w is not None and w.alive()]

    def close(self) -> None:
        self._impl.close()


IMPLS = {
    "current (subprocess.Popen)": CurrentPool,
    "pebble ProcessPool, fork": lambda: PebblePool("fork"),
    "pebble ProcessPool, spawn": lambda: PebblePool("spawn"),
}


# -- measuring ---------------------------------------------------------------------------------------
def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if fields[0] == "Z":
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [root]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _hwm_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


class RssSampler:
    """Peak RSS (VmHWM) of every descendant process, sampled every 50 ms while in use."""

    def __init__(self):
        self.peak: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        me = os.getpid()
        while not self._stop.is_set():
            for pid in _descendants(me):
                mb = _hwm_mb(pid)
                if mb is not None:
                    self.peak[pid] = max(self.peak.get(pid, 0.0), mb)
            self._stop.wait(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def max_mb(self) -> float:
        return max(self.peak.values(), default=0.0)


def make_tasks(seed: int, n: int) -> list[dict]:
    """``n`` tasks exactly as ``accuracy_reward`` builds them, from bench/rewards.py's corpus."""
    import random

    sys.path.insert(0, str(HERE))
    import rewards as corpus
    from mmr1_math.accuracy import _fast, _mode, _nothing_to_parse
    from mmr1_math.answers import strip_units

    rng = random.Random(seed)
    tasks: list[dict] = []
    while len(tasks) < n:
        sol, right, wrong = corpus.math_problem(rng)
        pred = rng.choice(right + wrong)
        if _fast(pred, sol) is not None:
            continue
        p, g = strip_units(pred), strip_units(sol)
        key = (g, _mode(g), p, _mode(p))
        if _nothing_to_parse(key[0], key[1]) or _nothing_to_parse(key[2], key[3]):
            continue
        tasks.append({"i": len(tasks), "g": key[0], "gm": key[1], "p": key[2], "pm": key[3]})
    return tasks


def _statuses(out) -> list[str]:
    return [s for s, _ in out]


def _scored_right(out, expected) -> int:
    return sum(s == "ok" and bool(r.get("ok")) == e for (s, r), e in zip(out, expected))


def throughput(args, tasks_by_repeat, expected_by_repeat) -> list[dict]:
    rows = []
    for workers in (1, 2):
        pools = {name: make() for name, make in IMPLS.items()}
        starts = {}
        for name, pool in pools.items():
            t = time.perf_counter()
            pool.run(tasks_by_repeat[0][:workers * 2], 5.0, workers=workers, memory_mb=4096)
            starts[name] = time.perf_counter() - t
        times: dict[str, list[float]] = {name: [] for name in pools}
        agree: dict[str, int] = {name: 0 for name in pools}
        peaks: dict[str, float] = {name: 0.0 for name in pools}
        for r, tasks in enumerate(tasks_by_repeat):
            order = list(pools) if r % 2 == 0 else list(reversed(pools))
            for name in order:
                with RssSampler() as rss:
                    t = time.perf_counter()
                    out = pools[name].run(tasks, 5.0, workers=workers, memory_mb=4096)
                    times[name].append(time.perf_counter() - t)
                peaks[name] = max(peaks[name], rss.max_mb())
                agree[name] += _scored_right(out, expected_by_repeat[r])
        for name, pool in pools.items():
            pool.close()
            n = sum(len(t) for t in tasks_by_repeat)
            rows.append({
                "pool": name, "workers": workers, "start_s": starts[name], "seconds": times[name],
                "per_s": [len(tasks_by_repeat[k]) / s for k, s in enumerate(times[name])],
                "agree": agree[name], "n": n, "peak_rss_mb": peaks[name],
                "load": os.getloadavg()[0],
            })
            print(json.dumps(rows[-1]), flush=True)
    return rows


def _count_ok(out) -> str:
    """``"8/8"``, or ``"7/8 (1 timeout)"`` when some were not scored ``ok``."""
    st = _statuses(out)
    bad = [s for s in st if s != "ok"]
    note = "" if not bad else " (" + ", ".join(f"{bad.count(s)} {s}" for s in sorted(set(bad))) + ")"
    return f"{len(st) - len(bad)}/{len(st)}{note}"


def boundedness(normal: list[dict], reps: int = 3) -> list[dict]:
    rows = []
    after = normal[:8]
    for name, make in IMPLS.items():
        pool = make()
        pool.run(after[:2], 5.0, workers=1, memory_mb=4096)  # warm
        row = {"pool": name, "alone": [], "next": [], "mixed": [], "stray": [], "workers": []}
        with RssSampler() as rss:
            for _ in range(reps):
                before = set(_descendants(os.getpid()))
                n_before = len(pool.worker_pids())
                t = time.perf_counter()
                alone = pool.run([PATHOLOGICAL], 1.0, workers=1, memory_mb=4096)
                row["alone"].append((_statuses(alone)[0], time.perf_counter() - t))
                t = time.perf_counter()
                nxt = pool.run(after, 1.0, workers=1, memory_mb=4096)
                row["next"].append((_count_ok(nxt), time.perf_counter() - t))
                t = time.perf_counter()
                mixed = pool.run([PATHOLOGICAL] + after, 1.0, workers=1, memory_mb=4096)
                row["mixed"].append((_statuses(mixed)[0], _count_ok(mixed[1:]), time.perf_counter() - t))
                time.sleep(0.5)
                current = set(pool.worker_pids())
                row["stray"].append(len(set(_descendants(os.getpid())) - before - current))
                row["workers"].append((n_before, len(current)))
        row["peak_rss_mb"] = rss.max_mb()
        pool.close()
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


class _OneBatch:
    """A dataset of one item that scores its tasks with the pool, in the dataloader worker."""

    def __init__(self, pool, tasks):
        self.pool, self.tasks = pool, tasks

    def __len__(self):
        return 1

    def __getitem__(self, i):
        try:
            t = time.perf_counter()
            out = self.pool.run(self.tasks, 1.0, workers=1, memory_mb=4096)
            return {"statuses": _statuses(out), "seconds": time.perf_counter() - t,
                    "daemon": multiprocessing.current_process().daemon}
        except BaseException as exc:  # noqa: BLE001 - reported, not raised
            return {"error": f"{type(exc).__name__}: {exc}",
                    "daemon": multiprocessing.current_process().daemon}


def daemonic_and_thread(normal: list[dict]) -> list[dict]:
    import torch.utils.data

    tasks = [PATHOLOGICAL] + normal[:3]
    rows = []
    for name, make in IMPLS.items():
        row = {"pool": name}
        pool = make()
        pool.run(normal[:2], 5.0, workers=1, memory_mb=4096)  # the parent's pool has started
        loader = torch.utils.data.DataLoader(_OneBatch(pool, tasks), batch_size=None, num_workers=1, timeout=180)
        try:
            (item,) = list(loader)
            row["loader"] = item
        except BaseException as exc:  # noqa: BLE001
            row["loader"] = {"error": f"{type(exc).__name__}: {exc}"}
        pool.close()

        box = {}

        def in_thread():
            fresh = make()
            try:
                t = time.perf_counter()
                out = fresh.run(tasks, 1.0, workers=1, memory_mb=4096)
                box.update(statuses=_statuses(out), seconds=time.perf_counter() - t)
            except BaseException as exc:  # noqa: BLE001
                box["error"] = f"{type(exc).__name__}: {exc}"
            finally:
                fresh.close()

        th = threading.Thread(target=in_thread)
        th.start()
        th.join(300)
        row["thread"] = box if not th.is_alive() else {"error": "hung (> 300 s)"}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def fork_after_start(normal: list[dict]) -> list[dict]:
    tasks = normal[:4]
    rows = []
    for name, make in IMPLS.items():
        pool = make()
        pool.run(tasks, 5.0, workers=1, memory_mb=4096)
        parent_pids = pool.worker_pids()
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                t = time.perf_counter()
                out = pool.run(tasks, 5.0, workers=1, memory_mb=4096)
                msg = {"statuses": _statuses(out), "seconds": time.perf_counter() - t,
                       "workers": pool.worker_pids()}
            except BaseException as exc:  # noqa: BLE001
                msg = {"error": f"{type(exc).__name__}: {exc}", "workers": []}
            os.write(w, json.dumps(msg).encode() + b"\n")
            os._exit(0)  # as a dataloader worker ends: no atexit, no pool.close()
        os.close(w)
        ready, _, _ = select.select([r], [], [], 180)
        child = json.loads(os.read(r, 1 << 16).decode()) if ready else {"error": "hung (> 180 s)", "workers": []}
        os.close(r)
        if not ready:
            os.kill(pid, 9)
        os.waitpid(pid, 0)
        time.sleep(2.0)
        t = time.perf_counter()
        out = pool.run(tasks, 5.0, workers=1, memory_mb=4096)
        row = {
            "pool": name, "child": {k: v for k, v in child.items() if k != "workers"},
            "child_workers_left": sum(_alive(p) for p in child["workers"]),
            "parent_after": _statuses(out), "parent_after_s": time.perf_counter() - t,
            "parent_workers_kept": sorted(pool.worker_pids()) == sorted(parent_pids),
        }
        for p in child["workers"]:  # do not leave them running past the benchmark
            if _alive(p):
                try:
                    os.kill(p, 9)
                except OSError:
                    pass
        pool.close()
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


# -- the report --------------------------------------------------------------------------------------
def _fmt_status(d: dict) -> str:
    if "error" in d:
        return f"fails: `{d['error']}`"
    st = d["statuses"]
    head = f"{st[0]} + {sum(s == 'ok' for s in st[1:])}/{len(st) - 1} ok" if len(st) > 1 else st[0]
    return f"works ({head}, {d['seconds']:.2f} s)"


def report(args, meta, thr, bnd, dmn, frk) -> str:
    L = []
    L.append("# math-verify worker pool: mmr1's own vs pebble's ProcessPool\n")
    L.append(f"`python bench/math_pool.py --n {args.n} --seed {args.seed} --repeats {args.repeats}`, run "
             f"{meta['date']} at commit `{meta['commit']}`. Machine: {meta['machine']}, **{meta['cpus']} CPUs** "
             f"(shared with other jobs: load average {meta['load_start']:.2f} at the start, "
             f"{meta['load_end']:.2f} at the end), Python {meta['python']}; pebble {meta['pebble']}, "
             f"math-verify {meta['math_verify']}, latex2sympy2-extended {meta['latex2sympy2']}, sympy "
             f"{meta['sympy']}, torch {meta['torch']}.\n")
    L.append("Both pools run the same worker code (`_mv_worker.score_task`, gold cache, CPU guard, "
             "4,096 MB address-space limit) under the same `run()` contract; see the docstring of "
             "`bench/math_pool.py`. Every figure below is as measured in this run.\n")
    L.append(f"## (a) Throughput: {args.n} (solution, answer) pairs per call, warm, timeout 5 s\n")
    L.append("Pairs from bench/rewards.py's corpus that reach math-verify (the string / plain-number "
             "shortcut settles the rest before the pool); a new batch each repeat. `agree` = replies "
             "equal to the current pool's answers on the same tasks (first measured alone). "
             "Peak RSS = largest VmHWM of one child process (for fork, shared pages count in full).\n")
    L.append("| pool | workers | first start (s) | seconds per call | pairs/s | agree | peak child RSS (MB) |")
    L.append("|---|---:|---:|---|---|---:|---:|")
    for row in thr:
        secs = ", ".join(f"{s:.2f}" for s in row["seconds"])
        rates = ", ".join(f"{r:,.0f}" for r in row["per_s"])
        L.append(f"| {row['pool']} | {row['workers']} | {row['start_s']:.2f} | {secs} | {rates} "
                 f"(median {statistics.median(row['per_s']):,.0f}) | {row['agree']}/{row['n']} | "
                 f"{row['peak_rss_mb']:.0f} |")
    L.append("")
    L.append("## (b) Boundedness: `9^{9^{9^9}}`, timeout 1 s, 1 worker, 3 rounds\n")
    L.append("Each round: `alone`, one call with only the pathological task; `next`, the call right after, "
             "8 ordinary tasks (ok / 8); `mixed`, one call with the pathological task first and the same "
             "8 after it. `stray`: child processes started during the round that are neither gone nor "
             "the pool's current workers 0.5 s after it. Each cell lists the three rounds.\n")
    L.append("A timed-out worker: the current pool sends SIGKILL; pebble sends SIGTERM and, per its "
             "source (`stop_process`, `CONSTS.term_timeout`), waits up to 3 s before SIGKILL. "
             "CPython's long-integer arithmetic checks for signals, so this sample takes the SIGTERM "
             "at once; code that never returns to the interpreter would hold pebble's manager for "
             "those 3 s (not measured here).\n")
    L.append("| pool | alone: status, s | next: ok, s | mixed: first, rest ok, s | stray | workers before / after | peak child RSS (MB) |")
    L.append("|---|---|---|---|---|---|---:|")
    for b in bnd:
        alone = "; ".join(f"{s}, {t:.2f}" for s, t in b["alone"])
        nxt = "; ".join(f"{k}, {t:.2f}" for k, t in b["next"])
        mixed = "; ".join(f"{s}, {k}, {t:.2f}" for s, k, t in b["mixed"])
        stray = ", ".join(str(x) for x in b["stray"])
        workers = ", ".join(f"{a} / {c}" for a, c in b["workers"])
        L.append(f"| {b['pool']} | {alone} | {nxt} | {mixed} | {stray} | {workers} | {b['peak_rss_mb']:.0f} |")
    L.append("")
    L.append("## (c) Inside a daemonic process and from a non-main thread\n")
    L.append("The pathological task (timeout 1 s) then 3 ordinary ones, scored inside a torch DataLoader "
             "worker (`num_workers=1`, a daemonic multiprocessing child; the pool object was created "
             "and started in the parent) and by a fresh pool created and used in a non-main thread.\n")
    L.append("| pool | DataLoader worker (daemonic) | non-main thread |")
    L.append("|---|---|---|")
    for d in dmn:
        L.append(f"| {d['pool']} | {_fmt_status(d['loader'])} | {_fmt_status(d['thread'])} |")
    L.append("")
    L.append("## (d) `os.fork()` after the pool has started its workers\n")
    L.append("The child scores 4 tasks with the inherited pool object and ends with `os._exit(0)` (as a "
             "dataloader worker does: no atexit handlers); 2 s later the parent scores them again.\n")
    L.append("| pool | child | child's workers still alive after it ended | parent afterwards | parent's workers unchanged |")
    L.append("|---|---|---:|---|---|")
    for f in frk:
        parent = f"{sum(s == 'ok' for s in f['parent_after'])}/{len(f['parent_after'])} ok, {f['parent_after_s']:.2f} s"
        L.append(f"| {f['pool']} | {_fmt_status(f['child'])} | {f['child_workers_left']} | {parent} | "
                 f"{'yes' if f['parent_workers_kept'] else 'no'} |")
    L.append("")
    return "\n".join(L) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=str(HERE / "math_pool.md"))
    parser.add_argument("--json", default=None, help="also write the raw figures here")
    args = parser.parse_args(argv)
    try:
        import pebble  # noqa: F401
    except ImportError:
        print("math_pool.py compares against pebble, which mmr1 does not install: pip install pebble",
              file=sys.stderr)
        return 2

    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                 text=True).stdout.strip() or "unknown",
        "machine": platform.machine(), "cpus": len(os.sched_getaffinity(0)),
        "python": sys.version.split()[0], "pebble": version("pebble"), "math_verify": version("math-verify"),
        "latex2sympy2": version("latex2sympy2_extended"), "sympy": version("sympy"), "torch": version("torch"),
        "load_start": os.getloadavg()[0],
    }
    tasks_by_repeat = [make_tasks(args.seed + r, args.n) for r in range(args.repeats)]
    reference = CurrentPool()
    expected = []
    for tasks in tasks_by_repeat:
        out = reference.run(tasks, 5.0, workers=2, memory_mb=4096)
        expected.append([bool(r.get("ok")) for _, r in out])
    reference.close()
    normal = make_tasks(args.seed + 100, 16)

    thr = throughput(args, tasks_by_repeat, expected)
    bnd = boundedness(normal)
    frk = fork_after_start(normal)
    dmn = daemonic_and_thread(normal)  # last: it imports torch, which fork-started workers would inherit
    meta["load_end"] = os.getloadavg()[0]
    text = report(args, meta, thr, bnd, dmn, frk)
    Path(args.out).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "throughput": thr, "boundedness": bnd,
                                               "daemonic_thread": dmn, "fork": frk}, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
