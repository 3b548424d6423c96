"""The mutation list of tools/mutate.py stays applicable: every ``old`` snippet occurs exactly once.

Nothing is mutated here; this only reads the list and the current source files.
"""

import ast
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(f"_mmr1_tools_{name}", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


mutations = _load("mutations")
MUTATIONS = mutations.MUTATIONS


def test_ids_are_unique_and_areas_known():
    ids = [m.id for m in MUTATIONS]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    assert {m.area for m in MUTATIONS} <= set(mutations.AREAS)
    assert all(m.description.strip() and "\n" not in m.description for m in MUTATIONS)


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m.id for m in MUTATIONS])
def test_old_occurs_exactly_once_and_new_differs(mutation):
    path = ROOT / mutation.file
    assert path.is_file(), mutation.file
    text = path.read_text(encoding="utf-8")
    assert text.count(mutation.old) == 1, f"{mutation.id}: `old` occurs {text.count(mutation.old)} times in {mutation.file}"
    assert mutation.new != mutation.old
    mutated = text.replace(mutation.old, mutation.new, 1)
    assert mutated != text
    if path.suffix == ".py":
        ast.parse(mutated)  # a mutant that does not even parse tests nothing but the import


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m.id for m in MUTATIONS])
def test_targeted_node_ids_name_existing_tests(mutation):
    """A node id's test function must exist when its file does (a file not written yet is skipped by the tool)."""
    for target in mutation.tests:
        file, _, name = target.partition("::")
        assert file.startswith("tests/"), target
        path = ROOT / file
        if name and path.is_file():
            func = name.split("::")[-1].split("[")[0]
            assert f"def {func}(" in path.read_text(encoding="utf-8"), target


def test_the_tool_maps_files_to_modules_and_never_mutates_the_working_tree(tmp_path):
    mutate = _load("mutate")
    assert mutate.module_of("mmr1/grpo/trainer.py") == "mmr1.grpo.trainer"
    assert mutate.module_of("plugins/mmr1_math/accuracy.py") == "mmr1_math.accuracy"
    assert mutate.module_of("plugins/mmr1_vision/__init__.py") == "mmr1_vision"
    assert mutate.module_of("tests/test_data.py") is None
    first = MUTATIONS[0]
    with pytest.raises(mutate.MutationError, match="inside the working tree"):
        mutate.apply(first, ROOT)
    (tmp_path / first.file).parent.mkdir(parents=True)
    (tmp_path / first.file).write_text(first.old + first.old)
    with pytest.raises(mutate.MutationError, match="2 times"):
        mutate.apply(first, tmp_path)


def test_isolation_check_accepts_a_copy_first_on_the_path_and_refuses_otherwise(tmp_path):
    """The copy's modules and entry points win only through PYTHONPATH; without it the editable
    install's paths (the working tree) would be tested, and the check must say so."""
    mutate = _load("mutate")
    tree = mutate.snapshot(ROOT, tmp_path / "tree")
    env = mutate.child_env(tree)
    mutate.verify_isolation(Path(sys.executable), tree, env, ["mmr1.grpo.checkpoint"])
    env.pop("PYTHONPATH")
    with pytest.raises(mutate.MutationError, match="do not come from the copy"):
        mutate.verify_isolation(Path(sys.executable), tree, env, ["mmr1.grpo.checkpoint"])
