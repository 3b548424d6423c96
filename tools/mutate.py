"""Mutation check: does the test suite notice when a behaviour breaks?

Each mutation of ``tools/mutations.py`` is applied, one at a time, to a fresh copy of the tree
(git's tracked and untracked-but-not-ignored files, as they are in the working tree; the working
tree itself is never written). The tests then run in that copy with this project's virtualenv:
first the mutation's targeted tests, then, if they pass, the whole core suite. A mutation is
*killed* when a test fails and *SURVIVED* when everything stays green.

    .venv/bin/python tools/mutate.py [--only ID,ID] [--full] [--jobs N] [--report PATH]

The package is installed editable, so the copy is put first on ``PYTHONPATH`` (the copy and its
``plugins/``), and before any test runs a child process checks that ``mmr1``, every first-party
plugin, every ``mmr1`` entry point and the mutated module all import from the copy.

Exit status: 0 all killed, 1 some survived, 2 a mutation could not be applied or checked.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mutations import MUTATIONS, Mutation  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PYTHON = ROOT / ".venv" / "bin" / "python"
DEFAULT_REPORT = ROOT / "bench" / "mutation_report.md"
CORE = ["-m", "not vision_stack"]
# The staleness test compares the list with the unmutated code, so it is left out of mutant runs.
PYTEST = ["-x", "-q", "-p", "no:cacheprovider", "-rfE", "--ignore=tests/test_mutations_apply.py"]
PLUGIN_MODULES = ["mmr1", "mmr1_math", "mmr1_vision", "mmr1_imagegen"]
ENTRY_POINT_GROUP = "mmr1"
PROJECT = "mmr1"   # the distribution whose entry points must resolve to the copy
QUIET_ENV = {"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1",
             "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


class MutationError(RuntimeError):
    """A mutation that cannot be applied, or a copy whose imports do not come from itself."""


@dataclass
class Result:
    mutation: Mutation
    status: str              # killed | SURVIVED | error
    by: str = ""             # targeted | suite
    failing: str = ""        # first failing test, or why it was killed / why it errored
    seconds: float = 0.0


# -- the copy ---------------------------------------------------------------------------------


def tree_files(root: Path) -> list[str]:
    """Tracked and untracked-but-not-ignored files that exist in the working tree."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=root, capture_output=True, check=True).stdout.decode()
        names = {n for n in out.split("\0") if n}
    except (OSError, subprocess.CalledProcessError):   # no git: everything but environments and outputs
        skip = {".git", "outputs", "runs", "build", "dist", "__pycache__", ".pytest_cache"}
        names = {str(p.relative_to(root)) for p in root.rglob("*")
                 if p.is_file() and not any(part in skip or part.startswith(".venv")
                                            for part in p.relative_to(root).parts)}
    return sorted(n for n in names if (root / n).is_file())


def snapshot(root: Path, dest: Path) -> Path:
    for name in tree_files(root):
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, target)
    return dest


def apply(mutation: Mutation, tree: Path) -> None:
    """Replace ``old`` by ``new`` in the copy; refuses to touch the working tree."""
    tree = tree.resolve()
    if tree == ROOT or ROOT in tree.parents:
        raise MutationError(f"refusing to mutate {tree}: it is inside the working tree")
    path = tree / mutation.file
    if not path.is_file():
        raise MutationError(f"{mutation.file} does not exist")
    text = path.read_text(encoding="utf-8")
    count = text.count(mutation.old)
    if count != 1:
        raise MutationError(f"`old` occurs {count} times in {mutation.file} (must be exactly once)")
    if mutation.new == mutation.old:
        raise MutationError("`new` equals `old`")
    path.write_text(text.replace(mutation.old, mutation.new, 1), encoding="utf-8")


def module_of(file: str) -> str | None:
    """``mmr1/grpo/trainer.py`` -> ``mmr1.grpo.trainer``; ``plugins/mmr1_math/x.py`` -> ``mmr1_math.x``."""
    parts = Path(file).with_suffix("").parts
    if parts and parts[0] == "plugins":
        parts = parts[1:]
    if not parts or Path(file).suffix != ".py" or not (parts[0] == "mmr1" or parts[0].startswith("mmr1_")):
        return None
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def child_env(tree: Path) -> dict:
    env = {**os.environ, **{k: os.environ.get(k, v) for k, v in QUIET_ENV.items()}}
    env["PYTHONPATH"] = os.pathsep.join([str(tree), str(tree / "plugins")])
    return env


_PROBE = """
import importlib, importlib.metadata, json, sys
found = {name: importlib.import_module(name).__file__ for name in sys.argv[1:]}
for ep in importlib.metadata.entry_points(group=%r):
    if ep.dist is not None and ep.dist.name == %r:      # this project's plugins, not third-party ones
        found["entry point " + ep.name] = ep.load().__file__
print(json.dumps(found))
""" % (ENTRY_POINT_GROUP, PROJECT)


def verify_isolation(python: Path, tree: Path, env: dict, extra: list[str]) -> None:
    """Raise unless the core package, the plugins, the entry points and ``extra`` import from ``tree``."""
    names = PLUGIN_MODULES + [m for m in extra if m not in PLUGIN_MODULES]
    # -P: no script or working directory on sys.path, as in the processes the tests start
    res = subprocess.run([str(python), "-P", "-c", _PROBE, *names], cwd=tree, env=env,
                         capture_output=True, text=True, timeout=600)
    if res.returncode:
        raise MutationError(f"import check failed: {res.stderr.strip().splitlines()[-1:]}")
    found = json.loads(res.stdout.strip().splitlines()[-1])
    if not any(k.startswith("entry point ") for k in found):
        raise MutationError(f"no {ENTRY_POINT_GROUP!r} entry points found: is the project installed in {python}?")
    root = tree.resolve()
    outside = {k: v for k, v in found.items() if v is None or root not in Path(v).resolve().parents}
    if outside:
        raise MutationError(f"imports do not come from the copy {root}: {outside}")


# -- running pytest -----------------------------------------------------------------------------


@dataclass
class Run:
    returncode: int | None   # None: timed out
    output: str
    seconds: float


_ACTIVE: set[subprocess.Popen] = set()      # running pytest process groups, killed on interrupt
_ACTIVE_LOCK = threading.Lock()
_STOPPING = threading.Event()


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def stop_all() -> None:
    _STOPPING.set()
    with _ACTIVE_LOCK:
        for proc in list(_ACTIVE):
            _kill(proc)


def run_pytest(python: Path, tree: Path, env: dict, args: list[str], timeout: float, log: Path) -> Run:
    t0 = time.monotonic()
    with log.open("w") as out, _ACTIVE_LOCK:
        if _STOPPING.is_set():
            raise MutationError("interrupted")
        proc = subprocess.Popen([str(python), "-m", "pytest", *args], cwd=tree, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        _ACTIVE.add(proc)
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        proc.wait()
        code = None
    finally:
        with _ACTIVE_LOCK:
            _ACTIVE.discard(proc)
    return Run(code, log.read_text(errors="replace"), time.monotonic() - t0)


_FAILED = re.compile(r"^(?:FAILED|ERROR) (.+?)(?: - .*)?$", re.MULTILINE)   # "FAILED node id - message"


def first_failure(run: Run, timeout: float) -> str:
    if run.returncode is None:
        return f"(timed out after {timeout:g} s)"
    m = _FAILED.search(run.output)
    return m.group(1) if m else f"(pytest exit status {run.returncode})"


def targeted_args(mutation: Mutation, tree: Path, ignored: list[str] = ()) -> tuple[list[str], list[str]]:
    """pytest arguments for the mutation's own tests, and the targets missing from the tree (or ignored)."""
    present = [t for t in mutation.tests if (tree / t.split("::")[0]).exists() and t.split("::")[0] not in ignored]
    missing = [t for t in mutation.tests if t not in present]
    args = list(present)
    if mutation.k:
        args = (args or ["tests"]) + ["-k", mutation.k]
    return args, missing


# -- one mutation ---------------------------------------------------------------------------------


def check(mutation: Mutation, pristine: Path, opts) -> Result:
    t0 = time.monotonic()
    tree = Path(tempfile.mkdtemp(prefix=f"mmr1-mutant-{mutation.id}-"))
    try:
        shutil.copytree(pristine, tree, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        apply(mutation, tree)
        env = child_env(tree)
        verify_isolation(opts.python, tree, env, [m for m in [module_of(mutation.file)] if m])
        targets, _ = targeted_args(mutation, tree, opts.ignore)
        pytest_args = CORE + PYTEST + [f"--ignore={path}" for path in opts.ignore]
        if targets and not opts.full:
            run = run_pytest(opts.python, tree, env, pytest_args + targets, opts.timeout, tree / ".mutate-targeted.log")
            if run.returncode not in (0, 4, 5):   # 4: bad arguments, 5: nothing selected -> the suite decides
                return Result(mutation, "killed", "targeted", first_failure(run, opts.timeout), time.monotonic() - t0)
        run = run_pytest(opts.python, tree, env, pytest_args + ["tests"], opts.timeout, tree / ".mutate-suite.log")
        if run.returncode == 0:
            return Result(mutation, "SURVIVED", "suite", "", time.monotonic() - t0)
        if run.returncode in (3, 4):
            raise MutationError(f"pytest could not run (exit status {run.returncode}); see {tree}/.mutate-suite.log")
        return Result(mutation, "killed", "suite", first_failure(run, opts.timeout), time.monotonic() - t0)
    except (MutationError, OSError, subprocess.SubprocessError) as exc:
        return Result(mutation, "error", "", str(exc), time.monotonic() - t0)
    finally:
        if not opts.keep:
            shutil.rmtree(tree, ignore_errors=True)


def baseline(pristine: Path, opts) -> Run:
    env = child_env(pristine)
    verify_isolation(opts.python, pristine, env, [])
    ignored = [f"--ignore={path}" for path in opts.ignore]
    return run_pytest(opts.python, pristine, env, CORE + PYTEST + ignored + ["tests"], opts.timeout,
                      pristine.parent / "baseline.log")


# -- the report -----------------------------------------------------------------------------------


def git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git)"
    return f"{head} + working-tree changes" if dirty.strip() else head


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def report(results: list[Result], opts, seconds: float, commit: str) -> str:
    counts = {s: sum(r.status == s for r in results) for s in ("killed", "SURVIVED", "error")}
    lines = [
        "# Mutation report",
        "",
        f"- date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        f"- commit: {commit}",
        f"- command: `{' '.join(['tools/mutate.py', *opts.argv])}`",
        f"- mutations: {len(results)}; killed {counts['killed']}, survived {counts['SURVIVED']}, "
        f"errors {counts['error']}",
        f"- total time: {seconds:.0f} s",
        "",
        "`by`: *targeted* = the mutation's own tests failed first; *suite* = the whole core suite "
        "(`-m \"not vision_stack\"`) decided.",
        "",
        "| id | area | breaks | result | by | first failing test | s |",
        "|---|---|---|---|---|---|---:|",
    ]
    for r in results:
        m = r.mutation
        failing = f"`{_cell(r.failing)}`" if r.status == "killed" and not r.failing.startswith("(") else _cell(r.failing)
        lines.append(f"| `{m.id}` | {m.area} | {_cell(m.description)} | {r.status} | {r.by} | "
                     f"{failing} | {r.seconds:.0f} |")
    survivors = [r for r in results if r.status == "SURVIVED"]
    if survivors:
        lines += ["", "## Survivors", ""]
        lines += [f"- `{r.mutation.id}` ({r.mutation.file}): {r.mutation.description}" for r in survivors]
    return "\n".join(lines) + "\n"


# -- command line ----------------------------------------------------------------------------------


def select(only: str | None) -> list[Mutation]:
    if not only:
        return list(MUTATIONS)
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    known = {m.id: m for m in MUTATIONS}
    unknown = [w for w in wanted if w not in known]
    if unknown:
        raise SystemExit(f"unknown mutation id(s): {', '.join(unknown)} (see --list)")
    return [known[w] for w in wanted]


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", help="comma-separated mutation ids")
    p.add_argument("--full", action="store_true", help="always run the whole core suite (skip targeted tests)")
    p.add_argument("--jobs", type=int, default=1, help="mutations checked in parallel (default 1)")
    p.add_argument("--report", type=Path, default=DEFAULT_REPORT, help="Markdown report (default %(default)s)")
    p.add_argument("--python", type=Path, default=DEFAULT_PYTHON, help="interpreter of the project's venv")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per pytest run; past it = killed")
    p.add_argument("--baseline", action="store_true", help="first run the suite on the unmutated copy; stop if red")
    p.add_argument("--ignore", action="append", default=[], metavar="TEST_FILE",
                   help="leave a test file out (repeatable): what does the rest of the suite catch?")
    p.add_argument("--keep", action="store_true", help="keep the mutant copies (and their pytest logs)")
    p.add_argument("--list", action="store_true", help="list the mutations and exit")
    opts = p.parse_args(argv)
    opts.argv = argv
    mutations = select(opts.only)
    if opts.list:
        for m in mutations:
            print(f"{m.id:45} {m.area:11} {m.file}: {m.description}")
        return 0

    t0 = time.monotonic()
    commit = git_commit()
    work = Path(tempfile.mkdtemp(prefix="mmr1-mutate-"))
    signal.signal(signal.SIGTERM, _interrupt)
    pool = ThreadPoolExecutor(max_workers=max(1, opts.jobs))
    done: dict[str, Result] = {}
    try:
        pristine = snapshot(ROOT, work / "tree")
        if opts.baseline:
            run = baseline(pristine, opts)
            if run.returncode != 0:
                print(f"the unmutated tree fails its tests ({first_failure(run, opts.timeout)})", file=sys.stderr)
                print(run.output[-3000:], file=sys.stderr)
                return 2
            print(f"baseline green in {run.seconds:.0f} s", flush=True)
        futures = [pool.submit(check, m, pristine, opts) for m in mutations]
        for future in as_completed(futures):
            r = future.result()
            done[r.mutation.id] = r
            print(f"[{len(done)}/{len(mutations)}] {r.mutation.id}: {r.status}"
                  f"{' by ' + r.failing if r.failing else ''} ({r.seconds:.0f} s)", flush=True)
    except KeyboardInterrupt:
        print("interrupted: no report written", file=sys.stderr)
        return 130
    finally:
        stop_all()
        pool.shutdown(wait=True, cancel_futures=True)
        stop_all()
        shutil.rmtree(work, ignore_errors=True)
    results = [done[m.id] for m in mutations]
    seconds = time.monotonic() - t0
    opts.report.parent.mkdir(parents=True, exist_ok=True)
    opts.report.write_text(report(results, opts, seconds, commit))
    survived = [r.mutation.id for r in results if r.status == "SURVIVED"]
    errors = [r.mutation.id for r in results if r.status == "error"]
    print(f"{len(results) - len(survived) - len(errors)} killed, {len(survived)} survived, {len(errors)} errors "
          f"in {seconds:.0f} s; report: {opts.report}")
    if errors:
        return 2
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
