"""The wheel ships the templates and the first-party plugins; the default install stays CPU-safe."""

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_contains_templates_plugins_and_entry_points(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(tmp_path)],
                   check=True, capture_output=True)
    wheel = next(tmp_path.glob("mmr1-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for template in (ROOT / "templates").glob("*.yaml"):
        assert f"mmr1/_templates/{template.name}" in names
    for package in ("mmr1_math", "mmr1_vision", "mmr1_imagegen"):
        assert f"{package}/__init__.py" in names
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "math = mmr1_math" in entry_points and "vision = mmr1_vision" in entry_points
    # an installed (non-editable) copy finds its templates inside the package
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import mmr1.templates as t; "
            "from mmr1.plugins import PluginManager; pm = PluginManager(entry_points=False); "
            "print(t.templates_dir()); print(pm.registry('register_templates').get('r1v').answer_template)")
    out = subprocess.run([sys.executable, "-c", code, str(unpacked)], capture_output=True, text=True, check=True)
    folder, answer = out.stdout.strip().splitlines()
    assert Path(folder) == unpacked / "mmr1" / "_templates"
    assert answer == "<answer> {answer} </answer>"


def test_default_install_pulls_no_gpu_only_packages():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"]).lower()
    for forbidden in ("torchvision", "vllm", "lighteval", "deepspeed", "flash-attn", "trl[vlm]"):
        assert forbidden not in core
    assert "vllm" in " ".join(project["optional-dependencies"]["gpu"])
    assert "lighteval" in " ".join(project["optional-dependencies"]["eval"])
