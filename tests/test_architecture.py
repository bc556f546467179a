"""The layering rule, checked on the source: stage packages import downward only.

Lowest first: the root package ``langgraft`` (core/) < corpora < vocab < adapters < eval <
adapt.pretrain < adapt.pipeline < adapt (the ``langgraft`` command). Every ``langgraft`` import
counts, at module level and inside functions alike (an import hidden in a function is still a
cycle). The root's shared modules import no stage; only its two edges may: the lazy facade
``langgraft/__init__.py`` (``langgraft.Pipeline``) and ``langgraft/__main__.py`` (``python -m
langgraft``), which nothing inside the package imports. Folders are mapped to dotted names by
pyproject.toml's ``package-dir`` table, the one place that says where each package lives.
"""
from __future__ import annotations

import ast
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STAGES = ("corpora", "vocab", "adapters", "eval", "adapt.pretrain", "adapt.pipeline", "adapt")  # lowest first
RANK = {"": 0, **{stage: i + 1 for i, stage in enumerate(STAGES)}}


def package_dirs() -> dict[str, Path]:
    """Dotted package -> folder, as pyproject.toml maps them (the wheel and the editable install)."""
    table = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    return {package: REPO / table["package-dir"][package] for package in table["packages"]}


PACKAGES = package_dirs()
ROOT_DIR = PACKAGES["langgraft"]
ROOT_EDGES = {ROOT_DIR / "__init__.py", ROOT_DIR / "__main__.py"}


def module_name(path: Path) -> str:
    """The dotted name ``path`` is installed under: its folder's package plus the file's stem."""
    package = next(name for name, folder in PACKAGES.items() if path.parent == folder)
    return package if path.name == "__init__.py" else f"{package}.{path.stem}"


def source_files() -> list[Path]:
    files = {path for folder in PACKAGES.values() for path in folder.glob("*.py")}
    return sorted(files)


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def langgraft_imports(path: Path, *, runtime_only: bool = False) -> list[tuple[int, str]]:
    """(line, imported name) for every ``langgraft`` import in ``path``, at any depth, relative ones
    resolved; ``runtime_only`` leaves out the imports under ``if TYPE_CHECKING:`` (they never run)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    pending: list[ast.AST] = [ast.parse(path.read_text(encoding="utf-8"), str(path))]
    while pending:
        node = pending.pop()
        if runtime_only and _is_type_checking(node):
            pending += node.orelse
            continue
        pending += ast.iter_child_nodes(node)
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # ``from langgraft import vocab`` / ``from . import lora`` import sub-modules
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
    return sorted((line, module) for line, module in found if module.split(".")[0] == "langgraft")


def stage_of(module: str) -> str:
    """The stage a dotted ``langgraft`` name belongs to: the longest stage prefix ("" = the root package)."""
    name = module.removeprefix("langgraft.")
    return max((stage for stage in STAGES if name == stage or name.startswith(stage + ".")), key=len, default="")


def layering_violations() -> list[str]:
    violations = []
    for path in source_files():
        if path in ROOT_EDGES:
            continue
        own = stage_of(module_name(path))
        for line, module in langgraft_imports(path):
            other = stage_of(module)
            if RANK[other] > RANK[own]:
                where = f"{path.relative_to(REPO)}:{line}"
                layer = f"stage {own}" if own else "the root package"
                violations.append(f"{where}: {layer} imports {module} (stage {other}, above it)")
    return violations


def test_stage_packages_import_only_their_own_layer_or_below():
    violations = layering_violations()
    assert not violations, "imports against the layering root < " + " < ".join(STAGES) + ":\n" + "\n".join(violations)


def import_graph() -> dict[str, dict[str, int]]:
    """module -> {module it imports at run time: line}; ``from pkg.mod import name`` is an edge to
    ``pkg.mod.name`` when that is a module, else to ``pkg.mod``."""
    files = {module_name(path): path for path in source_files()}
    graph: dict[str, dict[str, int]] = {}
    for module, path in files.items():
        edges = graph.setdefault(module, {})
        for line, name in langgraft_imports(path, runtime_only=True):
            target = name if name in files else name.rpartition(".")[0]
            if target in files and target != module:
                edges.setdefault(target, line)
    return graph


def import_cycles() -> list[str]:
    """Each cycle of the run-time import graph, as its edges ``file:line: a imports b``."""
    graph = import_graph()
    files = {module_name(path): path for path in source_files()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components = []

    def visit(module: str) -> None:  # Tarjan's strongly connected components
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in graph[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while not component or component[-1] != module:
                component.append(stack.pop())
            if len(component) > 1:
                components.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return ["; ".join(f"{files[a].relative_to(REPO)}:{line}: {a} imports {b}"
                      for a in component for b, line in sorted(graph[a].items()) if b in component)
            for component in components]


def test_no_module_imports_itself_through_others():
    """No import cycle between modules, in a stage or across stages (registries are filled at the
    edge: a base never imports its methods or kinds)."""
    cycles = import_cycles()
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_check_sees_imports_inside_functions_relative_imports_and_cycles(tmp_path, monkeypatch):
    """The checker itself: an in-function upward import and a relative one are reported, and so is a
    cycle hidden in a function; an import under ``if TYPE_CHECKING:`` makes no cycle."""
    stage = tmp_path / "vocab"
    stage.mkdir()
    (stage / "probe.py").write_text("from . import other\n\ndef f():\n    from langgraft.eval import bpc\n")
    (stage / "other.py").write_text("def g():\n    from langgraft.vocab import probe\n")
    (stage / "typed.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                    "    from langgraft.vocab import typer\n")
    (stage / "typer.py").write_text("import langgraft.vocab.typed\n")
    monkeypatch.setitem(globals(), "REPO", tmp_path)
    monkeypatch.setitem(globals(), "PACKAGES", {"langgraft": tmp_path / "core", "langgraft.vocab": stage})
    monkeypatch.setitem(globals(), "ROOT_EDGES", set())
    assert langgraft_imports(stage / "probe.py") == [(1, "langgraft.vocab.other"), (4, "langgraft.eval.bpc")]
    assert layering_violations() == ["vocab/probe.py:4: stage vocab imports langgraft.eval.bpc (stage eval, above it)"]
    assert import_cycles() == ["vocab/other.py:2: langgraft.vocab.other imports langgraft.vocab.probe; "
                               "vocab/probe.py:1: langgraft.vocab.probe imports langgraft.vocab.other"]


def uncommented_deferred_imports() -> list[str]:
    """Imports inside functions with no comment on their line or the six lines above (inside the
    function): each deferral must say what heavy import it keeps off which light path."""
    found = []
    for path in source_files():
        lines = path.read_text(encoding="utf-8").splitlines()
        for function in ast.walk(ast.parse("\n".join(lines), str(path))):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)) or function.name == "__getattr__":
                continue
            for node in ast.walk(function):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    window = lines[max(function.lineno, node.lineno - 7):node.end_lineno]
                    if not any("#" in line for line in window):
                        found.append(f"{path.relative_to(REPO)}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_every_import_inside_a_function_says_why_it_is_deferred():
    found = uncommented_deferred_imports()
    assert not found, "imports inside functions without a comment saying what they keep off which path:\n" + "\n".join(found)
