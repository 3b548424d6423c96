"""trl parity: rewards written for trl's GRPOTrainer (conversational completions, completion_ids,
trainer_state, log_extra / log_metric, async) run unchanged through ``from_trl``; async rewards are
gathered on one loop under the deadline; one reward failing on every completion stops the run."""

import asyncio
import json
import logging
import math
import re
import textwrap
import threading
from pathlib import Path

import pytest

from mmr1.grpo.rewards import RewardFunction, RewardRunner, TrainerState, from_trl, is_async

TEST_REWARDS = str(Path(__file__).parent / "helpers" / "test_rewards_plugin.py")
pytestmark = pytest.mark.usefixtures("fresh_plugins")


# -- rewards written the way trl's documentation and trl.rewards write them ---------------------------
def think_format_reward(completions, **kwargs):
    """1.0 if the reasoning is enclosed in one <think>...</think> block."""
    pattern = r"^<think>(?!.*<think>)(.*?)</think>.*$"
    return [1.0 if re.match(pattern, c[0]["content"], re.DOTALL) else 0.0 for c in completions]


def accuracy_reward(completions, solution, log_extra=None, **kwargs):
    """1.0 if the content equals the solution; logs the gold answer next to each completion."""
    contents = [c[0]["content"] for c in completions]
    if log_extra is not None:
        log_extra("gold", list(solution))
    return [1.0 if c.strip() == s else 0.0 for c, s in zip(contents, solution)]


def reward_len(completions, **kwargs):
    """trl's docs: prefer completions of 20 characters."""
    return [-abs(20 - len(c[0]["content"])) for c in completions]


def reward_ground_truth(completions, ground_truth, **kwargs):
    """trl's docs: a \\boxed{} answer compared with a ground_truth column."""
    matches = [re.search(r"\\boxed\{(.*?)\}", c[0]["content"]) for c in completions]
    return [1.0 if m and m.group(1) == gt else 0.0 for m, gt in zip(matches, ground_truth)]


def get_soft_overlong_punishment(max_completion_len, soft_punish_cache):
    """trl.rewards: a length penalty read from completion_ids."""

    def soft_overlong_punishment_reward(completion_ids, **kwargs):
        out = []
        for ids in completion_ids:
            n = len(ids)
            if n <= max_completion_len - soft_punish_cache:
                out.append(0.0)
            elif n <= max_completion_len:
                out.append((max_completion_len - soft_punish_cache - n) / soft_punish_cache)
            else:
                out.append(-1.0)
        return out

    return soft_overlong_punishment_reward


def curriculum_reward(completions, trainer_state, log_metric=None, **kwargs):
    """Weighted by training progress; logs the weight."""
    weight = (trainer_state.global_step + 1) / trainer_state.max_steps
    if log_metric is not None:
        log_metric("curriculum/weight", weight)
    return [weight * len(c[0]["content"]) for c in completions]


MESSAGES = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "2+2?"}]}]


def _run(fn, completions, **columns):
    runner = RewardRunner([RewardFunction(getattr(fn, "__name__", "r"), fn)], timeout=30)
    return runner, [row[0] for row in runner(completions, **columns)]


def test_trl_rewards_run_unchanged_through_from_trl():
    completions = ["<think>ok</think>4", "no think", r"so \boxed{4}"]
    columns = {"prompts": [MESSAGES] * 3, "solution": ["<think>ok</think>4", "4", "4"],
               "ground_truth": ["4", "4", "4"], "completion_ids": [[1] * 3, [1] * 9, [1] * 12],
               "trainer_state": TrainerState(global_step=1, max_steps=4)}
    expect = {
        think_format_reward: [1.0, 0.0, 0.0],
        accuracy_reward: [1.0, 0.0, 0.0],
        reward_len: [-2.0, -12.0, -8.0],
        reward_ground_truth: [0.0, 0.0, 1.0],
        get_soft_overlong_punishment(10, 4): [0.0, -0.75, -1.0],
        curriculum_reward: [9.0, 4.0, 6.0],
    }
    for fn, values in expect.items():
        _, got = _run(from_trl(fn), completions, **columns)
        assert got == pytest.approx(values), fn
        runner, without = _run(fn, completions, **columns)      # native call: completions are strings
        if fn.__name__ != "soft_overlong_punishment_reward":    # the one that never reads completions
            assert all(math.isnan(v) for v in without) and runner.failures[fn.__name__] == 1, fn


def test_conversational_rule_follows_the_rows_own_prompt_column():
    seen = {}

    def spy(prompts, completions, **kwargs):
        seen.update(prompts=prompts, completions=completions, columns=set(kwargs))
        return [0.0] * len(completions)

    _run(from_trl(spy), ["a", "b"], prompts=[MESSAGES] * 2, solution=["x", "y"])
    assert seen["prompts"] == [MESSAGES] * 2
    assert seen["completions"] == [[{"role": "assistant", "content": "a"}], [{"role": "assistant", "content": "b"}]]
    # a raw string prompt column: trl's standard format, the dataset's prompt and string completions
    _run(from_trl(spy), ["a", "b"], prompts=[MESSAGES] * 2, prompt=["Q1", "Q2"], solution=["x", "y"])
    assert seen["prompts"] == ["Q1", "Q2"] and seen["completions"] == ["a", "b"]
    assert "prompt" not in seen["columns"] and "solution" in seen["columns"]
    # a conversational prompt column is passed as it is, with message completions
    own = [[{"role": "user", "content": "Q"}]] * 2
    _run(from_trl(spy), ["a", "b"], prompts=[MESSAGES] * 2, prompt=own)
    assert seen["prompts"] == own and seen["completions"][0] == [{"role": "assistant", "content": "a"}]


def test_trainer_state_and_log_hooks_go_only_where_the_signature_takes_them():
    calls = {}

    def named(completions, solution, trainer_state, log_metric):
        calls["named"] = trainer_state
        log_metric("named_metric", 2.0)
        log_metric("named_metric", 4.0)
        return [1.0] * len(completions)

    def strict(completions, solution):                         # takes none of them
        return [0.5] * len(completions)

    def takes_all(completions, **kwargs):
        calls["all"] = sorted(k for k in kwargs if k in ("trainer_state", "log_extra", "log_metric"))
        kwargs["log_extra"]("note", ["x"] * len(completions))
        kwargs["log_metric"]("shared", 1.0)
        return [0.0] * len(completions)

    def also_shared(completions, log_metric, **kwargs):
        log_metric("shared", 3.0)
        log_metric("reward", 9.0)                              # a name the trainer uses itself
        return [0.0] * len(completions)

    state = TrainerState(global_step=3, max_steps=10, epoch=0.5)
    runner = RewardRunner([RewardFunction(f.__name__, f) for f in (named, strict, takes_all, also_shared)])
    table = runner(["a", "b"], solution=["s", "t"], trainer_state=state)
    assert [row[:3] for row in table] == [[1.0, 0.5, 0.0]] * 2 and runner.failures == {}
    assert calls["named"] is state and calls["all"] == ["log_extra", "log_metric", "trainer_state"]
    assert runner.extra == {"note": ["x", "x"]}
    assert runner.logged_metrics(taken={"reward"}) == {
        "named_metric": 3.0, "rewards/takes_all/shared": 1.0, "rewards/also_shared/shared": 3.0,
        "rewards/also_shared/reward": 9.0}
    runner(["a"], solution=["s"])                              # outside training: trainer_state is None
    assert calls["named"] is None and runner.extra == {"note": ["x"]}


def test_a_log_extra_of_the_wrong_length_fails_that_reward():
    def bad(completions, log_extra, **kwargs):
        log_extra("col", [1])
        return [1.0] * len(completions)

    runner, got = _run(bad, ["a", "b"])
    assert all(math.isnan(v) for v in got) and runner.failures["bad"] == 1


# -- async -------------------------------------------------------------------------------------------
def test_async_rewards_of_one_call_run_concurrently_on_one_loop():
    """Each of the two waits for the other: they can only finish if they run at the same time."""
    events, loops = {}, []

    def handshake(mine, theirs):
        async def reward(completions, **kwargs):
            loops.append(asyncio.get_running_loop())
            events.setdefault(mine, asyncio.Event()).set()
            await events.setdefault(theirs, asyncio.Event()).wait()
            return [1.0] * len(completions)
        return reward

    async def trl_style(prompts, completions, **kwargs):           # async through from_trl
        await asyncio.sleep(0)
        return [float(len(c[0]["content"])) for c in completions]

    rewards = [RewardFunction("a", handshake("a", "b")), RewardFunction("b", handshake("b", "a")),
               RewardFunction("trl", from_trl(trl_style)), RewardFunction("sync", lambda c, **kw: [0.5] * len(c))]
    assert is_async(rewards[2].fn) and not is_async(rewards[3].fn)
    runner = RewardRunner(rewards, timeout=20)
    table = runner(["xyz"], prompts=[MESSAGES])
    assert table == [[1.0, 1.0, 3.0, 0.5]] and runner.failures == {}
    assert len(loops) == 2 and loops[0] is loops[1]


def test_async_rewards_keep_the_deadline_and_failure_containment(caplog):
    release = threading.Event()

    async def sleeps(completions, **kwargs):
        await asyncio.sleep(3600)

    async def raises(completions, **kwargs):
        raise RuntimeError("async boom")

    async def fine(completions, **kwargs):
        return [0.25] * len(completions)

    runner = RewardRunner([RewardFunction(f.__name__, f) for f in (sleeps, raises, fine)], timeout=0.5)
    with caplog.at_level(logging.WARNING, "mmr1.rewards"):
        table = runner(["a", "b"])
    assert all(math.isnan(r[0]) and math.isnan(r[1]) and r[2] == 0.25 for r in table)
    assert runner.failures == {"sleeps": 1, "raises": 1}
    assert runner.last_failed == [True, True, False] and not runner.last_all_failed
    assert "reward 'sleeps' failed: RewardTimeout: the call ran past reward_timeout (0.5 s)" in caplog.text
    assert "reward 'raises' failed: RuntimeError: async boom" in caplog.text

    async def blocks(completions, **kwargs):                   # blocking code: the loop cannot cancel it
        release.wait()
        return [1.0] * len(completions)

    runner = RewardRunner([RewardFunction("blocks", blocks), RewardFunction("fine", fine)], timeout=0.5)
    try:
        with caplog.at_level(logging.WARNING, "mmr1.rewards"):
            first = runner(["a"])                              # blocks holds the shared loop: fine waits too
            second = runner(["a"])                             # blocks fails at once, fine runs on a new loop
    finally:
        release.set()
    assert math.isnan(first[0][0]) and math.isnan(first[0][1])
    assert math.isnan(second[0][0]) and second[0][1] == 0.25
    assert runner.failures == {"blocks": 2, "fine": 1}
    assert "the shared event loop was held by 'blocks'" in caplog.text


def test_a_sync_reward_returning_a_coroutine_is_awaited():
    async def later(n):
        return [0.75] * n

    for timeout in (5, None):
        runner = RewardRunner([RewardFunction("partial", lambda c, **kw: later(len(c)))], timeout=timeout)
        assert runner(["a", "b"]) == [[0.75], [0.75]]


# -- in the trainer ------------------------------------------------------------------------------------
PLUGIN = '''
import asyncio, json
from mmr1 import hookimpl
from mmr1.grpo.rewards import from_trl

LOG = {log!r}


def trl_format(completions, **kwargs):
    return [1.0 if c[0]["content"].startswith("<think>") else 0.0 for c in completions]


async def trl_async(prompts, completions, completion_ids, trainer_state, log_extra, log_metric, **kwargs):
    await asyncio.sleep(0)
    with open(LOG, "a") as f:
        f.write(json.dumps({{"step": trainer_state.global_step, "max_steps": trainer_state.max_steps,
                            "epoch": trainer_state.epoch, "kind": type(completions[0]).__name__,
                            "content": completions[0][0]["content"], "prompt_roles": [m["role"] for m in prompts[0]],
                            "ids": len(completion_ids[0])}}) + "\\n")
    log_extra("length", [len(c[0]["content"]) for c in completions])
    log_metric("trl/async_calls", 1.0)
    return [len(c[0]["content"]) / 10 for c in completions]


@hookimpl
def register_rewards(register):
    register("trl_format", from_trl(trl_format))
    register("trl_async", from_trl(trl_async))
'''


def test_trl_rewards_in_the_trainer_get_state_and_log_their_extras(tiny_vl, tmp_path):
    from mmr1.config import build_config
    from mmr1.grpo.trainer import GRPOTrainer

    log = tmp_path / "calls.jsonl"
    plugin = tmp_path / "trl_plugin.py"
    plugin.write_text(PLUGIN.format(log=str(log)))
    config = build_config({
        "model_name_or_path": tiny_vl, "dataset": "shapes", "dataset_kwargs": {"n": 16, "seed": 5, "image_size": 56},
        "template": "demo", "rewards": ["trl_format", "trl_async"], "plugins": [str(plugin)], "num_generations": 4,
        "per_device_train_batch_size": 8, "max_completion_length": 5, "max_steps": 2, "seed": 11,
        "output_dir": str(tmp_path / "out"), "disable_tqdm": True, "log_completions": True,
        "num_completions_to_log": 3})
    history = GRPOTrainer(config).train()
    calls = [json.loads(x) for x in log.read_text().splitlines()]
    assert [(c["step"], c["max_steps"]) for c in calls] == [(0, 2), (1, 2)]
    assert calls[1]["epoch"] > calls[0]["epoch"] > 0
    assert all(c["kind"] == "list" and c["prompt_roles"][-1] == "user" and c["ids"] >= 1 for c in calls)
    assert all(h["trl/async_calls"] == 1.0 and h["rewards/trl_async/failures"] == 0 for h in history)
    metrics = [json.loads(x) for x in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert all(m["trl/async_calls"] == 1.0 for m in metrics)
    logged = [json.loads(x) for x in (tmp_path / "out" / "completions.jsonl").read_text().splitlines()]
    assert len(logged) == 6
    assert all(r["extra"]["length"] == len(r["completion"]) for r in logged)


# -- one reward failing on every completion stops the run ----------------------------------------------
def _train(capsys, tmp_path, tiny_vl, body: str):
    from mmr1.cli import main

    plugin = tmp_path / "failing.py"
    plugin.write_text("from mmr1 import hookimpl\nCALLS = [0]\n"
                      "def failing_r(completions, **kw):\n" + textwrap.indent(textwrap.dedent(body), "    ") +
                      "@hookimpl\ndef register_rewards(register):\n    register('failing_r', failing_r)\n")
    config = tmp_path / "run.json"
    config.write_text(json.dumps({
        "model_name_or_path": tiny_vl, "dataset": "shapes", "dataset_kwargs": {"n": 16, "seed": 5, "image_size": 56},
        "template": "demo", "rewards": ["vowel_share", "failing_r"], "plugins": [TEST_REWARDS, str(plugin)],
        "num_generations": 4, "per_device_train_batch_size": 8, "max_completion_length": 4, "max_steps": 3,
        "max_nonfinite_steps": 2, "seed": 11, "output_dir": str(tmp_path / "out"), "disable_tqdm": True,
        "log_completions": False}))
    capsys.readouterr()
    code = main(["train", str(config)])
    return code, capsys.readouterr()


def test_one_reward_failing_on_every_completion_stops_the_run(tiny_vl, tmp_path, capsys):
    code, captured = _train(capsys, tmp_path, tiny_vl, "raise RuntimeError('scorer offline')\n")
    assert code == 3
    assert ("mmr1 train: stopped: reward 'failing_r' failed on every completion in 2 rollouts in a row "
            "(max_nonfinite_steps=2)") in captured.err
    assert "warnings of the mmr1.rewards logger" in captured.err
    assert not (tmp_path / "out" / "final").exists()


def test_one_reward_failing_on_some_calls_runs_to_the_end(tiny_vl, tmp_path, capsys):
    body = """\
    CALLS[0] += 1
    if CALLS[0] % 2:
        raise RuntimeError('every other call')
    return [float('nan')] + [1.0] * (len(completions) - 1)
    """
    code, captured = _train(capsys, tmp_path, tiny_vl, body)
    assert code == 0 and "done: 3 steps" in captured.out, captured.err
    metrics = [json.loads(x) for x in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["rewards/failing_r/failures"] == 3      # calls 1 and 3 raised, call 2 had a NaN


# -- MMR1's names: mmr1_compat switches to what MMR1 (itself built on trl) did -------------------------
@pytest.mark.parametrize("completion, solution, fixed, mmr1", [
    ("[10,10,50,50]", "[10, 10, 50, 50]", 1.0, 1.0),
    (" [10, 10, 30, 50]\n", "[10, 10, 50, 50]", 0.25, 0.25),
    ("<answer>[10,10,50,50]</answer>", "[10, 10, 50, 50]", 1.0, -1.0),        # MMR1: the completion is the list
    ("<think>x</think><answer>[10,10,50,50]</answer>", "[10, 10, 50, 50]", 1.0, -1.0),
    ("[10, 10, 50, 50, 7]", "[10, 10, 50, 50]", -1.0, 1.0),                   # MMR1 reads the first four
    ("[50, 50, 10, 10]", "[10, 10, 50, 50]", -0.6, -0.6),
    ("[60, 60, 90, 90]", "[10, 10, 50, 50]", -0.2, -0.2),
    ("[10, 10, 50, 50]", "no box", None, -1.0),                                # MMR1: a bad solution is -1
    ("[__import__('os').system('touch pwned'), 1, 2, 3]", "[10, 10, 50, 50]", -1.0, -1.0),
])
def test_perpo_reward_mmr1_compat(completion, solution, fixed, mmr1, tmp_path, monkeypatch):
    import mmr1 as pkg

    monkeypatch.chdir(tmp_path)
    perpo = pkg.get_reward("perpo_reward")
    assert perpo([completion], solution=[solution]) == [fixed if fixed is None else pytest.approx(fixed)]
    # MMR1 compared coordinates as written: the model's frame column is ignored
    got = perpo([completion], solution=[solution], mmr1_compat=True, box_frame=["qwen1000"])
    assert got == [pytest.approx(mmr1)]
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("completion, fixed, mmr1", [
    ("<think>a</think><answer>b</answer>", 1.0, 1.0),
    ("<think>a\nb</think><answer>c</answer>", 1.0, 0.0),        # MMR1's regex lacks DOTALL
    ("<think>a</think>\n<answer>b</answer>", 1.0, 0.0),
    ("<think>a</think><answer>b</answer>\n", 1.0, 1.0),         # its $ allows one final newline
    ("<think>a</think><answer>b</answer><answer>c</answer>", 0.0, 1.0),
])
def test_r1v_format_mmr1_compat(completion, fixed, mmr1):
    import mmr1 as pkg

    r1v_format = pkg.get_reward("r1v_format")
    assert r1v_format([completion]) == [fixed]
    assert r1v_format([completion], mmr1_compat=True) == [mmr1]
    with pytest.raises(ValueError, match="exclude each other"):
        r1v_format([completion], mmr1_compat=True, answer_only=True)
