"""SimpleAR pretrain / SFT (``run_t2i_sft``): the loss falls, checkpoints resume, the final folder loads."""

import json

import pytest
import torch

from mmr1.config import build_config
from mmr1.fixtures.models import build_tiny_t2i


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return build_tiny_t2i(tmp_path_factory.mktemp("t2i-sft"), n_images=32, seed=4)


def _config(setup, out, **over):
    data = {"model_name_or_path": str(setup["model"]), "dataset": "t2i_meta", "dataset_path": str(setup["meta"]),
            "per_device_train_batch_size": 8, "max_steps": 10, "learning_rate": 3e-3, "seed": 5,
            "output_dir": str(out), "disable_tqdm": True, "p_drop_cond": 0.2}
    data.update(over)
    return build_config(data)


def test_sft_lowers_the_loss_and_writes_a_loadable_t2i_folder(setup, tmp_path):
    from transformers import AutoModelForCausalLM

    from mmr1.imagegen.adapter import T2IAdapter
    from mmr1.imagegen.sampling import generate_image_tokens
    from mmr1.sft.t2i import run_t2i_sft

    summary = run_t2i_sft(_config(setup, tmp_path / "sft", save_steps=4, save_total_limit=1,
                                  gradient_accumulation_steps=2, lr_scheduler_type="cosine", warmup_steps=2))
    losses = summary["losses"]
    assert summary["steps"] == 10 and len(losses) == 10
    assert losses[-1] < losses[0] - 0.3
    metrics = [json.loads(line) for line in (tmp_path / "sft" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == list(range(1, 11))
    # 2 micro-batches of 8 sequences, each 16 image tokens + <|eoi|> as targets
    assert metrics[0]["target_tokens"] == 2 * 8 * 17
    ckpts = sorted(p.name for p in (tmp_path / "sft").iterdir() if p.name.startswith("checkpoint-"))
    assert ckpts == ["checkpoint-8"]                           # save_total_limit 1
    final = tmp_path / "sft" / "final"
    processor = T2IAdapter.load_processor(final)
    assert processor.vocab.image_tokenizer == setup["image_tokenizer"]
    model = AutoModelForCausalLM.from_pretrained(final)
    out = generate_image_tokens(model, processor.vocab, ["a red circle"], 16, tokenizer=processor.tokenizer,
                                seed=0)
    assert out.codes.shape == (1, 16)


def test_sft_resume_continues_with_the_same_data_and_losses(setup, tmp_path):
    from mmr1.sft.t2i import run_t2i_sft

    full = run_t2i_sft(_config(setup, tmp_path / "a", max_steps=6))
    run_t2i_sft(_config(setup, tmp_path / "b", max_steps=6, save_steps=3))
    # pretend the run stopped after its checkpoint at step 3
    resumed = run_t2i_sft(_config(setup, tmp_path / "b", max_steps=6,
                                  resume_from_checkpoint=str(tmp_path / "b" / "checkpoint-3")))
    assert resumed["steps"] == 6
    assert resumed["losses"] == pytest.approx(full["losses"][3:], rel=1e-4, abs=1e-5)


def test_sft_entry_point_reports_user_errors(setup, tmp_path, capsys):
    from mmr1.imagegen.cli import is_t2i_config, sft_t2i_main

    bad = _config(setup, tmp_path / "x", model_name_or_path=str(tmp_path / "missing"))
    assert sft_t2i_main(bad) == 2
    assert "does not exist" in capsys.readouterr().err
    tight = _config(setup, tmp_path / "y", model_max_length=10)
    assert sft_t2i_main(tight) == 2
    assert "model_max_length 10" in capsys.readouterr().err
    assert is_t2i_config(_config(setup, tmp_path / "z"))
    assert sft_t2i_main(_config(setup, tmp_path / "ok", max_steps=2)) == 0
    assert (tmp_path / "ok" / "final" / "t2i.json").is_file()


def test_sft_with_dataloader_workers_sees_the_same_batches(setup, tmp_path, monkeypatch):
    """dataloader_num_workers loads sequences in worker processes: same data, same losses, across epochs."""
    import os

    from mmr1.sft import t2i
    from mmr1.sft.t2i import run_t2i_sft

    # 32 rows / 8 per step: 10 steps cross two epoch boundaries (the per-epoch shuffle must reach the workers)
    inline = run_t2i_sft(_config(setup, tmp_path / "w0", max_steps=10))
    pids = tmp_path / "pids.txt"
    original = t2i.T2ISFTDataset.__getitem__

    def recording(self, i):
        with open(pids, "a") as f:
            f.write(f"{os.getpid()}\n")
        return original(self, i)

    monkeypatch.setattr(t2i.T2ISFTDataset, "__getitem__", recording)
    workers = run_t2i_sft(_config(setup, tmp_path / "w2", max_steps=10, dataloader_num_workers=2))
    assert workers["losses"] == pytest.approx(inline["losses"], rel=1e-5, abs=1e-6)
    loaded_in = set(pids.read_text().split())
    loaded_in.discard(str(os.getpid()))  # the first row is read once in the main process, as a check
    assert len(loaded_in) >= 2


def test_negative_dataloader_workers_is_a_config_error(setup, tmp_path):
    with pytest.raises(ValueError, match="dataloader_num_workers must be 0 or more"):
        _config(setup, tmp_path, dataloader_num_workers=-1)


def test_sft_logs_to_tensorboard(setup, tmp_path):
    from tensorboard_events import tensorboard_scalars

    from mmr1.sft.t2i import run_t2i_sft

    summary = run_t2i_sft(_config(setup, tmp_path / "sft", max_steps=4, report_to="tensorboard", run_name="tb"))
    scalars = tensorboard_scalars(tmp_path / "sft" / "tb")
    assert [step for step, _ in scalars["loss"]] == [1, 2, 3, 4]
    assert [v for _, v in scalars["loss"]] == pytest.approx(summary["losses"], rel=1e-5)


def test_sft_two_processes_equal_one_process(setup, tmp_path):
    """Under torchrun, 2 processes x 4 sequences train exactly like 1 process x 8 (same global batch)."""
    from pathlib import Path

    from launching import run_processes
    from safetensors.torch import load_file

    helper = Path(__file__).parent / "helpers" / "sft_run.py"

    def launch(name, per_device, processes):
        cfg = tmp_path / f"{name}.json"
        data = {"model_name_or_path": str(setup["model"]), "dataset": "t2i_meta", "dataset_path": str(setup["meta"]),
                "per_device_train_batch_size": per_device, "max_steps": 6, "learning_rate": 3e-3, "seed": 5,
                "output_dir": str(tmp_path / name), "disable_tqdm": True, "p_drop_cond": 0.2}
        cfg.write_text(json.dumps(data))
        run_processes([str(helper), str(cfg)], processes)
        weights = {}
        for f in sorted((tmp_path / name / "final").glob("*.safetensors")):
            weights.update(load_file(str(f)))
        return json.loads((tmp_path / name / "losses.json").read_text()), weights

    losses1, w1 = launch("one", 8, 1)
    losses2, w2 = launch("two", 4, 2)
    assert len(losses1) == 6 and losses1[-1] < losses1[0]
    assert losses2 == pytest.approx(losses1, rel=1e-4, abs=1e-5)
    assert w1.keys() == w2.keys()
    for name in w1:
        torch.testing.assert_close(w1[name], w2[name], atol=2e-5, rtol=1e-4)
