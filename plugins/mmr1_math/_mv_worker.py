"""The math-verify worker: a long-lived child process that parses and compares answers.

Started by :mod:`mmr1_math._pool` as ``python -P <this file> <cpu_guard_s> <memory_mb>`` (by path,
so that it imports nothing but the standard library and math-verify). Protocol, one JSON object a
line: the parent writes ``{"i": id, "g": gold, "gm": mode, "p": pred, "pm": mode}`` on stdin, the
worker answers ``{"i": id, "ok": bool}`` (plus ``"error"`` when math-verify raised) on the file
descriptor that was stdout at start. Anything printed by libraries goes to stderr instead.

math-verify's own timeouts use SIGALRM; they are switched off here (``parsing_timeout=None``,
``timeout_seconds=None``) because the parent enforces the deadline by killing this process, which
also stops computations stuck inside C code where a signal handler would never run. Two guards
stay in the worker for the case where the parent has gone: the CPU-time rlimit is re-armed before
every task (the kernel's SIGXCPU ends a runaway computation even in C code), and the address-space
rlimit turns a memory explosion into a MemoryError (scored as a wrong answer).

Modes: ``"wrap"`` parses ``$text$`` first (a bare formula such as ``x \\leq 3``), then ``text``
as is; ``"raw"`` parses ``text`` as is (prose, or text that carries its own delimiters).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections import OrderedDict

GOLD_CACHE_SIZE = 4096

_parse = None
_verify = None
_gold_cache: OrderedDict = OrderedDict()


def _load():
    global _parse, _verify
    if _parse is None:
        logging.getLogger("math_verify").setLevel(logging.ERROR)
        from math_verify import parse, verify

        _parse, _verify = parse, verify


def parse_answer(text: str, mode: str, timeout: int | None = None):
    """Parse ``text`` with math-verify according to ``mode`` (see the module docstring)."""
    _load()
    if mode == "wrap":
        parsed = _parse("$" + text + "$", parsing_timeout=timeout)
        if parsed:
            return parsed
    return _parse(text, parsing_timeout=timeout)


def parse_gold(text: str, mode: str, timeout: int | None = None):
    """:func:`parse_answer`, cached: one dataset solution is compared with many completions."""
    key = (text, mode)
    hit = _gold_cache.get(key)
    if hit is not None:
        _gold_cache.move_to_end(key)
        return hit
    parsed = parse_answer(text, mode, timeout)
    _gold_cache[key] = parsed
    if len(_gold_cache) > GOLD_CACHE_SIZE:
        _gold_cache.popitem(last=False)
    return parsed


def score_task(task: dict, timeout: int | None = None) -> dict:
    """``{"i": id, "ok": bool}``: does math-verify find the prediction equal to the gold answer?"""
    reply = {"i": task.get("i"), "ok": False}
    try:
        gold = parse_gold(task["g"], task.get("gm", "wrap"), timeout)
        if not gold:
            return reply
        pred = parse_answer(task["p"], task.get("pm", "wrap"), timeout)
        if not pred:
            return reply
        _load()
        reply["ok"] = bool(_verify(gold, pred, timeout_seconds=timeout))
    except Exception as exc:  # noqa: BLE001 - math-verify / sympy failures score as "not equal"
        reply["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
    return reply


def _arm_cpu_limit(guard_s: float) -> None:
    try:
        import resource

        usage = resource.getrusage(resource.RUSAGE_SELF)
        soft = int(usage.ru_utime + usage.ru_stime + guard_s) + 1
        _, hard = resource.getrlimit(resource.RLIMIT_CPU)
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
    except (ImportError, ValueError, OSError):
        pass


def _limit_memory(memory_mb: int) -> None:
    if memory_mb <= 0:
        return
    try:
        import resource

        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        soft = memory_mb * 1024 * 1024
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    except (ImportError, ValueError, OSError):
        pass


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    cpu_guard = float(argv[0]) if argv else 30.0
    memory_mb = int(argv[1]) if len(argv) > 1 else 0

    # The protocol channel is the original stdout; stray prints from libraries go to stderr.
    channel = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    _limit_memory(memory_mb)
    _load()
    score_task({"i": 0, "g": "\\frac{1}{2}", "gm": "wrap", "p": "0.5", "pm": "wrap"})  # warm-up
    _gold_cache.clear()
    channel.write(b'{"ready": true}\n')

    for line in sys.stdin.buffer:
        try:
            task = json.loads(line)
        except ValueError:
            continue
        _arm_cpu_limit(cpu_guard)
        reply = score_task(task)
        try:
            channel.write(json.dumps(reply).encode("utf-8") + b"\n")
        except (BrokenPipeError, OSError):
            return


if __name__ == "__main__":
    main()
