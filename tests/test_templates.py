"""Prompt templates: the shipped YAML files, MMR1's names and texts, per-part overrides, load errors."""

from __future__ import annotations

import textwrap

import pytest

import mmr1
from mmr1.registry import RegistryError
from mmr1.templates import Template, TemplateError, load_template_file, resolve_template, templates_dir

R1V_QUESTION = ("{question} Output the thinking process in <think> </think> and final answer (number) in "
                "<answer> </answer> tags.")
R1V_SYSTEM = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user with "
    "the answer. The reasoning process and answer are enclosed within <think> </think> and <answer> "
    "</answer> tags, respectively, i.e., <think> reasoning process here </think><answer> answer here "
    "</answer>"
)


pytestmark = pytest.mark.usefixtures("fresh_plugins")


def _file(tmp_path, text, name="mine.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _load_error(path) -> str:
    with pytest.raises(TemplateError) as info:
        load_template_file(path)
    return str(info.value)


# ------------------------------------------------------------------------------------ shipped set


def test_templates_come_from_the_shipped_folder():
    folder = templates_dir()
    files = sorted(folder.glob("*.yaml"))
    assert files, folder
    names = set(mmr1.list_templates())
    for path in files:
        from_file = load_template_file(path)
        registered = mmr1.get_template(from_file.name)
        assert registered == from_file
        assert registered.source == str(path)
    assert {p.stem for p in files} <= names


def test_mmr1_template_names_exist():
    assert {"default", "qwen", "llava", "r1v", "ocr", "grounding"} <= set(mmr1.list_templates())


def test_mmr1_template_texts():
    default = mmr1.get_template("default")
    assert (default.system_prompt, default.question_template, default.answer_template) == (
        "You are a helpful assistant.", "{question}", "{answer}")
    qwen = mmr1.get_template("qwen")
    assert qwen.system_prompt == "You are a helpful assistant." and qwen.question_template == "{question}"
    llava = mmr1.get_template("llava")
    assert llava.system_prompt.startswith("A chat between a curious human and an artificial intelligence assistant.")
    assert llava.question_template == "{question}"

    r1v = mmr1.get_template("r1v")
    assert r1v.question_template == R1V_QUESTION
    assert r1v.answer_template == "<answer> {answer} </answer>"
    assert r1v.system_prompt == R1V_SYSTEM
    assert r1v.format_question("What is 2+3?") == (
        "What is 2+3? Output the thinking process in <think> </think> and final answer (number) in "
        "<answer> </answer> tags.")
    assert r1v.format_answer(5) == "<answer> 5 </answer>"

    ocr = mmr1.get_template("ocr")
    assert "<answer>" in ocr.question_template and ocr.format_question("Q").startswith("Q ")
    grounding = mmr1.get_template("grounding")
    assert "[x1, y1, x2, y2]" in grounding.question_template


def test_detection_template_literal_braces():
    text = mmr1.get_template("detection").format_question("Find cats.")
    assert text.startswith("Find cats. ")
    assert '[{"bbox_2d": [x1, y1, x2, y2], "label": "..."}, ...]' in text
    assert "{{" not in text


# ----------------------------------------------------------------------------------------- messages


def test_messages_put_one_image_per_image_before_the_text():
    r1v = mmr1.get_template("r1v")
    messages = r1v.messages("How many?", num_images=2)
    assert messages[0] == {"role": "system", "content": [{"type": "text", "text": R1V_SYSTEM}]}
    assert messages[1]["role"] == "user"
    assert messages[1]["content"] == [
        {"type": "image"}, {"type": "image"}, {"type": "text", "text": r1v.format_question("How many?")}]
    assert len(messages) == 2


def test_messages_without_images_or_system_prompt():
    template = Template("bare", question_template="Q: {question}")
    assert template.messages("hi") == [{"role": "user", "content": [{"type": "text", "text": "Q: hi"}]}]
    demo = mmr1.get_template("demo")
    assert [m["role"] for m in demo.messages("x", num_images=1)] == ["user"]


# -------------------------------------------------------------------------------- per-part overrides


def test_system_prompt_template_takes_only_the_system_prompt():
    t = resolve_template("default", system_prompt_template="r1v")
    assert t.system_prompt == R1V_SYSTEM
    assert t.question_template == "{question}"
    assert t.answer_template == "{answer}"
    assert "default" in t.name and "r1v" in t.name


def test_question_and_answer_templates_override_one_part_each():
    t = resolve_template("llava", question_template="r1v")
    assert t.system_prompt == mmr1.get_template("llava").system_prompt
    assert t.question_template == R1V_QUESTION and t.answer_template == "{answer}"
    t = resolve_template("default", answer_template="r1v")
    assert t.answer_template == "<answer> {answer} </answer>" and t.question_template == "{question}"
    assert resolve_template("r1v") == mmr1.get_template("r1v")


def test_unknown_template_name_suggests():
    with pytest.raises(RegistryError, match="Did you mean 'r1v'"):
        resolve_template("default", system_prompt_template="r1")


# ------------------------------------------------------------------------------------- load errors


def test_template_file_loads(tmp_path):
    path = _file(tmp_path, """
        description: mine
        system_prompt: "Be brief."
        question_template: "{question} Reply as {{\\"answer\\": ...}}"
        answer_template: "{answer}"
        """)
    t = load_template_file(path)
    assert t.name == "mine"  # the file stem when no name is given
    assert t.source == str(path)
    assert t.format_question("2+2?") == '2+2? Reply as {"answer": ...}'
    assert t.messages("q")[0]["content"][0]["text"] == "Be brief."


@pytest.mark.parametrize("text, messages", [
    pytest.param('question_template: "{questoin} Think first."\n',
                 ["{questoin}", "question_template", "Did you mean '{question}'?"], id="typoed-placeholder"),
    pytest.param('question_template: "Just answer."\n', ["missing the {question} placeholder"],
                 id="missing-question-placeholder"),
    pytest.param('answer_template: "<answer></answer>"\n', ["answer_template", "{answer}"],
                 id="missing-answer-placeholder"),
    pytest.param('sytem_prompt: "x"\nquestion_template: "{question}"\n',
                 ["unknown key 'sytem_prompt'", "Did you mean 'system_prompt'?"], id="unknown-key"),
    pytest.param('question_template: "{question} as JSON {"\n', ["{{"], id="lone-brace"),
    pytest.param("question_template: [a, b]\n", ["must be a string"], id="non-string-part"),
    pytest.param("question_template: [unclosed\n", ["invalid YAML"], id="invalid-yaml"),
])
def test_a_bad_template_file_is_an_error_naming_the_file(tmp_path, text, messages):
    path = _file(tmp_path, text)
    message = _load_error(path)
    assert str(path) in message
    for expected in messages:
        assert expected in message, message


def test_a_template_file_that_is_not_a_mapping_is_an_error_naming_the_file(tmp_path):
    path = _file(tmp_path, "- just a list\n", name="list.yaml")
    assert str(path) in _load_error(path)


def test_positional_placeholder_is_an_error():
    with pytest.raises(TemplateError, match="unknown placeholder"):
        Template("t", question_template="{question} {}")


def test_null_system_prompt_means_none(tmp_path):
    t = load_template_file(_file(tmp_path, "system_prompt:\nquestion_template: '{question}'\n"))
    assert t.system_prompt == "" and [m["role"] for m in t.messages("q")] == ["user"]


def test_ocr_mmr1_is_mmr1s_ocr_prompt_and_differs_from_mmr1s_own_ocr():
    import mmr1

    theirs, ours = mmr1.get_template("ocr_mmr1"), mmr1.get_template("ocr")
    assert theirs.system_prompt.startswith("You are given an image. You should ocr the image")
    assert "<answer>" not in theirs.format_question("Read it.") and "<answer>" in ours.format_question("Read it.")
