"""Plugin discovery (built-ins, entry points, config ``plugins:``), registries and their errors."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

import mmr1
from mmr1.cli import main
from mmr1.config import load_config
from mmr1.plugins import PluginError, PluginManager, load_plugins, reset_plugin_manager
from mmr1.registry import RegistryError

EP_DIST = "mmr1-test-myplug"
EP_MODULE = "mmr1_test_myplug"


pytestmark = pytest.mark.usefixtures("fresh_plugins")


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _reward_plugin(path, reward_name, body="return [float(len(c)) for c in completions]"):
    return _write(path, f'''
        from mmr1 import hookimpl


        def _reward(completions, **kwargs):
            """Reward from {path.name}."""
            {body}


        @hookimpl
        def register_rewards(register):
            register({reward_name!r}, _reward)
        ''')


def _list_json(capsys, *extra):
    capsys.readouterr()
    assert main(["list", "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


# ------------------------------------------------------------------------------------------ built-ins


def test_builtin_rewards_are_listed():
    names = mmr1.list_rewards()
    assert {"format", "accuracy"} <= set(names)
    assert names == sorted(names)
    assert callable(mmr1.get_reward("accuracy"))
    assert mmr1.get_reward("format")(["<think>a</think><answer>1</answer>"], solution=["1"]) == [1.0]


def test_list_json_names_the_provider_of_everything(capsys):
    data = _list_json(capsys)
    assert set(data) == {"rewards", "templates", "datasets", "model adapters", "image tokenizers",
                         "rollout backends"}
    for title, entries in data.items():
        assert entries, title
        for entry in entries:
            assert entry["name"] and entry["plugin"], (title, entry)
    plugin_of = {title: {e["name"]: e["plugin"] for e in entries} for title, entries in data.items()}
    # First-party reward plugins come through the "mmr1" entry-point group: "name (module)".
    assert plugin_of["rewards"]["accuracy"] == "math (mmr1_math)"
    assert plugin_of["rewards"]["format"] == "math (mmr1_math)"
    assert plugin_of["templates"]["r1v"] == "mmr1.templates"
    for loader in ("json", "hf", "shapes"):
        assert plugin_of["datasets"][loader] == "mmr1.data.loaders"
    assert plugin_of["model adapters"]["qwen2_5_vl"] == "mmr1.models.adapters"
    assert set(plugin_of["rewards"]) == set(mmr1.list_rewards())
    assert set(plugin_of["templates"]) == set(mmr1.list_templates())
    # Descriptions default to the first docstring paragraph.
    assert all(isinstance(e["description"], str) for e in data["rewards"])


def test_list_text_shows_name_and_plugin(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "rewards:" in out and "templates:" in out and "datasets:" in out
    line = next(line for line in out.splitlines() if line.strip().startswith("accuracy "))
    assert "[math (mmr1_math)]" in line


# ---------------------------------------------------------------------------- installed package


@pytest.fixture
def installed_plugin_package(tmp_path):
    """A separate distribution with an ``mmr1`` entry point, pip-installed into this venv."""
    pip = [sys.executable, "-m", "pip"]
    subprocess.run([*pip, "uninstall", "-y", "-q", EP_DIST], capture_output=True)  # a stale copy
    src = tmp_path / "pkg"
    _write(src / "pyproject.toml", f'''
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "{EP_DIST}"
        version = "0.0.1"

        [project.entry-points.mmr1]
        myplug = "{EP_MODULE}"

        [tool.setuptools]
        py-modules = ["{EP_MODULE}"]
        ''')
    _reward_plugin(src / f"{EP_MODULE}.py", "my_len")
    reset_plugin_manager()
    assert "my_len" not in mmr1.list_rewards()  # only the install below can provide it
    done = subprocess.run([*pip, "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", str(src)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    try:
        yield EP_DIST
    finally:
        subprocess.run([*pip, "uninstall", "-y", "-q", EP_DIST], capture_output=True)
        sys.modules.pop(EP_MODULE, None)
        reset_plugin_manager()


@pytest.mark.usefixtures("installed_plugin_package")
def test_installed_package_entry_point_registers_reward(capsys):
    # The manager built before the install does not know the package; a reset rediscovers entry points.
    reset_plugin_manager()
    reward = mmr1.get_reward("my_len")
    assert reward(["ab", "abcd"], solution=["x", "y"]) == [2.0, 4.0]
    entry = mmr1.get_plugin_manager().registry("register_rewards").entry("my_len")
    assert entry.plugin == f"myplug ({EP_MODULE})"
    assert entry.description == "Reward from mmr1_test_myplug.py."
    data = _list_json(capsys)
    assert {"name": "my_len", "plugin": f"myplug ({EP_MODULE})",
            "description": "Reward from mmr1_test_myplug.py."} in data["rewards"]
    assert main(["list"]) == 0
    assert f"[myplug ({EP_MODULE})]" in capsys.readouterr().out


# ------------------------------------------------------------------------------ config plugins:


def test_config_plugin_file_relative_to_config(tmp_path, monkeypatch):
    _reward_plugin(tmp_path / "cfg" / "my_rewards.py", "exclaim",
                   body='return [1.0 if c.endswith("!") else 0.0 for c in completions]')
    config_file = _write(tmp_path / "cfg" / "run.yaml", """
        plugins: [./my_rewards.py]
        rewards: [exclaim, format]
        """)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the path is relative to the config file, not the working directory
    assert "exclaim" not in mmr1.list_rewards()
    config = load_config(config_file)
    pm = load_plugins(config.plugins, base_dir=config.config_dir)
    assert pm is mmr1.get_plugin_manager()
    assert "exclaim" in mmr1.list_rewards()
    assert mmr1.get_reward("exclaim")(["yes!", "no"], solution=["a", "b"]) == [1.0, 0.0]
    entry = pm.registry("register_rewards").entry("exclaim")
    assert entry.plugin == str((tmp_path / "cfg" / "my_rewards.py").resolve())

    from mmr1.grpo.rewards import build_rewards

    built = build_rewards(config.rewards)
    assert [r.name for r in built] == ["exclaim", "format"]


def test_config_plugin_file_without_dot_slash_and_loaded_twice(tmp_path):
    path = _reward_plugin(tmp_path / "twice.py", "twice_reward")
    load_plugins(["twice.py"], base_dir=tmp_path)
    load_plugins([str(path)], base_dir=None)  # the same file again: no duplicate registration
    assert mmr1.get_reward("twice_reward")(["abc"]) == [3.0]


def test_config_plugin_module_name(tmp_path, monkeypatch):
    pkg = tmp_path / "mods" / "mmr1_t_userpkg"
    _write(pkg / "__init__.py", "")
    _reward_plugin(pkg / "rewards.py", "shout", body="return [float(c.isupper()) for c in completions]")
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    for name in ("mmr1_t_userpkg", "mmr1_t_userpkg.rewards"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    config_file = _write(tmp_path / "run.yaml", "plugins: [mmr1_t_userpkg.rewards]\nrewards: [shout]\n")
    config = load_config(config_file)
    load_plugins(config.plugins, base_dir=config.config_dir)
    assert mmr1.get_reward("shout")(["ABC", "abc"]) == [1.0, 0.0]
    assert mmr1.get_plugin_manager().registry("register_rewards").entry("shout").plugin == "mmr1_t_userpkg.rewards"
    for name in ("mmr1_t_userpkg", "mmr1_t_userpkg.rewards"):
        sys.modules.pop(name, None)


def test_list_with_extra_plugin_file(tmp_path, monkeypatch, capsys):
    _reward_plugin(tmp_path / "extra.py", "extra_reward")
    monkeypatch.chdir(tmp_path)
    data = _list_json(capsys, "--plugins", "extra.py")
    entry = next(e for e in data["rewards"] if e["name"] == "extra_reward")
    assert entry["plugin"] == str((tmp_path / "extra.py").resolve())


def test_plugin_can_register_a_template(tmp_path):
    _write(tmp_path / "tpl.py", '''
        from mmr1 import hookimpl
        from mmr1.templates import Template


        @hookimpl
        def register_templates(register):
            register("shout", Template("shout", system_prompt="SHOUT.", question_template="{question}!"))
        ''')
    load_plugins(["tpl.py"], base_dir=tmp_path)
    from mmr1.templates import resolve_template

    template = resolve_template("default", question_template="shout")
    assert template.format_question("hi") == "hi!"
    assert template.system_prompt == "You are a helpful assistant."


# ------------------------------------------------------------------------------------------ errors


def test_same_reward_name_from_two_plugins_names_both(tmp_path):
    a = _reward_plugin(tmp_path / "a" / "plug_a.py", "dup_reward")
    b = _reward_plugin(tmp_path / "b" / "plug_b.py", "dup_reward")
    load_plugins([str(a), str(b)])
    with pytest.raises(RegistryError) as info:
        mmr1.list_rewards()
    message = str(info.value)
    assert "dup_reward" in message
    assert str(a.resolve()) in message and str(b.resolve()) in message


def test_clash_with_builtin_reward_names_both(tmp_path):
    path = _reward_plugin(tmp_path / "mine.py", "accuracy")
    load_plugins([str(path)])
    with pytest.raises(RegistryError) as info:
        mmr1.get_reward("accuracy")
    assert "math (mmr1_math)" in str(info.value) and str(path.resolve()) in str(info.value)


def test_plugin_file_failing_at_import(tmp_path):
    path = _write(tmp_path / "broken.py", """
        import mmr1
        raise RuntimeError("boom at import")
        """)
    with pytest.raises(PluginError) as info:
        load_plugins(["broken.py"], base_dir=tmp_path)
    message = str(info.value)
    assert str(path.resolve()) in message
    assert "RuntimeError" in message and "boom at import" in message
    # Nothing half-registered: the registries still work.
    assert "accuracy" in mmr1.list_rewards()


def test_plugin_module_failing_at_import(tmp_path, monkeypatch):
    _write(tmp_path / "mmr1_t_badmod.py", "import not_a_module_anywhere_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError) as info:
        load_plugins(["mmr1_t_badmod"])
    assert "mmr1_t_badmod" in str(info.value) and "ModuleNotFoundError" in str(info.value)


def test_missing_plugin_file(tmp_path):
    with pytest.raises(PluginError, match="does not exist"):
        load_plugins(["./nope.py"], base_dir=tmp_path)


def test_plugin_hook_that_raises(tmp_path):
    path = _write(tmp_path / "hook_fails.py", '''
        from mmr1 import hookimpl


        @hookimpl
        def register_rewards(register):
            raise ValueError("kaput")
        ''')
    load_plugins([str(path)])
    with pytest.raises(PluginError) as info:
        mmr1.list_rewards()
    message = str(info.value)
    assert str(path.resolve()) in message
    assert "register_rewards" in message and "ValueError" in message and "kaput" in message


@pytest.mark.parametrize("file_name, hook, reward, messages", [
    pytest.param("typo_hook.py", '''
        def register_reward(register):
            register("never_seen", lambda completions, **kw: [1.0] * len(completions))
        ''', "never_seen", ["register_reward", "Did you mean 'register_rewards'?"],
        id="hook-name-typo-is-not-silence"),
    pytest.param("bad_arg.py", '''
        def register_rewards(reg):
            reg("x", lambda completions, **kw: [1.0] * len(completions))
        ''', "x", ["register_rewards"], id="wrong-argument-name"),
])
def test_a_malformed_hook_is_a_plugin_error_naming_the_file(tmp_path, file_name, hook, reward, messages):
    path = _write(tmp_path / file_name, '''
        from mmr1 import hookimpl


        @hookimpl''' + hook)
    with pytest.raises(PluginError) as info:
        load_plugins([str(path)])
    message = str(info.value)
    assert str(path.resolve()) in message
    for expected in messages:
        assert expected in message, message
    assert reward not in mmr1.list_rewards()               # nothing of the file was registered


def test_bad_plugin_entry_in_config(tmp_path):
    with pytest.raises(PluginError, match="module names or .py paths"):
        load_plugins([""], base_dir=tmp_path)


def test_unknown_names_suggest_the_closest():
    with pytest.raises(RegistryError) as info:
        mmr1.get_reward("acuracy")
    message = str(info.value)
    assert "unknown reward 'acuracy'" in message
    assert "Did you mean 'accuracy'?" in message
    for name in mmr1.list_rewards():
        assert name in message
    with pytest.raises(RegistryError, match="Did you mean 'r1v'"):
        mmr1.get_template("r1vv")
    with pytest.raises(RegistryError, match="Did you mean 'json'"):
        mmr1.get_dataset("jsonl")
    with pytest.raises(RegistryError) as info:
        mmr1.get_model_adapter("zzzzzz")
    assert "Did you mean" not in str(info.value) and "qwen2_5_vl" in str(info.value)


def test_cli_reports_plugin_errors_without_traceback(tmp_path, monkeypatch, capsys):
    _write(tmp_path / "broken.py", "raise RuntimeError('boom at import')\n")
    monkeypatch.chdir(tmp_path)
    assert main(["list", "--plugins", "broken.py"]) == 2
    err = capsys.readouterr().err
    assert "boom at import" in err and "broken.py" in err and "Traceback" not in err


def test_private_manager_does_not_touch_the_global_one(tmp_path):
    path = _reward_plugin(tmp_path / "private.py", "private_reward")
    pm = PluginManager()
    pm.load([str(path)])
    assert "private_reward" in pm.registry("register_rewards")
    assert "private_reward" not in mmr1.list_rewards()
    bare = PluginManager(builtins=False, entry_points=False)
    assert bare.registry("register_rewards").names() == []
