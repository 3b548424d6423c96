"""Hostile input and hedging: the text rewards stay linear and capped, accuracy has a per-call budget,
and an answer that lists several candidates earns nothing.

No wall-clock thresholds: the mechanisms are asserted (line events counted, the strings that reach
the edit distance measured, a fake clock and a fake math-verify worker)."""

import random
import sys

import pytest

import mmr1
from mmr1.plugins import reset_plugin_manager


@pytest.fixture(scope="module")
def reward():
    reset_plugin_manager()
    return mmr1.get_reward


# -- mcq: option parsing is linear ------------------------------------------------------------------
def _old_parse_options(problem):
    """The quadratic scan parse_options replaced (a scan from every "A" to the end), as a reference."""
    from mmr1_math.choice import _OPTION_MARK, LETTERS, options_of_run

    marks = [(m.group(1) or m.group(2) or m.group(3), m.start(), m.end()) for m in _OPTION_MARK.finditer(problem)]
    best = []
    for k, (letter, _, _) in enumerate(marks):
        if letter != "A":
            continue
        run = [marks[k]]
        for mark in marks[k + 1 :]:
            if len(run) == len(LETTERS):
                break
            if mark[0] == LETTERS[len(run)]:
                run.append(mark)
        if len(run) >= 2:
            best = run
    return options_of_run(problem, best)


def test_parse_options_matches_the_old_scan_on_random_problems():
    from mmr1_math.choice import parse_options

    rng = random.Random(0)
    pieces = ["A. ", "B. ", "C. ", "D. ", "E. ", "(A) ", "(B) ", "(C) ", "cat ", "dog ", "\n", "Q? ", "12 "]
    for _ in range(400):
        problem = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 40)))
        assert parse_options(problem) == _old_parse_options(problem), problem


def _line_events(fn, *args) -> int:
    """How many lines of mmr1_math/choice.py run during ``fn(*args)`` (deterministic, not a timing)."""
    from mmr1_math import choice

    target = choice.__file__
    count = 0

    def local(frame, event, arg):
        nonlocal count
        if event == "line":
            count += 1
        return local

    def tracer(frame, event, arg):
        return local if frame.f_code.co_filename == target else None

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        fn(*args)
    finally:
        sys.settrace(previous)
    return count


def test_parse_options_work_grows_linearly():
    from mmr1_math.choice import parse_options

    small = _line_events(parse_options, "A. " * 250)
    large = _line_events(parse_options, "A. " * 1000)
    # 4x the marks: a linear scan does about 4x the work, the old scan from every "A" about 16x
    assert large / small < 6, (small, large)


def test_mcq_on_twenty_thousand_option_marks(reward):
    from mmr1_math.choice import parse_options

    hostile = "A. " * 20000
    assert parse_options(hostile) == {}  # no B anywhere: no run of options
    assert parse_options(hostile + "B. dog") == {"A": "", "B": "dog"}
    fn = reward("mcq")
    assert fn(["A"], solution=["A"], problem=[hostile]) == [1.0]
    assert fn([hostile], solution=["A"], problem=["Q?\nA. cat\nB. dog"]) == [1.0]  # one letter, repeated


# -- ocr_edit_distance / anls: rapidfuzz, equal to the plain DP, and capped -----------------------------
def _dp(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def _ref_similarity(a: str, b: str) -> float:
    longest = max(len(a), len(b))
    return 1.0 if longest == 0 else 1.0 - _dp(a, b) / longest


def test_ocr_and_anls_equal_a_reference_dp_on_short_strings(reward):
    rng = random.Random(1)
    ocr, anls = reward("ocr_edit_distance"), reward("anls")
    for _ in range(300):
        a = "".join(rng.choice("abcAB ") for _ in range(rng.randint(0, 12)))
        b = "".join(rng.choice("abcAB ") for _ in range(rng.randint(0, 12)))
        pa, pb = " ".join(a.split()), " ".join(b.split())
        assert ocr([f"<answer>{a}</answer>"], solution=[b]) == [pytest.approx(max(0.0, _ref_similarity(pa, pb)))]
        for threshold in (0.5, 0.3, 1.0):
            sim = _ref_similarity(pa.lower(), pb.lower())
            expected = sim if 1.0 - sim < threshold else 0.0
            assert anls([a], solution=[[b, "zz"]], threshold=threshold) == [
                pytest.approx(max(expected, _anls_one(pa.lower(), "zz", threshold)))
            ]


def _anls_one(a, b, threshold):
    sim = _ref_similarity(a, b)
    return sim if 1.0 - sim < threshold else 0.0


@pytest.fixture
def distance_spy(monkeypatch):
    """Every (len(answer), len(solution)) that reaches rapidfuzz's Levenshtein.distance."""
    from rapidfuzz.distance import Levenshtein

    from mmr1_vision import text

    seen = []

    class Spy:
        @staticmethod
        def distance(a, b, **kwargs):
            seen.append((len(a), len(b)))
            return Levenshtein.distance(a, b, **kwargs)

    monkeypatch.setattr(text, "Levenshtein", Spy)
    return seen


@pytest.mark.parametrize("name", ["ocr_edit_distance", "anls"])
def test_the_edit_distance_sees_capped_strings(reward, distance_spy, name):
    from mmr1_vision.text import MAX_SOLUTION_CHARS, answer_cap

    rng = random.Random(2)
    mb = "".join(rng.choice("abcdefgh ") for _ in range(1_000_000))
    mb2 = "".join(rng.choice("abcdefgh ") for _ in range(1_000_000))
    fn = reward(name)
    out = fn([mb, mb, "hello", mb[:30_000]], solution=["hello world", mb2, mb2, mb[:25_000]])
    assert len(out) == 4
    assert out[0] == 0.0  # 1 MB against 11 characters: over the cap, scored 0 without a comparison
    for a, b in distance_spy:
        assert b <= MAX_SOLUTION_CHARS
        assert a <= max(answer_cap("x" * MAX_SOLUTION_CHARS), MAX_SOLUTION_CHARS)
    assert max(a * b for a, b in distance_spy) <= MAX_SOLUTION_CHARS**2


def test_anls_skips_pairs_its_threshold_already_rules_out(reward, distance_spy):
    """The distance is at least the length difference: with threshold 0.5, an answer more than twice
    as long (or short) as the solution cannot score, and is not compared (the result is exact)."""
    fn = reward("anls")
    assert fn(["abcdefghijk", "abcde", "ab"], solution=["abcde", "abcdefghijk", "abcde"]) == [0.0, 0.0, 0.0]
    assert distance_spy == []
    assert fn(["abcdef"], solution=["abcde"]) == [pytest.approx(1 - 1 / 6)]
    assert distance_spy == [(6, 5)]


def test_an_overlong_answer_scores_zero_not_its_prefix(reward, distance_spy):
    """A right answer followed by junk past the cap is not scored on its (right) prefix."""
    from mmr1_vision.text import answer_cap

    gold = "The quick brown fox"
    fn = reward("ocr_edit_distance")
    just_under = gold + "x" * (answer_cap(gold) - len(gold))
    assert fn([gold + "x" * answer_cap(gold)], solution=[gold]) == [0.0]
    assert distance_spy == []
    # at the cap it is still compared, and its exact score is already below 1/8
    (score,) = fn([just_under], solution=[gold])
    assert distance_spy == [(answer_cap(gold), len(gold))]
    assert 0.0 < score < 1 / 8


# -- accuracy: a per-call budget ----------------------------------------------------------------------
class _FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def fake_pool(monkeypatch):
    """math-verify workers replaced by fakes on a fake clock: a task whose answer is ``\\frac{k}{2k}``
    costs ``cost`` fake seconds; starting a worker costs ``start_cost``. ``limits`` records the deadline
    each task was sent with."""
    from mmr1_math import _pool, accuracy

    clock = _FakeClock()
    state = {"cost": 4.0, "start_cost": 0.0, "limits": [], "started": 0}

    class FakeWorker:
        def __init__(self, cpu_guard_s, memory_mb):
            state["started"] += 1
            clock.now += state["start_cost"]
            self.dead = False

        def alive(self):
            return not self.dead

        def ask(self, task, timeout):
            state["limits"].append(timeout)
            if state["cost"] > timeout:
                clock.now += timeout
                return _pool.TIMEOUT, {}
            clock.now += state["cost"]
            return _pool.OK, {"i": task["i"], "ok": True}

        def kill(self):
            self.dead = True

    monkeypatch.setattr(_pool, "_clock", clock)
    monkeypatch.setattr(_pool, "_Worker", FakeWorker)
    monkeypatch.setattr(_pool, "_POOL", _pool.VerifyPool())
    accuracy.reset_stats()
    yield state, clock
    accuracy.reset_stats()


def _slow_batch(n, tag=0):
    # distinct (solution, answer) pairs that no string / plain-number shortcut decides
    return [f"<answer>\\frac{{{k + tag}}}{{{2 * (k + tag)}}}</answer>" for k in range(1, n + 1)], ["0.5"] * n


def test_accuracy_stops_at_its_budget_and_leaves_the_rest_unscored(reward, fake_pool):
    import mmr1_math

    state, clock = fake_pool
    completions, solutions = _slow_batch(6)
    start = clock.now
    out = reward("accuracy")(completions, solution=solutions, timeout=5, budget=10, workers=1)
    # 4 s each: two fit in 10 s; the third gets the 2 s left and is cut short; the rest are not sent
    assert out == [1.0, 1.0, None, None, None, None]
    assert state["limits"] == [5, 5, pytest.approx(2.0)]
    assert clock.now - start <= 10 + 1e-9
    stats = mmr1_math.stats()
    assert stats["over_budget"] == 4
    assert stats["timeouts"] == 0  # cut short by the budget is not a timeout: not remembered either
    # with a fresh budget the same pairs are scored (none was poisoned)
    assert reward("accuracy")(completions[2:], solution=solutions[2:], timeout=5, budget=20, workers=1) == [1.0] * 4


def test_accuracy_without_a_budget_scores_every_sample(reward, fake_pool):
    state, clock = fake_pool
    completions, solutions = _slow_batch(6)
    assert reward("accuracy")(completions, solution=solutions, timeout=5, budget=0, workers=1) == [1.0] * 6
    assert state["limits"] == [5] * 6


def test_accuracy_default_budget_bounds_sixteen_slow_samples(reward, fake_pool):
    """The measured case: 16 samples that each run into the 5 s deadline. Without a budget that is
    16 x 5 s (+ restarts) on one worker; the default budget (20 s) stops it after four."""
    import mmr1_math
    from mmr1_math.accuracy import DEFAULT_BUDGET_S

    state, clock = fake_pool
    state["cost"] = 100.0  # every sample runs past its own deadline
    completions, solutions = _slow_batch(16, tag=100)
    start = clock.now
    out = reward("accuracy")(completions, solution=solutions, timeout=5, workers=1)
    assert clock.now - start <= DEFAULT_BUDGET_S + 1e-9
    assert out[:4] == [0.0] * 4  # ran past their own 5 s: scored 0 and counted
    assert out[4:] == [None] * 12
    assert mmr1_math.stats()["timeouts"] == 4
    assert mmr1_math.stats()["over_budget"] == 12


def test_starting_the_first_worker_is_not_charged_to_the_budget(reward, fake_pool):
    state, clock = fake_pool
    state["start_cost"] = 30.0  # a slow machine: the first start takes longer than the whole budget
    completions, solutions = _slow_batch(3, tag=200)
    out = reward("accuracy")(completions, solution=solutions, timeout=5, budget=10, workers=1)
    assert out[:2] == [1.0, 1.0]


def test_accuracy_budget_option_is_checked(reward):
    from mmr1_math import _pool
    from mmr1_math.accuracy import DEFAULT_BUDGET_S, _deadline

    fn = reward("accuracy")
    with pytest.raises(ValueError, match="budget"):
        fn(["<answer>1</answer>"], solution=["1"], timeout=5, budget=2)
    with pytest.raises(ValueError, match="budget"):
        fn(["<answer>1</answer>"], solution=["1"], budget="soon")
    now = _pool._clock()
    assert _deadline(None, 5.0) - now == pytest.approx(DEFAULT_BUDGET_S, abs=1.0)
    assert _deadline(None, 30.0) - now == pytest.approx(30.0, abs=1.0)  # never below the own timeout
    assert _deadline(0, 5.0) is None


def test_inline_fallback_respects_the_budget(monkeypatch):
    from mmr1_math import _mv_worker, _pool
    from mmr1_math.accuracy import _inline

    clock = _FakeClock()
    monkeypatch.setattr(_pool, "_clock", clock)

    def slow(task, timeout=None):
        clock.now += 4.0
        return {"i": task["i"], "ok": True}

    monkeypatch.setattr(_mv_worker, "score_task", slow)
    out = _inline([{"i": k} for k in range(5)], timeout=5.0, deadline=clock.now + 10)
    assert [s for s, _ in out] == [_pool.OK, _pool.OK, _pool.OK, _pool.BUDGET, _pool.BUDGET]


# -- hedging --------------------------------------------------------------------------------------------
PROBLEM = "Which animal barks?\nA. cat\nB. dog\nC. fish\nD. bird"

HEDGED = [
    # (reward, completion, solution): each earned 1.0 before
    ("accuracy", "It is 7, or maybe 3", "3"),
    ("accuracy", "<answer>7 or 3</answer>", "3"),
    ("accuracy", "<answer>x = 7 or x = 3</answer>", "3"),
    ("accuracy", "\\boxed{7} or \\boxed{3}", "3"),
    ("accuracy", "1 2 3 4 5", "5"),
    ("count", "1 2 3 4 5", 5),
    ("count", "<answer>1 2 3 4 5</answer>", 5),
    ("count", "<answer>4 or 5</answer>", 5),
    ("count", "It is 4, or maybe 5", 5),
    ("count", "The answer is 4 or 5.", 5),
    ("count", "<answer>four or five</answer>", 5),
    ("count", "<answer>4</answer> or <answer>5</answer>", 5),
    ("mcq", "the answer is A, the answer is B", "B"),
    ("mcq", "A. B. C. D.", "A"),
    ("mcq", "The answer is A or B.", "A"),
    ("mcq", "<answer>A</answer> or <answer>B</answer>", "B"),
    ("mcq", "\\boxed{A}, \\boxed{B}", "B"),
]

LEGITIMATE = [
    ("accuracy", "<answer>(1, 2)</answer>", "(1, 2)"),
    ("accuracy", "<answer>[1, 2)</answer>", "[1,2)"),
    ("accuracy", "<answer>\\{1, 2\\}</answer>", "\\{2,1\\}"),
    ("accuracy", "<answer>x = 1 \\text{ or } x = 2</answer>", "1 \\text{ or } 2"),
    ("accuracy", "<answer>3.5</answer>", "3.5"),
    ("accuracy", "<answer>1,000</answer>", "1000"),
    ("accuracy", "<answer>x=3</answer>", "3"),
    ("accuracy", "<answer>The answer is 7, since 3 + 4 = 7</answer>", "7"),
    ("accuracy", "The final answer is 7.", "7"),
    ("accuracy", "I see 2 red and 3 blue, so 5 in total.", "5"),
    ("accuracy", "\\boxed{1} then \\boxed{\\frac{1}{2}}", "0.5"),
    ("accuracy", "<answer>\\frac{1}{2} \\text{ m}^2</answer>", "0.5"),
    ("accuracy", "<answer>3, i.e. 3.0</answer>", "3"),
    ("accuracy", "<answer>2\\sqrt{2} \\approx 2.83</answer>", "\\sqrt{8}"),
    ("count", "<answer>5</answer>", 5),
    ("count", "<answer>five</answer>", 5),
    ("count", "<answer>twenty-one</answer>", 21),
    ("count", "<answer>one hundred and five</answer>", 105),
    ("count", "<answer>1,000</answer>", 1000),
    ("count", "<answer>5 (five)</answer>", 5),
    ("count", "<answer>There are 7 apples.</answer>", 7),
    ("count", "<answer>2 + 3 = 5</answer>", 5),
    ("count", "I see 2 red and 3 blue, so 5 in total.", 5),
    ("count", "Let me count: 1, 2, 3, 4, 5. So there are 5.", 5),
    ("count", "<answer>3</answer> <answer>5</answer>", 5),
    ("mcq", "<answer>The answer is B. B is correct because dogs bark.</answer>", "B"),
    ("mcq", "The answer is B. B is correct because dogs bark.", "B"),
    ("mcq", "The answer is A. Wait, a cat does not bark, so the answer is B.", "B"),
    ("mcq", "<answer>B. A cat does not bark.</answer>", "B"),
    ("mcq", "The answer is B, not A.", "B"),
    ("mcq", "<answer>**B**</answer>", "B"),
    ("mcq", "<answer>(B) dog</answer>", "B"),
    ("mcq", "<answer>A</answer> then <answer>B</answer>", "B"),
]


@pytest.mark.parametrize("name,completion,solution", HEDGED)
def test_hedged_answers_score_zero(reward, name, completion, solution):
    assert reward(name)([completion], solution=[solution], problem=[PROBLEM]) == [0.0]


@pytest.mark.parametrize("name,completion,solution", LEGITIMATE)
def test_single_answers_still_score(reward, name, completion, solution):
    assert reward(name)([completion], solution=[solution], problem=[PROBLEM]) == [1.0]


def test_hedges_are_counted(reward):
    import mmr1_math

    before = mmr1_math.stats()["hedged"]
    reward("accuracy")(["It is 7, or maybe 3", "<answer>3</answer>"], solution=["3", "3"])
    assert mmr1_math.stats()["hedged"] == before + 1
