"""Rewards given by file (``PATH.py:FUNCTION``, ``trl:...``, ``easyr1:...``), EasyR1's reward interface
(``from_easyr1``), and ``accuracy``'s ``mmr1_compat`` switch to MMR1's exact ``r1v_acc``."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import pytest

from mmr1.grpo.rewards import RewardFunction, RewardRunner, build_rewards, from_easyr1
from mmr1.registry import RegistryError

pytestmark = pytest.mark.usefixtures("fresh_plugins")

MESSAGES = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "colour?"}]}]

# rewards exactly as their own trainers take them: mmr1's, trl's and EasyR1's (batch, one dict, per sample)
REWARDS = '''
def native(completions, solution, **kwargs):
    return [1.0 if c == s else 0.0 for c, s in zip(completions, solution)]


def trl_len(completions, **kwargs):
    return [len(c[0]["content"]) / 10 for c in completions]


def compute_score(reward_inputs: list, format_weight: float = 0.5):
    scores = []
    for x in reward_inputs:
        accuracy = 1.0 if x["response"].strip() == x["ground_truth"] else 0.0
        fmt = 1.0 if x["response"].startswith("<") else 0.0
        scores.append({"overall": (1 - format_weight) * accuracy + format_weight * fmt,
                       "accuracy": accuracy, "format": fmt, "length": x["response_length"]})
    return scores


def one_score(reward_input: dict):
    return {"overall": float(reward_input["ground_truth"] == "3"), "seen": 1.0}


def legacy(predict_str, ground_truth):
    return {"overall": 2.0 if predict_str == ground_truth else -1.0, "accuracy": float(predict_str == ground_truth)}


NOT_A_FUNCTION = 3
'''


def _write(folder: Path, text: str = REWARDS, name: str = "my_rewards.py") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_each_kind_resolves_and_scores_through_the_runner(tmp_path):
    _write(tmp_path)
    entries = ["my_rewards.py:native", "trl:my_rewards.py:trl_len", "easyr1:my_rewards.py:compute_score",
               "easyr1:my_rewards.py:one_score", "easyr1:my_rewards.py:legacy"]
    rewards = build_rewards(entries, {"easyr1:my_rewards.py:compute_score": {"format_weight": 0.25}},
                            base_dir=tmp_path)
    assert [r.name for r in rewards] == ["native", "trl_len", "compute_score", "one_score", "legacy"]
    assert [r.entry for r in rewards] == entries
    runner = RewardRunner(rewards, timeout=30)
    table = runner(["red", "<b>"], prompts=[MESSAGES, MESSAGES], solution=["red", 3],
                   completion_ids=[[1, 2], [3, 4, 5]])
    assert table == [[1.0, 0.3, 0.75, 0.0, 2.0],
                     [0.0, 0.3, 0.25, 1.0, -1.0]]            # the solution 3 reaches EasyR1 as the text "3"
    assert runner.failures == {}
    assert runner.logged_metrics() == {
        "rewards/compute_score/accuracy": 0.5, "rewards/compute_score/format": 0.5,
        "rewards/compute_score/length": 2.5,                 # response_length: the completion's token count
        "rewards/one_score/seen": 1.0, "rewards/legacy/accuracy": 0.5}


def test_easyr1_forms_follow_the_signature_and_scores_need_overall():
    def batch(reward_inputs, **options):
        return [{"overall": 1.0}] * len(reward_inputs)

    def sequential(reward_input: "dict[str, Any]"):  # noqa: F821 - a string annotation, as under __future__
        return {"overall": 1.0}

    def annotated_list(reward_input: list):
        return [{"overall": 1.0}] * len(reward_input)

    assert [from_easyr1(f).easyr1_form for f in (batch, sequential, annotated_list)] == ["batch", "sequential", "batch"]
    assert from_easyr1(lambda predict, ground_truth: 1.0).easyr1_form == "legacy"
    assert from_easyr1(lambda reward_inputs, max_response_length: []).easyr1_form == "batch"   # EasyR1's dapo.py
    with pytest.raises(ValueError, match="cannot tell how EasyR1 calls"):
        from_easyr1(lambda **kw: 1.0)
    runner = RewardRunner([RewardFunction(
        "no_overall", from_easyr1(lambda reward_inputs: [{"accuracy": 1.0}] * len(reward_inputs)))], timeout=30)
    assert math.isnan(runner(["a"], solution=["a"])[0][0])   # a score without 'overall' fails the call
    assert runner.failures["no_overall"] == 1


def test_a_relative_path_is_looked_up_beside_the_config_then_in_the_launch_folder(tmp_path, monkeypatch):
    config_dir, launch = tmp_path / "cfg", tmp_path / "launch"
    config_dir.mkdir(), launch.mkdir()
    _write(config_dir, "def r(completions, **kw):\n    return [1.0] * len(completions)\n", "here.py")
    _write(launch, "def r(completions, **kw):\n    return [2.0] * len(completions)\n", "here.py")
    _write(launch, "def r(completions, **kw):\n    return [3.0] * len(completions)\n", "only_launch.py")
    monkeypatch.chdir(launch)
    rewards = build_rewards(["here.py:r", "only_launch.py:r as r2"], base_dir=config_dir)
    assert [r.name for r in rewards] == ["r", "r2"]
    assert RewardRunner(rewards, timeout=30)(["x"]) == [[1.0, 3.0]]


def test_a_file_in_plugins_and_in_rewards_runs_once_and_registers_its_hooks_once(tmp_path):
    from mmr1.plugins import get_reward, load_plugins

    log = tmp_path / "imports.log"
    _write(tmp_path, f'''
        from mmr1 import hookimpl
        with open({str(log)!r}, "a") as f:
            f.write("imported\\n")

        def plain(completions, **kwargs):
            return [0.5] * len(completions)

        @hookimpl
        def register_rewards(register):
            register("hooked", plain)
        ''', "both.py")
    build_rewards(["both.py:plain"], base_dir=tmp_path)
    with pytest.raises(RegistryError, match="unknown reward 'hooked'"):
        get_reward("hooked")                                 # naming a reward file registers none of its hooks
    load_plugins(["both.py"], base_dir=tmp_path)
    rewards = build_rewards(["hooked", "both.py:plain as plain"], base_dir=tmp_path)
    assert RewardRunner(rewards, timeout=30)(["x"]) == [[0.5, 0.5]]
    assert log.read_text() == "imported\n"


def test_two_entries_that_would_log_under_one_name_are_refused(tmp_path):
    body = "def compute_score(reward_inputs):\n    return [{'overall': 1.0} for _ in reward_inputs]\n"
    _write(tmp_path, body, "a.py"), _write(tmp_path, body, "b.py")
    with pytest.raises(RegistryError, match="would all log as 'compute_score'.*'easyr1:b.py:compute_score as "
                                            "compute_score_2'"):
        build_rewards(["easyr1:a.py:compute_score", "easyr1:b.py:compute_score"], base_dir=tmp_path)
    rewards = build_rewards(["easyr1:a.py:compute_score", "easyr1:b.py:compute_score as b"], base_dir=tmp_path)
    assert [r.name for r in rewards] == ["compute_score", "b"]


# -- mmr1 check: every bad entry is one line naming it and the fix ----------------------------------------------
def test_each_bad_reward_file_entry_is_one_line_in_mmr1_check(tmp_path, tiny_vl, capsys, monkeypatch):
    from mmr1.cli import main

    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "cfg"
    folder.mkdir()
    _write(folder)
    _write(folder, "import a_module_that_is_not_installed\n", "broken.py")
    _write(folder, "def compute_score(reward_inputs, max_response_length):\n    return []\n", "dapo.py")
    entries = ["trl:missing.py:acc", "broken.py:fn", "easyr1:my_rewards.py:compute_scor",
               "my_rewards.py:NOT_A_FUNCTION",
               "verl:my_rewards.py:native", "my_rewards.py", "easyr1:dapo.py:compute_score",
               "trl:my_rewards.py:native as legacy", "easyr1:my_rewards.py:legacy"]
    (folder / "run.yaml").write_text(json.dumps({
        "model_name_or_path": tiny_vl, "dataset": "shapes", "dataset_kwargs": {"n": 4, "image_size": 56},
        "template": "demo", "rewards": entries, "num_generations": 2, "per_device_train_batch_size": 2,
        "max_steps": 1, "output_dir": str(tmp_path / "out")}))
    capsys.readouterr()
    assert main(["check", str(folder / "run.yaml")]) == 1
    out = capsys.readouterr().out
    lines = [line.strip() for line in out.splitlines()]
    expected = [
        f"rewards: reward 'trl:missing.py:acc': file 'missing.py' not found (looked at {folder / 'missing.py'} and "
        f"{tmp_path / 'missing.py'}); give a path relative to the config's folder, or an absolute one",
        f"rewards: reward 'broken.py:fn': {folder / 'broken.py'} failed to import: ModuleNotFoundError: No module "
        f"named 'a_module_that_is_not_installed'; fix the file, or install what it imports",
        f"rewards: reward 'easyr1:my_rewards.py:compute_scor': {folder / 'my_rewards.py'} has no function "
        f"'compute_scor'. Did you mean 'compute_score'?",
        f"rewards: reward 'my_rewards.py:NOT_A_FUNCTION': 'NOT_A_FUNCTION' in {folder / 'my_rewards.py'} is not "
        f"callable (an int); name a function defined in the file",
        "rewards: reward 'verl:my_rewards.py:native': unknown kind 'verl'. Did you mean 'trl'? A reward from a file "
        "is written PATH.py:FUNCTION, trl:PATH.py:FUNCTION or easyr1:PATH.py:FUNCTION",
        "rewards: reward 'my_rewards.py': name the function too: my_rewards.py:FUNCTION",
        "rewards: reward_kwargs: reward 'easyr1:dapo.py:compute_score' needs option 'max_response_length' (its "
        "function has no default for it); set reward_kwargs: {'easyr1:dapo.py:compute_score': "
        "{max_response_length: ...}}",
        "rewards: rewards 'trl:my_rewards.py:native as legacy' and 'easyr1:my_rewards.py:legacy' would all log as "
        "'legacy' (rewards/legacy); give one a name of its own, e.g. 'easyr1:my_rewards.py:legacy as legacy_2'",
    ]
    for line in expected:
        assert line in lines, out
    assert "Traceback" not in out


# -- a training run with rewards brought from trl and EasyR1 unchanged -----------------------------------------------
TRL_FILE = '''
def think_len(completions, **kwargs):
    """trl's signature: conversational completions."""
    return [len(c[0]["content"]) / 10 for c in completions]
'''

EASYR1_FILE = '''
import re


def compute_score(reward_inputs, format_weight=0.1):
    """EasyR1's batch interface."""
    out = []
    for x in reward_inputs:
        fmt = 1.0 if re.search(r"[a-z]", x["response"]) else 0.0
        acc = 1.0 if x["ground_truth"] in x["response"] else 0.0
        out.append({"overall": (1 - format_weight) * acc + format_weight * fmt, "format": fmt, "accuracy": acc})
    return out
'''


def test_a_training_run_with_trl_and_easyr1_reward_files_logs_their_rewards(tiny_vl, tmp_path, capsys, monkeypatch):
    from mmr1.cli import main

    folder, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    folder.mkdir(), elsewhere.mkdir()
    _write(folder, TRL_FILE, "trl_rewards.py")
    _write(folder, EASYR1_FILE, "easyr1_reward.py")
    monkeypatch.chdir(elsewhere)                              # relative paths are the config's, not the launch's
    easyr1 = "easyr1:./easyr1_reward.py:compute_score"
    (folder / "run.yaml").write_text(json.dumps({
        "model_name_or_path": tiny_vl, "dataset": "shapes", "dataset_kwargs": {"n": 16, "seed": 5, "image_size": 56},
        "template": "demo", "rewards": ["trl:trl_rewards.py:think_len", easyr1],
        "reward_kwargs": {easyr1: {"format_weight": 0.5}}, "reward_weights": [0.1, 1.0],
        "num_generations": 4, "per_device_train_batch_size": 8, "max_completion_length": 5, "max_steps": 2,
        "seed": 11, "output_dir": str(tmp_path / "out"), "disable_tqdm": True}))
    capsys.readouterr()
    code = main(["train", str(folder / "run.yaml")])
    captured = capsys.readouterr()
    assert code == 0 and "done: 2 steps" in captured.out, captured.err
    metrics = [json.loads(x) for x in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 2
    for m in metrics:
        assert m["rewards/think_len"] > 0 and m["rewards/think_len/failures"] == 0
        assert m["rewards/compute_score/failures"] == 0
        assert m["rewards/compute_score"] == pytest.approx(0.5 * m["rewards/compute_score/accuracy"]
                                                           + 0.5 * m["rewards/compute_score/format"])


# -- accuracy / r1v_acc: mmr1_compat is MMR1's exact rule ------------------------------------------------------------
@pytest.mark.parametrize("completion, solution, mmr1s_verdict", [
    ("<think>a</think><answer>7 or 3</answer>", "3", 1.0),            # hedged: math-verify finds a 3
    ("<answer>$x \\leq 3$</answer>", "$(-\\infty, 3]$", 1.0),        # verify(parse(completion), parse(solution))
])
def test_mmr1_compat_changes_the_verdict_where_mmr1s_r1v_acc_differs(completion, solution, mmr1s_verdict):
    entries = ["r1v_acc", "accuracy"]
    rewards = build_rewards(entries, {"r1v_acc": {"mmr1_compat": True, "workers": 1}, "accuracy": {"workers": 1}})
    table = RewardRunner(rewards, timeout=60)([completion], solution=[solution])
    assert table == [[mmr1s_verdict, 0.0]]
