"""Reward throughput: completions per second of every first-party text/vision reward on 1,024
realistic completions, and the math deadline bounding a batch with pathological samples.

    python bench/rewards.py [--n 1024] [--seed 0] [--workers 2] [--timeout 5]

Batches are GRPO-shaped unless said otherwise: 128 prompts x 8 completions, the completions of one
prompt sharing its solution and mostly agreeing on a few distinct answers (right, right in another
form, wrong), with a few hundred words of reasoning before the answer. The math reward is also run
on a batch in which all 1,024 (solution, answer) pairs are distinct, its worst case. Figures are
wall-clock seconds of one call; the first call of the math reward includes starting its worker
processes. Results go to stdout as a Markdown table (copy into bench/rewards.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import mmr1  # noqa: E402
from mmr1.plugins import reset_plugin_manager  # noqa: E402

WORDS = ("first we note that the triangle is isosceles so the base angles are equal and the area "
         "follows from the height which we compute with the pythagorean theorem then substitute").split()


def reasoning(rng: random.Random, lo=60, hi=300) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def math_problem(rng: random.Random):
    """(solution, [right answers in several forms], [wrong answers])."""
    a, b = rng.randint(1, 30), rng.randint(2, 30)
    kind = rng.choices(
        ["int", "decimal", "fraction", "radical", "expr", "interval", "set", "percent", "units", "text"],
        weights=[35, 10, 15, 10, 5, 5, 5, 5, 5, 5],
    )[0]
    if kind == "int":
        s = str(a * b)
        return s, [s, f"{s}.", f"x = {s}"], [str(a * b + 1), str(a + b)]
    if kind == "decimal":
        s = f"{a / 4:.2f}"
        return s, [s, f"\\frac{{{a}}}{{4}}"], [f"{a / 4 + 0.5:.2f}"]
    if kind == "fraction":
        s = f"\\frac{{{a}}}{{{b}}}"
        return s, [s, f"\\dfrac{{{2 * a}}}{{{2 * b}}}", f"{a}/{b}"], [f"\\frac{{{a + 1}}}{{{b}}}", f"\\frac{{{b}}}{{{a}}}"]
    if kind == "radical":
        s = f"{a}\\sqrt{{2}}"
        return s, [s, f"\\sqrt{{{2 * a * a}}}"], [f"{a}\\sqrt{{3}}", f"{2 * a}"]
    if kind == "expr":
        s = f"x^2 + {2 * a}x + {a * a}"
        return s, [s, f"(x+{a})^2"], [f"(x+{a + 1})^2"]
    if kind == "interval":
        s = f"[{a}, {a + b})"
        return s, [s, f"[{a},{a + b})"], [f"({a}, {a + b}]"]
    if kind == "set":
        s = f"\\{{{a}, {a + b}\\}}"
        return s, [s, f"\\{{{a + b}, {a}\\}}"], [f"\\{{{a}\\}}"]
    if kind == "percent":
        s = f"{a}\\%"
        return s, [s, f"{a / 100}"], [f"{a + 5}\\%"]
    if kind == "units":
        s = str(a * b)
        return s, [f"{s} cm", f"{s} \\text{{ cm}}^2", s], [f"{a * b + 2} cm"]
    s = rng.choice(["isosceles", "parallel", "Paris", "obtuse"])
    return s, [s, s.capitalize() + "."], ["acute"]


def wrap(rng: random.Random, answer: str) -> str:
    style = rng.random()
    if style < 0.75:
        return f"<think>{reasoning(rng)}</think><answer>{answer}</answer>"
    if style < 0.9:
        return f"{reasoning(rng)} so the final answer is \\boxed{{{answer}}}."
    if style < 0.97:
        return f"{reasoning(rng)} The answer is {answer}"
    return reasoning(rng)  # truncated: no answer at all


def math_batch(rng: random.Random, n: int, group: int = 8):
    completions, solutions = [], []
    while len(completions) < n:
        sol, right, wrong = math_problem(rng)
        candidates = right + wrong
        for _ in range(group):
            completions.append(wrap(rng, rng.choice(candidates)))
            solutions.append(sol)
    return completions[:n], solutions[:n]


def distinct_math_batch(rng: random.Random, n: int):
    completions, solutions = [], []
    for k in range(n):
        sol, right, wrong = math_problem(rng)
        completions.append(wrap(rng, rng.choice(right + wrong)))
        solutions.append(sol + ("" if k % 2 else " "))  # keep the pairs distinct
    return completions, solutions


def mcq_batch(rng: random.Random, n: int):
    completions, solutions, problems = [], [], []
    animals = ["cat", "dog", "fish", "bird", "horse"]
    while len(completions) < n:
        k = rng.randint(3, 5)
        opts = rng.sample(animals, k)
        problem = "Which animal is shown?\n" + "\n".join(f"{'ABCDE'[i]}. {o}" for i, o in enumerate(opts))
        gold = rng.randrange(k)
        sol = rng.choice(["ABCDE"[gold], opts[gold]])
        for _ in range(8):
            letter = "ABCDE"[rng.choice([gold, gold, rng.randrange(k)])]
            form = rng.choice([letter, f"({letter})", f"{letter}.", f"The answer is {letter}", f"**{letter}**",
                               f"{letter}. {opts['ABCDE'.index(letter)]}"])
            completions.append(wrap(rng, form))
            solutions.append(sol)
            problems.append(problem)
    return completions[:n], solutions[:n], problems[:n]


NUMBER_WORDS = "zero one two three four five six seven eight nine ten eleven twelve".split()


def count_batch(rng: random.Random, n: int):
    completions, solutions = [], []
    while len(completions) < n:
        c = rng.randint(0, 12)
        for _ in range(8):
            v = rng.choice([c, c, c + 1, max(0, c - 1)])
            form = rng.choice([str(v), NUMBER_WORDS[v] if v < len(NUMBER_WORDS) else str(v), f"There are {v} apples."])
            completions.append(wrap(rng, form))
            solutions.append(c)
    return completions[:n], solutions[:n]


def box_batch(rng: random.Random, n: int):
    completions, solutions = [], []
    while len(completions) < n:
        x, y = rng.uniform(0, 400), rng.uniform(0, 300)
        w, h = rng.uniform(20, 200), rng.uniform(20, 200)
        gold = [round(x), round(y), round(x + w), round(y + h)]
        for _ in range(8):
            p = [v + rng.gauss(0, 15) for v in gold]
            if rng.random() < 0.05:
                p = [p[2], p[1], p[0], p[3]]  # inverted
            box = ", ".join(f"{v:.0f}" for v in p)
            form = rng.choice([f"[{box}]", f'{{"bbox_2d": [{box}], "label": "dog"}}',
                               "<|box_start|>({:.0f},{:.0f}),({:.0f},{:.0f})<|box_end|>".format(*p)])
            if rng.random() < 0.03:
                form = "the dog on the left"
            completions.append(f"<think>{reasoning(rng, 30, 120)}</think><answer>{form}</answer>")
            solutions.append(gold)
    return completions[:n], solutions[:n]


def detection_batch(rng: random.Random, n: int):
    completions, solutions = [], []
    labels = ["person", "car", "dog", "bicycle"]
    while len(completions) < n:
        gt = []
        for _ in range(rng.randint(1, 10)):
            x, y = rng.uniform(0, 500), rng.uniform(0, 400)
            w, h = rng.uniform(10, 150), rng.uniform(10, 150)
            gt.append({"bbox_2d": [round(x), round(y), round(x + w), round(y + h)], "label": rng.choice(labels)})
        sol = json.dumps(gt)
        for _ in range(8):
            pred = []
            for g in gt:
                if rng.random() < 0.8:
                    pred.append({"bbox_2d": [round(v + rng.gauss(0, 8)) for v in g["bbox_2d"]],
                                 "label": g["label"] if rng.random() < 0.9 else rng.choice(labels)})
            for _ in range(rng.randint(0, 3)):
                x, y = rng.uniform(0, 500), rng.uniform(0, 400)
                pred.append({"bbox_2d": [round(x), round(y), round(x + 50), round(y + 50)], "label": rng.choice(labels)})
            rng.shuffle(pred)
            completions.append(f"<think>{reasoning(rng, 20, 80)}</think><answer>{json.dumps(pred)}</answer>")
            solutions.append(sol)
    return completions[:n], solutions[:n]


def ocr_batch(rng: random.Random, n: int):
    completions, solutions = [], []
    alphabet = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJ0123456789.,"
    while len(completions) < n:
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(50, 600)))
        for _ in range(8):
            noisy = list(text)
            for _ in range(rng.randint(0, len(text) // 10)):
                i = rng.randrange(len(noisy))
                noisy[i] = rng.choice(alphabet)
            completions.append(f"<answer>{''.join(noisy)}</answer>")
            solutions.append(text)
    return completions[:n], solutions[:n]


def anls_batch(rng: random.Random, n: int):
    completions, solutions = [], []
    answers = ["12 March 2019", "Acme Corporation", "$1,250.00", "John Smith", "page 4", "Total revenue"]
    while len(completions) < n:
        gold = rng.sample(answers, 2)
        for _ in range(8):
            a = rng.choice(gold + answers)
            if rng.random() < 0.3:
                a = a.lower().replace("a", "", 1)
            completions.append(f"<answer>{a}</answer>")
            solutions.append(gold)
    return completions[:n], solutions[:n]


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="math-verify worker processes (default min(2, CPUs))")
    parser.add_argument("--timeout", type=float, default=5.0, help="math-verify per-sample deadline, seconds")
    parser.add_argument("--pathological", type=int, default=4, help="pathological samples in the timeout batch")
    args = parser.parse_args(argv)

    reset_plugin_manager()
    import mmr1_math

    rng = random.Random(args.seed)
    n = args.n
    rows = []

    def row(name, seconds, out, note=""):
        scored = [v for v in out if v is not None]
        mean = sum(scored) / len(scored) if scored else float("nan")
        rows.append((name, n, seconds, n / seconds, mean, note))

    math_opts = {"timeout": args.timeout}
    if args.workers is not None:
        math_opts["workers"] = args.workers
    completions, solutions = math_batch(rng, n)
    acc = mmr1.get_reward("accuracy")
    mmr1_math.shutdown()
    mmr1_math.reset_stats()
    t, out = timed(acc, completions, solution=solutions, **math_opts)
    row("accuracy", t, out, "GRPO-shaped, first call (starts the workers)")
    st = mmr1_math.stats()
    t, out = timed(acc, completions, solution=solutions, **math_opts)
    row("accuracy", t, out, "GRPO-shaped, warm")
    fresh_c, fresh_s = math_batch(random.Random(args.seed + 1), n)
    t, out = timed(acc, fresh_c, solution=fresh_s, **math_opts)
    row("accuracy", t, out, "GRPO-shaped, new batch, warm")
    dc, ds = distinct_math_batch(random.Random(args.seed + 2), n)
    t, out = timed(acc, dc, solution=ds, **math_opts)
    row("accuracy", t, out, "1,024 distinct pairs, warm (worst case)")
    t, out = timed(mmr1.get_reward("format"), completions)
    row("format", t, out)
    t, out = timed(mmr1.get_reward("format"), completions, answer_only=True)
    row("format (answer_only)", t, out)

    c, s, p = mcq_batch(rng, n)
    t, out = timed(mmr1.get_reward("mcq"), c, solution=s, problem=p)
    row("mcq", t, out)
    c, s = count_batch(rng, n)
    t, out = timed(mmr1.get_reward("count"), c, solution=s)
    row("count", t, out)
    c, s = box_batch(rng, n)
    t, out = timed(mmr1.get_reward("iou"), c, solution=s)
    row("iou", t, out)
    t, out = timed(mmr1.get_reward("perpo_reward"), c, solution=s)
    row("perpo_reward", t, out)
    c, s = detection_batch(rng, n)
    t, out = timed(mmr1.get_reward("detection_ap"), c, solution=s)
    row("detection_ap", t, out, "1-10 objects per image")
    t, out = timed(mmr1.get_reward("detection_ap50"), c, solution=s)
    row("detection_ap50", t, out, "1-10 objects per image")
    c, s = ocr_batch(rng, n)
    t, out = timed(mmr1.get_reward("ocr_edit_distance"), c, solution=s)
    row("ocr_edit_distance", t, out, "50-600 characters")
    c, s = anls_batch(rng, n)
    t, out = timed(mmr1.get_reward("anls"), c, solution=s)
    row("anls", t, out, "2 acceptable answers each")

    # -- the deadline on a batch with pathological samples ------------------------------------------
    patho = [
        "<answer>9^{9^{9^{9}}}</answer>",
        "<answer>10^{10^{10^{10}}}</answer>",
        "<answer>" + "\\frac{" * 300 + "1" + "}{2}" * 300 + "</answer>",
        "<answer>(10^{100})!</answer>",
        "<answer>" + "(" * 2000 + "1" + ")" * 2000 + "</answer>",
        "<answer>2^{2^{2^{2^{2^{2^{2}}}}}}</answer>",
    ]
    k = max(0, min(args.pathological, len(patho)))
    pc, ps = math_batch(random.Random(args.seed + 3), n - k)
    pc = pc + patho[:k]
    ps = ps + ["5"] * k
    mmr1_math.reset_stats()
    before = mmr1_math.timeouts()
    t_patho, out = timed(acc, pc, solution=ps, **math_opts)
    timed_out = mmr1_math.timeouts() - before
    clean_c, clean_s = math_batch(random.Random(args.seed + 3), n - k)
    t_clean, _ = timed(acc, clean_c, solution=clean_s, **math_opts)

    cpus = os.cpu_count()
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    print(f"machine: {platform.machine()}, {cpus} CPUs, Python {sys.version.split()[0]}, "
          f"load average {os.getloadavg()[0]:.2f} at the end")
    print(f"math workers: {args.workers or min(2, os.cpu_count() or 1)}, timeout {args.timeout:g} s; "
          f"first call fast path {st['fast_path']}/{st['samples']} samples, "
          f"{st['verified']} distinct pairs to math-verify\n")
    print("| reward | completions | seconds | completions/s | mean reward | batch |")
    print("|---|---:|---:|---:|---:|---|")
    for name, count, seconds, rate, mean, note in rows:
        print(f"| {name} | {count} | {seconds:.3f} | {rate:,.0f} | {mean:.3f} | {note} |")
    print()
    print(f"pathological batch: {n - k} normal + {k} pathological completions in {t_patho:.2f} s, "
          f"{timed_out} timed out (deadline {args.timeout:g} s each); "
          f"the same {n - k} normal completions alone, warm: {t_clean:.2f} s")
    print(f"pathological scores: {out[-k:] if k else []}; stats: {mmr1_math.stats()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
