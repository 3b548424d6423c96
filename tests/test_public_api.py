"""``mmr1.api`` is the plugins' one entry point: plugins import nothing else of mmr1, every name it
declares imports, the README lists exactly those names, and mmr1's modules import without cycles."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import mmr1.api

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ROOT / "plugins"


# -- import graph ------------------------------------------------------------------------------
def package_modules(base: Path, packages) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is_package) for every .py under ``base / package``."""
    out = {}
    for package in packages:
        for path in sorted((base / package).rglob("*.py")):
            parts = list(path.relative_to(base).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


def _is_type_checking(test) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def module_level_imports(body):
    """Import statements run when the module is imported: not inside functions, not under TYPE_CHECKING."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from module_level_imports(node.body)
            yield from module_level_imports(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                yield from module_level_imports(block)
        elif isinstance(node, (ast.With, ast.ClassDef)):
            yield from module_level_imports(node.body)


def imported_names(node, module: str, is_package: bool) -> list[str]:
    """Absolute dotted names an import statement reaches (``from a import b`` -> ``a.b``, kept when a module)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - node.level + 1]
        base = ".".join(package + ([node.module] if node.module else []))
    return [f"{base}.{alias.name}" for alias in node.names] + [base]


def import_graph(modules) -> dict[str, dict[str, int]]:
    """module -> {imported module of ``modules``: line}, from module-level imports only."""
    graph = {}
    for name, (path, is_package) in modules.items():
        edges: dict[str, int] = {}
        for node in module_level_imports(ast.parse(path.read_text(), str(path)).body):
            names = imported_names(node, name, is_package)
            if isinstance(node, ast.ImportFrom):   # `from pkg import sub` depends on pkg.sub, not on pkg
                subs = [n for n in names[:-1] if n in modules]
                names = subs + ([names[-1]] if len(subs) < len(names) - 1 else [])
            for target in names:
                while target not in modules and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in modules and target != name:
                    edges.setdefault(target, node.lineno)
        graph[name] = edges
    return graph


def find_cycle(graph) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}   # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def describe(cycle, graph, modules, root=ROOT) -> str:
    steps = [f"{a} ({modules[a][0].relative_to(root)}:{graph[a][b]}) imports {b}"
             for a, b in zip(cycle, cycle[1:])]
    return "import cycle " + " -> ".join(cycle) + ":\n  " + "\n  ".join(steps)


def plugin_packages():
    return sorted(p.name for p in PLUGINS.iterdir() if (p / "__init__.py").is_file())


def all_modules():
    return {**package_modules(ROOT, ["mmr1"]), **package_modules(PLUGINS, plugin_packages())}


# -- tests -------------------------------------------------------------------------------------
def _internal_imports(node) -> list[str]:
    """What an import statement takes from mmr1 other than ``mmr1.api``, as readable phrases."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "mmr1" and a.name != "mmr1.api"]
    if not isinstance(node, ast.ImportFrom) or node.level or node.module.split(".")[0] != "mmr1":
        return []
    if node.module == "mmr1":
        return [f"{a.name} from mmr1" for a in node.names if a.name != "api"]
    if node.module == "mmr1.api":
        return []
    return [f"{', '.join(a.name for a in node.names)} from {node.module}"]


def test_plugins_import_only_the_public_api():
    bad = []
    for path in sorted(PLUGINS.rglob("*.py")):
        nodes = sorted(ast.walk(ast.parse(path.read_text(), str(path))), key=lambda n: getattr(n, "lineno", 0))
        bad += [f"{path.relative_to(ROOT)}:{node.lineno} imports {what}"
                for node in nodes for what in _internal_imports(node)]
    assert not bad, "plugins may import only mmr1.api from mmr1:\n  " + "\n  ".join(bad)


def test_every_public_name_imports():
    assert len(set(mmr1.api.__all__)) == len(mmr1.api.__all__), "a name is listed twice in mmr1.api.__all__"
    assert set(mmr1.api._LAZY) <= set(mmr1.api.__all__)
    for name in mmr1.api.__all__:
        namespace: dict = {}
        exec(f"from mmr1.api import {name}", namespace)
        assert namespace[name] is getattr(mmr1.api, name), name
    with pytest.raises(AttributeError):
        mmr1.api.no_such_name  # noqa: B018


def test_hooks_and_text_helpers_import_without_torch():
    code = "import sys; from mmr1.api import hookimpl, as_text, from_trl; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_no_import_cycles():
    modules = all_modules()
    graph = import_graph(modules)
    assert "mmr1.api" in graph and "mmr1.hookspecs" in graph["mmr1.api"]   # the graph sees real edges
    cycle = find_cycle(graph)
    assert cycle is None, describe(cycle, graph, modules)


def test_cycle_finder_names_a_cycle(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg import b\n")
    (pkg / "b.py").write_text("def f():\n    from pkg import c\n")                  # in a function: not an edge
    (pkg / "c.py").write_text("from . import d\n")
    (pkg / "d.py").write_text("import pkg.c\n")
    modules = package_modules(tmp_path, ["pkg"])
    graph = import_graph(modules)
    assert graph["pkg.a"] == {"pkg.b": 1} and graph["pkg.b"] == {}
    cycle = find_cycle(graph)
    assert cycle == ["pkg.c", "pkg.d", "pkg.c"]
    assert "pkg.d (pkg/d.py:1) imports pkg.c" in describe(cycle, graph, modules, root=tmp_path)


def test_readme_lists_exactly_the_public_names():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- API-NAMES -->\n(.*?)<!-- /API-NAMES -->", text, re.S)
    assert block, "README.md has no <!-- API-NAMES --> block"
    listed = re.findall(r"^- `([A-Za-z_][A-Za-z0-9_]*)`:", block.group(1), re.M)
    assert len(set(listed)) == len(listed), "a name is listed twice in README's API list"
    missing = [n for n in mmr1.api.__all__ if n not in listed]
    extra = [n for n in listed if n not in mmr1.api.__all__]
    assert not missing and not extra, f"README's API list: missing {missing}, not in mmr1.api.__all__ {extra}"
