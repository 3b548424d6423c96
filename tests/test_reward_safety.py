"""Rewards treat model output as data: hostile strings are never executed, and pathological math is
bounded by the accuracy reward's deadline on any thread and in forked (dataloader-like) workers."""

import multiprocessing
import threading
import time

import pytest

import mmr1
from mmr1.plugins import reset_plugin_manager

TIMEOUT_S = 2.0  # the configured per-sample deadline in these tests
BOUND_S = 3 * TIMEOUT_S  # a generous upper bound, not a timing benchmark

FIRST_PARTY = ["format", "r1v_format", "accuracy", "r1v_acc", "mcq", "count", "iou", "perpo_reward",
               "detection_ap", "detection_ap50", "ocr_edit_distance", "perpo_ocr_edit_distance_reward", "anls"]


@pytest.fixture(scope="module")
def reward():
    reset_plugin_manager()
    return mmr1.get_reward


@pytest.fixture
def mmr1_math():
    import mmr1_math

    return mmr1_math


def _hostile(marker):
    m = str(marker)
    py = f"__import__('os').system('touch {m}')"
    return [
        py,
        f"<answer>{py}</answer>",
        f"<think>x</think><answer>{py}</answer>",
        f"<answer>[{py}, 0, 10, 10]</answer>",
        f"<answer>({py}, 0), (10, 10)</answer>",
        "<answer>[{'bbox_2d': " + py + ", 'label': 'x'}]</answer>",
        "<answer>[{'bbox_2d': [0, 0, 10, 10], 'label': " + py + "}]</answer>",
        f"<answer>{{\"bbox_2d\": [0, 0, 10, 10], \"label\": \"x\", \"score\": {py}}}</answer>",
        f"<answer>open('{m}', 'w').write('x')</answer>",
        f"<answer>exec(\"open('{m}', 'w')\")</answer>",
        f"<answer>eval(\"open('{m}','w')\")</answer>",
        f"<answer>(lambda: open('{m}', 'w'))()</answer>",
        f"<answer>[c for c in ().__class__.__base__.__subclasses__() if c.__name__ == 'Popen'][0]"
        f"(['touch', '{m}'])</answer>",
        f"\\boxed{{{py}}}",
        f"<answer>$\\immediate\\write18{{touch {m}}}$</answer>",
        f"<answer>\\input{{{m}}}</answer>",
        f"<answer>1 + {py}</answer>",
        f"<answer>Symbol('x').__class__.__init__.__globals__['os'].system('touch {m}')</answer>",
        f"```python\nimport os; os.system('touch {m}')\n```",
        f"<answer>{{'__class__': {py}}}</answer>",
    ]


def _solutions(name):
    return {
        "accuracy": "3", "r1v_acc": "3", "mcq": "B", "count": 3,
        "iou": [0, 0, 10, 10], "perpo_reward": [0, 0, 10, 10],
        "detection_ap": '[{"bbox_2d": [0, 0, 10, 10], "label": "x"}]',
        "detection_ap50": '[{"bbox_2d": [0, 0, 10, 10], "label": "x"}]',
    }.get(name, "3")


@pytest.mark.parametrize("name", FIRST_PARTY)
def test_hostile_completions_are_never_executed(reward, tmp_path, name):
    marker = tmp_path / f"pwned_{name}"
    completions = _hostile(marker)
    fn = reward(name)
    out = fn(completions, solution=[_solutions(name)] * len(completions),
             problem=["Q? A. cat\nB. dog"] * len(completions), prompts=[None] * len(completions))
    assert len(out) == len(completions)
    assert all(v is None or isinstance(v, float) for v in out)
    assert not marker.exists()
    assert list(tmp_path.iterdir()) == []


def test_hostile_solutions_are_never_executed(reward, tmp_path):
    marker = tmp_path / "pwned_solution"
    hostile = f"__import__('os').system('touch {marker}')"
    for name in FIRST_PARTY:
        reward(name)(["<answer>3</answer>"], solution=[hostile], problem=[hostile])
    assert not marker.exists()


def _pathological_batch(tag):
    """Normal answers around one pathological one; ``tag`` keeps the batch unseen (not cached)."""
    return (
        ["<answer>\\frac{1}{2}</answer>", f"<answer>9^{{9^{{9^{{9}}}}}} + {tag}</answer>", "<answer>0.5</answer>"],
        ["0.5", "5", "\\frac{1}{2}"],
    )


def _warm(fn):
    fn(["<answer>\\frac{2}{4}</answer>"], solution=["0.5"], timeout=TIMEOUT_S, workers=1)


def test_pathological_math_is_bounded_and_counted(reward, mmr1_math):
    fn = reward("accuracy")
    _warm(fn)
    before = mmr1_math.timeouts()
    completions, solutions = _pathological_batch(1)
    start = time.monotonic()
    out = fn(completions, solution=solutions, timeout=TIMEOUT_S, workers=1)
    elapsed = time.monotonic() - start
    assert out == [1.0, 0.0, 1.0]
    assert mmr1_math.timeouts() == before + 1
    assert elapsed < BOUND_S
    # the same pair again is remembered: scored 0 and counted, without another wait
    start = time.monotonic()
    assert fn(completions[1:2], solution=solutions[1:2], timeout=TIMEOUT_S) == [0.0]
    assert time.monotonic() - start < TIMEOUT_S
    assert mmr1_math.timeouts() == before + 2
    # and the restarted worker still scores normal answers
    assert fn(["<answer>2\\sqrt{2}</answer>"], solution=["\\sqrt{8}"], timeout=TIMEOUT_S) == [1.0]


def test_timeout_works_off_the_main_thread(reward, mmr1_math):
    fn = reward("accuracy")
    _warm(fn)
    before = mmr1_math.timeouts()
    completions, solutions = _pathological_batch(2)
    result = {}

    def work():
        start = time.monotonic()
        result["out"] = fn(completions, solution=solutions, timeout=TIMEOUT_S, workers=2)
        result["elapsed"] = time.monotonic() - start

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(BOUND_S + 30)  # start-up of a second worker is not part of the deadline
    assert not thread.is_alive(), "the accuracy reward hung on a background thread"
    assert result["out"] == [1.0, 0.0, 1.0]
    assert mmr1_math.timeouts() == before + 1
    assert result["elapsed"] < BOUND_S + 10


def _in_daemon_child(queue):
    import mmr1_math

    fn = mmr1.get_reward("accuracy")
    completions, solutions = _pathological_batch(3)
    start = time.monotonic()
    out = fn(completions, solution=solutions, timeout=TIMEOUT_S, workers=1)
    queue.put((out, mmr1_math.timeouts(), time.monotonic() - start))


def test_timeout_works_in_a_daemonic_forked_worker(reward, mmr1_math):
    """Like a DataLoader worker: a forked daemon process (which multiprocessing forbids to have
    children of its own) inheriting this process's pool."""
    _warm(reward("accuracy"))
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_in_daemon_child, args=(queue,), daemon=True)
    child.start()
    try:
        out, child_timeouts, elapsed = queue.get(timeout=BOUND_S + 60)
    finally:
        child.join(10)
        if child.is_alive():
            child.kill()
    assert out == [1.0, 0.0, 1.0]
    assert child_timeouts >= 1
    assert elapsed < BOUND_S + 30  # includes starting the child's own worker
    # the parent's worker was not disturbed by the child
    assert reward("accuracy")(["<answer>0.25</answer>"], solution=["\\frac14"]) == [1.0]


@pytest.mark.parametrize(
    "completion",
    [
        "<answer>" + "\\frac{" * 300 + "1" + "}{2}" * 300 + "</answer>",  # deeply nested LaTeX
        "<answer>" + "(" * 2000 + "1" + ")" * 2000 + "</answer>",
        "<answer>" + "1+" * 50_000 + "1</answer>",  # 100 KB answer
        "x" * 100_000 + " so the answer is 9^{9^{9^{9}}}",  # 100 KB completion, no tags
        "<answer>" + "\\sqrt{" * 1000 + "2" + "}" * 1000 + "</answer>",
        "<answer>10^{10^{10^{10}}}</answer>",
        "<answer>(10^{100})!</answer>",
        "\\boxed{" * 30_000,  # thousands of unclosed boxes: the extraction itself must stay linear
        "<answer>5" + " " * 100_000 + "cm</answer>",  # a whitespace run before a unit
        "<answer>" + "\\text{" * 20_000 + "</answer>",
        "<answer>" + "$" * 100_000 + "</answer>",
    ],
    ids=["nested-frac", "nested-parens", "100kb-answer", "100kb-whole", "nested-sqrt", "tower", "factorial",
         "unclosed-boxes", "whitespace-unit", "unclosed-text", "dollars"],
)
def test_pathological_inputs_return_within_the_bound(reward, completion):
    fn = reward("accuracy")
    _warm(fn)
    start = time.monotonic()
    out = fn([completion], solution=["5"], timeout=TIMEOUT_S, workers=1)
    assert time.monotonic() - start < BOUND_S
    # "5 <100,000 spaces> cm" is, after all, a right answer with a unit
    assert out == ([1.0] if completion.startswith("<answer>5 ") else [0.0])


HUGE = [
    "<answer>" + "[" * 5000 + "{'bbox_2d': [1, 2, 3, 4]}" * 3000 + "</answer>" + "A" * 100_000,
    "(" * 100_000,
    "\\boxed{" * 30_000,
    "<answer>answer" + " " * 100_000 + "is</answer>",
    "<answer>" + "answer is " * 10_000 + "</answer>",
    "<answer>[" + " " * 100_000 + "1, 2, 3, 4]</answer>",
    "<answer>[1" + "1" * 100_000 + ", 2, 3, 4]</answer>",
    "```" * 30_000,
    "<answer>" + "{" * 50_000 + "}" * 50_000 + "</answer>",
    "<answer>" + '{"bbox_2d": [1, 2, 3, 4], "label": "a"}, ' * 3000 + "</answer>",
    "<answer>" + "1," * 50_000 + "</answer>",
    "<think>" * 20_000 + "<answer>" * 20_000,
]


@pytest.mark.parametrize("name", [n for n in FIRST_PARTY if n not in ("accuracy", "r1v_acc")])
def test_other_rewards_are_fast_on_huge_inputs(reward, name):
    start = time.monotonic()
    out = reward(name)(HUGE, solution=[_solutions(name)] * len(HUGE), problem=["Q? A. a\nB. b"] * len(HUGE))
    assert len(out) == len(HUGE)
    assert time.monotonic() - start < BOUND_S


def test_a_worker_killed_while_idle_is_replaced(reward, mmr1_math):
    from mmr1_math import _pool

    fn = reward("accuracy")
    _warm(fn)
    crashes = mmr1_math.stats()["crashes"]
    pool = _pool.get_pool()
    for w in pool._workers:
        if w is not None:
            w.proc.kill()
            w.proc.wait()
    assert fn(["<answer>\\frac{3}{6}</answer>"], solution=["0.5"]) == [1.0]
    assert mmr1_math.stats()["crashes"] == crashes
