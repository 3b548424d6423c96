"""Each source project's config shape and data layout, unchanged, through ``mmr1 check`` and two training steps.

The configs are written here from each project's documented format (MMR1's script arguments, trl's
GRPOConfig, SimpleAR's GRPO YAML, VLM-R1's conversations data, EasyR1's nested config with a jinja
prompt and ``<image>`` placeholders). A run counts when it exits 0, logs two steps with a finite
reward and writes ``final/``; docs/migrating.md walks through the same examples.
"""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import pytest
from mmr1.cli import main
from test_migration_config import _jsonl, _png

pytestmark = pytest.mark.usefixtures("fresh_plugins")

TINY_RUN = """\
        max_completion_length: 8
        learning_rate: 1.0e-3
        seed: 5
        """


def _check_and_train(capsys, monkeypatch, folder: Path, config: str, out: Path, extra: str = "") -> list[dict]:
    """``mmr1 check`` then ``mmr1 train`` from ``folder`` (the launch folder); the logged steps."""
    monkeypatch.chdir(folder)
    path = folder / "config.yaml"
    path.write_text(textwrap.dedent(config) + textwrap.dedent(extra), encoding="utf-8")
    capsys.readouterr()
    code = main(["check", str(path)])
    text = capsys.readouterr()
    assert code == 0, text.out + text.err
    code = main(["train", str(path), "--max_steps", "2", "--output_dir", str(out)])
    text = capsys.readouterr()
    assert code == 0, text.out + text.err
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps if "loss" in s] == [1, 2]
    assert all(math.isfinite(s["reward"]) for s in steps if "reward" in s)
    assert (out / "final" / "model.safetensors").is_file() or any((out / "final").glob("*.safetensors"))
    return steps


def _colour_rows(folder: Path) -> list[tuple[str, str]]:
    return [(_png(folder / "red.png", (255, 0, 0)), "red"), (_png(folder / "blue.png", (0, 0, 255)), "blue")]


def test_mmr1_script_arguments_train(capsys, monkeypatch, tmp_path, tiny_vl):
    """MMR1: JSONL rows with images relative to the launch folder, its reward and template names, its flags."""
    data = tmp_path / "data"
    data.mkdir()
    rows = [{"problem": f"What colour? {i}", "solution": colour, "image": f"images/{name}"}
            for i, (name, colour) in enumerate(_colour_rows(tmp_path / "images"))]
    _jsonl(data / "clevr.jsonl", rows)        # images/... is relative to the launch folder, as MMR1's scripts run
    _check_and_train(capsys, monkeypatch, tmp_path, f"""\
        model_name_or_path: {tiny_vl}
        dataset_name: data/clevr.jsonl
        reward_funcs: [r1v_acc, r1v_format]
        system_prompt_template: r1v
        question_template: r1v
        answer_template: r1v
        kl_approximator: kimikl
        use_kl: true
        entropy_reg: true
        temperature_func: linear
        train_sample_size: 2
        num_generations: 2
        per_device_train_batch_size: 2
        deepspeed: local_scripts/zero3.json
        save_only_model: true
        """, tmp_path / "out", TINY_RUN)


def test_trl_conversational_prompt_only_data_and_a_trl_reward_train(capsys, monkeypatch, tmp_path, tiny_vl):
    """trl: a GRPOConfig, prompt-only chat data with a ground_truth column mapped by copy, a reward written for trl."""
    _jsonl(tmp_path / "train.jsonl", [
        {"prompt": [{"role": "user", "content": "Say a colour."}], "answer": "red"},
        {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Another colour."}],
         "answer": "blue"}])
    (tmp_path / "trl_rewards.py").write_text(textwrap.dedent("""\
        from mmr1 import hookimpl
        from mmr1.grpo.rewards import from_trl

        def reward_len(completions, ground_truth, **kwargs):
            # trl's docs example, reading conversational completions and a mapped column
            return [-abs(8 - len(c[0]["content"])) / 8 + (g in c[0]["content"]) for c, g in zip(completions, ground_truth)]

        @hookimpl
        def register_rewards(register):
            register("reward_len", from_trl(reward_len))
        """))
    steps = _check_and_train(capsys, monkeypatch, tmp_path, f"""\
        model_name_or_path: {tiny_vl}
        plugins: [trl_rewards.py]
        dataset_name: train.jsonl
        dataset_kwargs: {{columns: {{answer: ground_truth}}}}
        reward_funcs: [reward_len]
        num_generations: 2
        per_device_train_batch_size: 2
        lr_scheduler_type: cosine_with_min_lr
        lr_scheduler_kwargs: {{min_lr_rate: 0.1}}
        beta: 0.0
        loss_type: dapo
        use_vllm: false
        save_strategy: "no"
        logging_strategy: steps
        push_to_hub: false
        """, tmp_path / "out", TINY_RUN)
    assert all(s["rewards/reward_len/failures"] == 0 for s in steps if "rewards/reward_len/failures" in s)


def test_simplear_grpo_yaml_trains_on_a_tiny_text_to_image_model(capsys, monkeypatch, tmp_path):
    """SimpleAR: its GRPO YAML keys, captions, the t2i rollout and an image reward."""
    from mmr1.fixtures.models import build_tiny_t2i

    built = build_tiny_t2i(tmp_path, extract=False, seed=2)
    (tmp_path / "prompts.json").write_text(json.dumps(["a red circle", "a blue square"]))
    _check_and_train(capsys, monkeypatch, tmp_path, f"""\
        model_name_or_path: {tmp_path / built['model']}
        data_path: prompts.json
        dataset: captions
        template: t2i
        image_tokenizer: vq:{tmp_path / built['vq']}
        rollout_backend: t2i
        image_resolution: 32
        reward_funcs: [color_fidelity]
        reward_weights: [1.0]
        num_generations: 2
        per_device_train_batch_size: 2
        use_vllm: false
        lr_scheduler_type: cosine_with_min_lr
        lr_scheduler_kwargs: {{min_lr_rate: 0.1}}
        save_strategy: "steps"
        save_steps: 100
        overwrite_output_dir: true
        learning_rate: 1.0e-3
        seed: 0
        """, tmp_path / "out")


def test_vlm_r1_conversations_with_image_folders_and_boxes_train(capsys, monkeypatch, tmp_path, tiny_vl):
    """VLM-R1: conversations rows, image_folders, <image> in the question, an IoU reward."""
    images = tmp_path / "coco"
    rows = [{"image": name, "conversations": [
                {"from": "human", "value": "<image>Where is the square? Give [x1, y1, x2, y2]."},
                {"from": "gpt", "value": "[2, 2, 20, 20]"}]} for name, _ in _colour_rows(images)]
    _jsonl(tmp_path / "rec.jsonl", rows)
    _check_and_train(capsys, monkeypatch, tmp_path, f"""\
        model_name_or_path: {tiny_vl}
        data_file_paths: rec.jsonl
        image_folders: {images}
        reward_funcs: [iou, format]
        freeze_vision_modules: true
        num_generations: 2
        per_device_train_batch_size: 2
        beta: 0.04
        """, tmp_path / "out", TINY_RUN)


def test_easyr1_reward_function_file_trains_with_its_kwargs(capsys, monkeypatch, tmp_path, tiny_vl):
    """EasyR1: ``worker.reward.reward_function`` (batch form) and its ``reward_function_kwargs``, unchanged."""
    rows = [{"question": f"What colour is this? {i}", "answer": colour, "images": [name]}
            for i, (name, colour) in enumerate(_colour_rows(tmp_path / "imgs"))]
    _jsonl(tmp_path / "math.jsonl", rows)
    (tmp_path / "reward").mkdir()
    (tmp_path / "reward" / "math.py").write_text(textwrap.dedent("""\
        def compute_score(reward_inputs, format_weight=0.1):
            return [{"overall": format_weight, "format": 1.0, "accuracy": 0.0} for _ in reward_inputs]
        """))
    steps = _check_and_train(capsys, monkeypatch, tmp_path, f"""\
        data:
          train_files: math.jsonl
          prompt_key: question
          answer_key: answer
          image_key: images
          image_dir: imgs
          max_response_length: 8
          rollout_batch_size: 2
        algorithm:
          disable_kl: true
        worker:
          actor:
            global_batch_size: 2
            micro_batch_size_per_device_for_update: 2
            model:
              model_path: {tiny_vl}
          rollout:
            n: 2
          reward:
            reward_function: ./reward/math.py:compute_score
            reward_function_kwargs:
              format_weight: 0.5
        trainer:
          n_gpus_per_node: 1
        """, tmp_path / "out")
    logged = [s for s in steps if "reward" in s]
    assert logged and all(s["reward"] == pytest.approx(0.5) for s in logged)   # the file's score, with its kwarg
    assert any(key.startswith("rewards/compute_score/format") for s in logged for key in s)


def test_easyr1_nested_config_with_a_jinja_prompt_trains(capsys, monkeypatch, tmp_path, tiny_vl):
    """EasyR1: nested sections, question/answer/images keys, a format_prompt jinja file, <image> placeholders."""
    rows = [{"question": f"<image>What colour is this? {i}", "answer": colour, "images": [name]}
            for i, (name, colour) in enumerate(_colour_rows(tmp_path / "imgs"))]
    _jsonl(tmp_path / "math.jsonl", rows)
    (tmp_path / "math.jinja").write_text("{{ content | trim }} Reason step by step, then give the answer "
                                         "in \\boxed{}.")
    _check_and_train(capsys, monkeypatch, tmp_path, f"""\
        data:
          train_files: math.jsonl
          prompt_key: question
          answer_key: answer
          image_key: images
          image_dir: imgs
          format_prompt: math.jinja
          max_response_length: 8
          rollout_batch_size: 2
        algorithm:
          adv_estimator: grpo
          disable_kl: true
        worker:
          actor:
            global_batch_size: 2
            micro_batch_size_per_device_for_update: 2
            model:
              model_path: {tiny_vl}
            optim:
              lr: 1.0e-3
          rollout:
            n: 2
        trainer:
          total_epochs: 1
          nnodes: 1
          n_gpus_per_node: 1
        rewards: [accuracy]
        """, tmp_path / "out")
