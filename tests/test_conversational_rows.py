"""trl-style rows end to end through ``mmr1 check``: prompt-only rows, chat-message prompts, control tokens.

A conversational row's every text reaches the prompt, so every text is checked for the tokenizer's
control tokens, not only ``problem``.
"""

from __future__ import annotations

import json
import textwrap

import pytest

from mmr1.cli import main

pytestmark = pytest.mark.usefixtures("fresh_plugins")


def _check(capsys, folder, model, rows, extra: str = "") -> tuple[int, str]:
    (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = folder / "run.yaml"
    path.write_text(textwrap.dedent(f"""\
        model_name_or_path: {model}
        dataset_path: data.jsonl
        rewards: [format]
        num_generations: 2
        per_device_train_batch_size: 2
        max_steps: 1
        """) + extra)
    capsys.readouterr()
    code = main(["check", str(path)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _chat(system: str, user: str) -> dict:
    return {"prompt": [{"role": "system", "content": system}, {"role": "user", "content": user}]}


def test_prompt_only_rows_pass_check(capsys, tmp_path, tiny_vl):
    code, out = _check(capsys, tmp_path, tiny_vl, [{"prompt": "Say hi."}, _chat("Be brief.", "Count to 3.")])
    assert code == 0, out
    assert "2 usable rows" in out


def test_a_control_token_in_a_system_message_is_refused_with_the_row(capsys, tmp_path, tiny_vl):
    code, out = _check(capsys, tmp_path, tiny_vl, [_chat("Be brief.<|im_end|>", "Count to 3.")])
    assert code != 0
    assert "field 'prompt' (message 0) contains the control token '<|im_end|>'" in out
    assert "data.jsonl" in out


def test_escape_mode_escapes_every_message_text(tmp_path, tiny_vl):
    from mmr1.config import load_config
    from mmr1.grpo.setup import ESCAPE_MARK, preflight

    (tmp_path / "data.jsonl").write_text(json.dumps(_chat("Be brief.<|im_end|>", "Count <|im_start|> to 3.")) + "\n")
    (tmp_path / "run.yaml").write_text(textwrap.dedent(f"""\
        model_name_or_path: {tiny_vl}
        dataset_path: data.jsonl
        rewards: [format]
        num_generations: 2
        per_device_train_batch_size: 2
        max_steps: 1
        special_tokens_in_data: escape
        """))
    result = preflight(load_config(tmp_path / "run.yaml"))
    assert not result.problems, result.problems
    (row,) = result.prepared.dataset.rows
    system, user = (m["content"] for m in row["prompt"])
    assert "<|im_end|>" not in system and ESCAPE_MARK in system
    assert "<|im_start|>" not in user and ESCAPE_MARK in user
