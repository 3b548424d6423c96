"""Rows to prompts in the layouts users bring: trl conversational / standard prompts, EasyR1 / LLaVA
``<image>`` placeholders and Jinja ``format_prompt`` files, SimpleAR label files and meta paths."""

from __future__ import annotations

import json
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mmr1.templates import Template, TemplateError, resolve_template, row_messages

pytestmark = pytest.mark.usefixtures("fresh_plugins")

SYSTEM = {"role": "system", "content": [{"type": "text", "text": "Be brief."}]}
IMG = {"type": "image"}


def _text(t):
    return {"type": "text", "text": t}


# ------------------------------------------------------------------------------------- row_messages


def test_problem_rows_are_as_before():
    t = Template("t", system_prompt="Be brief.", question_template="Q: {question}")
    row = {"problem": "2+2?", "_source": "d.jsonl:1"}
    assert row_messages(t, row, 2) == t.messages("2+2?", 2) == [
        SYSTEM, {"role": "user", "content": [IMG, IMG, _text("Q: 2+2?")]}]
    assert row_messages(t, {"prompt": "3+3?"}, 0)[1]["content"] == [_text("Q: 3+3?")]     # trl standard


def test_conversational_prompt_is_the_conversation():
    t = Template("t", system_prompt="Be brief.", question_template="Q: {question}")
    prompt = [{"role": "user", "content": "What is shown?"}]
    row = {"prompt": prompt, "problem": "What is shown?"}
    # the template's system prompt only when the messages have none; the question template does not apply
    assert row_messages(t, row, 1) == [SYSTEM, {"role": "user", "content": [IMG, _text("What is shown?")]}]
    own = [{"role": "system", "content": "You count."}, {"role": "user", "content": [_text("How many?")]},
           {"role": "assistant", "content": "3"}, {"role": "user", "content": "And now?"}]
    out = row_messages(t, {"prompt": own}, 1)
    assert [m["role"] for m in out] == ["system", "user", "assistant", "user"]
    assert out[0]["content"] == [_text("You count.")]
    assert out[1]["content"] == [IMG, _text("How many?")]                                # first user turn
    assert out[3]["content"] == [_text("And now?")]
    # image items already in the messages (trl's own layout) stay where they are
    placed = [{"role": "user", "content": [_text("Look: "), {"type": "image", "image": "a.png"}, _text(" ok?")]}]
    assert row_messages(Template("t"), {"prompt": placed}, 1)[0]["content"] == [_text("Look: "), IMG, _text(" ok?")]
    # and without images (a text-only model) they are dropped
    assert row_messages(Template("t"), {"prompt": placed}, 0)[0]["content"] == [_text("Look: "), _text(" ok?")]


def test_bad_conversation_names_the_row():
    with pytest.raises(ValueError, match=r"^d\.jsonl:4: 'prompt' messages must be"):
        row_messages(Template("t"), {"prompt": [{"content": "no role"}], "_source": "d.jsonl:4"}, 0)
    with pytest.raises(ValueError, match=r"^d\.jsonl:5: no question"):
        row_messages(Template("t"), {"_source": "d.jsonl:5"}, 0)


def test_image_placeholders_interleave():
    t = Template("t", question_template="{question} Answer briefly.")
    row = {"problem": "Compare <image> with <image>.", "_source": "d.jsonl:2"}
    assert row_messages(t, row, 2) == [{"role": "user", "content": [
        _text("Compare "), IMG, _text(" with "), IMG, _text(". Answer briefly.")]}]
    llava = {"problem": "<image>\nWhat is it?"}
    assert row_messages(t, llava, 1)[0]["content"] == [IMG, _text("\nWhat is it? Answer briefly.")]
    # a text-only model gets no images: the placeholders leave the text
    assert row_messages(t, llava, 0)[0]["content"] == [_text("What is it? Answer briefly.")]
    with pytest.raises(ValueError, match=r"^d\.jsonl:2: the prompt has 2 <image> placeholder\(s\) but the row has 3"):
        row_messages(t, row, 3)
    conversation = [{"role": "user", "content": "First <image>, then <image>?"}]
    assert row_messages(Template("t"), {"prompt": conversation}, 2)[0]["content"] == [
        _text("First "), IMG, _text(", then "), IMG, _text("?")]


def test_placeholders_render_as_vision_tokens(tiny_vl):
    from mmr1.models.adapters import QwenVLAdapter

    adapter = QwenVLAdapter(QwenVLAdapter.load_processor(tiny_vl))
    text = adapter.render(row_messages(Template("t"), {"problem": "Compare <image> with <image>."}, 2))
    vision = "<|vision_start|><|image_pad|><|vision_end|>"
    assert "<image>" not in text and f"Compare {vision} with {vision}." in text


# ---------------------------------------------------------------------------------- the four callers


class _Seen(Exception):
    pass


class _Recorder:
    takes_images = False

    def encode_prompts(self, messages, images=None, max_prompt_length=None):
        self.messages = messages
        raise _Seen


CONVERSATION = [{"role": "system", "content": "Own system."}, {"role": "user", "content": "Hi <image> there"}]
EXPECTED = [{"role": "system", "content": [_text("Own system.")]}, {"role": "user", "content": [_text("Hi  there")]}]


def test_evaluate_trainer_and_sft_use_row_messages():
    """Evaluation, SFT and the trainer (through encode_rows) write prompts with row_messages."""
    from mmr1.evaluate import evaluate
    from mmr1.sft.vlm import sft_step
    from mmr1.templates import encode_rows

    template = Template("t", system_prompt="Template system.")
    rows = [{"prompt": CONVERSATION, "problem": "Hi <image> there", "solution": "x"}]
    for call in (
        lambda a: evaluate(a, None, rows, template, SimpleNamespace(names=[]), backend=object(), device="cpu"),
        lambda a: sft_step(a, torch.nn.Linear(1, 1), rows, template, ["x"]),
        lambda a: encode_rows(a, template, rows),            # the trainer's rollout encodes with it
    ):
        recorder = _Recorder()
        with pytest.raises(_Seen):
            call(recorder)
        assert recorder.messages == [EXPECTED]


def test_preflight_reports_placeholder_mismatch(tmp_path):
    from PIL import Image

    from mmr1.config import TrainConfig
    from mmr1.data.dataset import RowDataset
    from mmr1.grpo.setup import check_rows

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    rows = [{"problem": "<image> and <image>?", "image": [str(tmp_path / "a.png")], "_source": "d.jsonl:3"}]
    lengths = []
    adapter = SimpleNamespace(takes_images=True, tokenizer=SimpleNamespace(all_special_tokens=[]),
                              prompt_length=lambda m, im: lengths.append(m) or 1)
    problems = check_rows(RowDataset(rows, "d.jsonl", []), Template("t"), adapter, TrainConfig())
    assert [str(p) for p in problems] == [
        "d.jsonl, row 3: the prompt has 2 <image> placeholder(s) but the row has 1 image(s); give one <image> per "
        "image, or none to put the images first"]
    assert lengths == []
    rows[0]["problem"] = "<image> and?"
    assert check_rows(RowDataset(rows, "d.jsonl", []), Template("t"), adapter, TrainConfig()) == []
    assert lengths[0][0]["content"] == [IMG, _text(" and?")]


# ------------------------------------------------------------------------------------- Jinja files


def test_jinja_format_prompt(tmp_path, monkeypatch):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "math.jinja").write_text(
        "{{ content | trim }} Think first, then put the answer in \\boxed{}.\n")
    t = resolve_template("math.jinja", base_dir=tmp_path / "cfg")
    default = resolve_template("default")
    assert (t.system_prompt, t.answer_template) == (default.system_prompt, default.answer_template)
    assert t.format_question("  2+2?  ") == "2+2? Think first, then put the answer in \\boxed{}."
    assert t.messages("<image>2+2?", 1)[1]["content"][0] == IMG
    # relative to the config's folder first, then the launch folder
    monkeypatch.chdir(tmp_path)
    (tmp_path / "other.jinja").write_text("Q: {{ content }}")
    assert resolve_template("other.jinja", base_dir=tmp_path / "cfg").format_question("x") == "Q: x"
    assert resolve_template("default", question_template="cfg/math.jinja").format_question("x").startswith("x Think")


@pytest.mark.parametrize("text, match", [
    ("line one\n{{ content }\n", r"bad\.jinja: line 2: Jinja syntax error"),
    ("{{ content }} {{ answer }}", r"bad\.jinja: undefined variable 'answer'"),
    ("no question here", r"bad\.jinja: the template never uses \{\{ content \}\}"),
    ("{{ content.__class__.__mro__ }}", r"bad\.jinja: cannot render the question: SecurityError"),
])
def test_jinja_errors_are_one_line_naming_the_file(tmp_path, text, match):
    (tmp_path / "bad.jinja").write_text(text)
    with pytest.raises(TemplateError, match=match) as info:
        resolve_template(str(tmp_path / "bad.jinja"))
    assert "\n" not in str(info.value)


def test_missing_template_file_and_unknown_name_list_the_names(tmp_path):
    from mmr1.registry import RegistryError

    with pytest.raises(TemplateError, match=r"template file 'nope\.jinja' not found \(looked in .*cfg.*\).*r1v"):
        resolve_template("nope.jinja", base_dir=tmp_path / "cfg")
    with pytest.raises(RegistryError, match=r"Known: .*default.*r1v"):
        resolve_template("nonesuch")


# --------------------------------------------------------------------------- SimpleAR label files


def _label_meta(tmp_path):
    np.save(tmp_path / "0.npy", np.zeros((1, 1, 2, 2), dtype=np.int64))
    (tmp_path / "0.txt").write_text("a cat\n\na photo of a grey cat on a red sofa\n")
    (tmp_path / "1.txt").write_text("a single caption\n")
    (tmp_path / "meta.json").write_text(json.dumps([{"code_path": "0.npy", "label_path": "0.txt"},
                                                    {"code_path": "0.npy", "label_path": "1.txt"}]))
    return tmp_path / "meta.json"


def test_label_files_short_and_long_lines(tmp_path):
    from mmr1.imagegen.meta import read_label
    from mmr1.plugins import get_dataset

    rows = get_dataset("t2i_meta")(path=str(_label_meta(tmp_path)))
    row = rows[0]
    assert row["caption"] == row["problem"] == "a photo of a grey cat on a red sofa"       # line 2: the long one
    assert row["caption_entry"] == {"short": "a cat", "long": "a photo of a grey cat on a red sofa"}
    assert rows[1]["caption"] == "a single caption" and "caption_entry" not in rows[1]
    (tmp_path / "2.json").write_text(json.dumps({"short": "s", "long": "l"}))
    assert read_label(tmp_path / "2.json") == {"short": "s", "long": "l"}


def test_sft_sample_short_picks_both_captions(tmp_path, monkeypatch):
    import mmr1.imagegen.sequence as sequence
    from mmr1.plugins import get_dataset
    from mmr1.sft.t2i import T2ISFTDataset

    def caption_only(caption, codes, vocab, tokenizer, **kw):               # the caption the example would hold
        return sequence.pick_caption(caption, sample_short=kw["sample_short"], rng=kw["rng"])

    monkeypatch.setattr(sequence, "build_t2i_example", caption_only)
    rows = get_dataset("t2i_meta")(path=str(_label_meta(tmp_path)))
    seen = {}
    for flag in (True, False):
        config = SimpleNamespace(seed=0, sample_short=flag, prompt_prefix="", p_drop_cond=0.0, model_max_length=None)
        ds = T2ISFTDataset(rows, None, None, config, shuffle=False)
        seen[flag] = set()
        for epoch in range(40):
            ds.set_epoch(epoch)
            seen[flag] |= {ds[0], ds[1]}
    assert seen[True] == {"a cat", "a photo of a grey cat on a red sofa", "a single caption"}
    assert seen[False] == {"a photo of a grey cat on a red sofa", "a single caption"}


# ----------------------------------------------------------------------------------- meta paths


def test_meta_paths_next_to_the_meta_file_then_the_launch_folder(tmp_path, monkeypatch):
    from mmr1.imagegen.meta import load_meta
    from mmr1.plugins import get_dataset

    launch, metas = tmp_path / "launch", tmp_path / "metas"
    (launch / "codes").mkdir(parents=True)
    metas.mkdir()
    np.save(launch / "codes" / "0.npy", np.zeros((1, 1, 2, 2), dtype=np.int64))
    (launch / "codes" / "0.txt").write_text("a cat")
    (metas / "meta.json").write_text(json.dumps([{"code_path": "codes/0.npy", "label_path": "codes/0.txt"},
                                                 {"code_path": "codes/1.npy", "label_path": "codes/1.txt"}]))
    monkeypatch.chdir(launch)
    rows = load_meta(metas / "meta.json")                                    # SimpleAR: the launch folder
    assert rows[0]["code_path"] == str(launch / "codes" / "0.npy")
    # a copy next to the meta file wins
    (metas / "codes").mkdir()
    np.save(metas / "codes" / "0.npy", np.zeros((1, 1, 2, 2), dtype=np.int64))
    (metas / "codes" / "0.txt").write_text("a dog")
    rows = get_dataset("t2i_meta")(path=str(metas / "meta.json"))
    assert rows[0]["code_path"] == str(metas / "codes" / "0.npy") and rows[0]["caption"] == "a dog"
    # neither has the file: the error says where it looked
    with pytest.raises(ValueError, match=r"row 1: cannot read caption file .*does not exist \(looked in "
                                         rf"{metas}/codes/1\.txt and {launch}/codes/1\.txt\)"):
        rows[1]
    with pytest.raises(Exception, match=rf"code_path .* does not exist \(looked in {metas}/codes/1\.npy and "
                                        rf"{launch}/codes/1\.npy\)"):
        get_dataset("t2i_meta")(path=str(metas / "meta.json"), check_files=True)
