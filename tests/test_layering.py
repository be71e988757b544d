"""The layering of ARCHITECTURE.md, checked: a room imports only from rooms below it, and no module imports
itself back through others. Read from the source (every ``import`` of learnact, at module level or inside a
function; ``if TYPE_CHECKING:`` blocks excepted, as they never run), so a new upward import or cycle fails
here rather than in a reviewer's head."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Bottom to top. engine's sub-rooms: its base (the flat modules of engine/: records, run folders, splits, the
# terminal's escape), the model clients, the agents, the runs and executors, the reports and audit, the commands;
# last the package itself, which re-exports the library's names.
ENGINE_SUB_ROOMS = ("llm", "agents", "runs", "reports", "commands")
ROOMS = (
    "actions",
    "images",
    "envs",
    "sandbox",
    "learner",
    "engine.base",
    *(f"engine.{sub_room}" for sub_room in ENGINE_SUB_ROOMS),
    "engine",
)
ENGINE_BASE = {"records", "rundir", "splits", "markup"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(("learnact", *(parts[:-1] if parts[-1] == "__init__" else parts)))


MODULES = {
    _module_name(path): path
    for top in ("actions", "images", "envs", "sandbox", "learner", "engine")
    for path in (ROOT / top).rglob("*.py")
}


def room(module: str) -> str:
    parts = module.split(".")
    if parts[1] == "engine" and len(parts) > 2:
        return f"engine.{parts[2]}" if parts[2] in ENGINE_SUB_ROOMS else "engine.base"
    return parts[1]


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(tree: ast.AST) -> list[tuple[str, int]]:
    """The learnact modules a tree imports (``from package import submodule`` names the submodule)."""
    found: list[tuple[str, int]] = []
    pending = [tree]
    while pending:
        node = pending.pop()
        if _type_checking(node):
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names if alias.name.startswith("learnact.")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("learnact"):
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.append((submodule if submodule in MODULES else node.module, node.lineno))
        pending.extend(ast.iter_child_nodes(node))
    return found


def _known(target: str) -> str | None:
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target or None


GRAPH = {
    module: {
        (known, line)
        for target, line in _imports(ast.parse(path.read_text(encoding="utf-8")))
        if (known := _known(target)) is not None and known != module
    }
    for module, path in MODULES.items()
}


def test_every_module_belongs_to_a_room() -> None:
    assert {room(module) for module in MODULES} <= set(ROOMS)
    assert len(MODULES) > 80


def test_engine_base_is_the_flat_modules_the_architecture_names() -> None:
    """A module added flat to engine/ joins its base, below the model clients: on purpose, or in a sub-room."""
    flat = {module.split(".")[2] for module in MODULES if room(module) == "engine.base"}
    assert flat == ENGINE_BASE


def test_no_room_imports_from_a_room_above_it() -> None:
    upward = [
        f"{MODULES[module].relative_to(ROOT)}:{line} imports {target} ({room(module)} -> {room(target)})"
        for module, targets in sorted(GRAPH.items())
        for target, line in sorted(targets)
        if ROOMS.index(room(target)) > ROOMS.index(room(module))
    ]
    assert upward == []


def _cycles() -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    edges = {module: sorted({target for target, _ in targets}) for module, targets in GRAPH.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in edges[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(edges):
        if module not in index:
            visit(module)
    return found


def test_no_module_imports_itself_back_through_others() -> None:
    assert _cycles() == []


def test_the_checks_find_what_they_look_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """An upward import and a cycle, planted in the graph, are both found."""
    planted = {module: set(targets) for module, targets in GRAPH.items()}
    planted["learnact.actions.errors"].add(("learnact.engine.commands.cli", 1))
    planted["learnact.engine.commands.cli"].add(("learnact.actions.errors", 1))
    monkeypatch.setattr(sys.modules[__name__], "GRAPH", planted)
    with pytest.raises(AssertionError, match="learnact.engine.commands.cli"):
        test_no_room_imports_from_a_room_above_it()
    assert any("learnact.actions.errors" in cycle for cycle in _cycles())


def test_the_error_root_loads_neither_the_checker_nor_restrictedpython() -> None:
    probe = (
        "import sys, learnact.actions.errors; "
        "print([m for m in sys.modules if m.startswith(('RestrictedPython', 'learnact.actions.checker'))])"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert loaded.stdout.strip() == "[]"
