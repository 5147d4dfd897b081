"""The code's shape: no import circles, no borrowed private names, public LangGraph only,
schemas Studio can draw, and a README diagram drawn from the graph."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from oldnew.graph.diagram import readme_block

PACKAGE = Path(__file__).resolve().parent.parent / "oldnew"
README = PACKAGE.parent / "README.md"


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(path: Path, modules: dict[str, Path]) -> list[tuple[str, str | None]]:
    """Return (module, imported name) for every oldnew import of ``path`` that runs.

    Imports under ``if TYPE_CHECKING:`` never run, so they close no circle.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {
        id(n)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and ast.unparse(block.test).endswith("TYPE_CHECKING")
        for n in ast.walk(block)
    }
    found: list[tuple[str, str | None]] = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != "oldnew":
                continue
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.append((sub, None) if sub in modules else (node.module, alias.name))
        elif isinstance(node, ast.Import):
            found += [(a.name, None) for a in node.names if a.name.split(".")[0] == "oldnew"]
    return found


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Return the strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    return out


def test_no_import_circle_among_oldnew_modules() -> None:
    modules = _modules()
    edges = {
        m: {target for target, _ in _imports(p, modules) if target in modules}
        for m, p in modules.items()
    }
    assert _cycles(edges) == []


def test_no_module_imports_another_modules_private_name() -> None:
    modules = _modules()
    borrowed = [
        f"{m} imports {target}.{name}"
        for m, p in modules.items()
        for target, name in _imports(p, modules)
        if name and name.startswith("_") and target != m
    ]
    borrowed += [
        f"{m} imports module {target}"
        for m, p in modules.items()
        for target, _ in _imports(p, modules)
        if target.rsplit(".", 1)[-1].startswith("_") and not target.endswith("__init__")
    ]
    assert borrowed == []


def test_no_private_langgraph_config_key() -> None:
    users = [p for p in PACKAGE.rglob("*.py") if "__pregel_" in p.read_text(encoding="utf-8")]
    assert users == []


def test_python_is_parsed_one_thread_at_a_time() -> None:
    # CPython 3.11.7's ast.parse can fail on valid code when two threads parse at once (tasks
    # are validated in parallel): every parse goes through gates.common.parse_python's lock.
    users = [
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if re.search(r"\bast\.parse\(|PyCF_ONLY_AST", p.read_text(encoding="utf-8"))
    ]
    assert users == ["gates/common.py"]


def test_served_graph_has_input_and_output_schemas() -> None:
    from oldnew.graph.server import graph

    form = graph.get_input_jsonschema()
    assert form["properties"]["scope_text"]["type"] == "string"
    assert "scope_text" not in form.get("required", [])  # a restart or feedback needs none
    out = graph.get_output_jsonschema()
    assert {"status", "tasks", "questions", "report"} <= set(out["properties"])


def test_readme_diagram_is_drawn_from_the_graphs() -> None:
    text = README.read_text(encoding="utf-8")
    assert readme_block() in text, "run: python -m oldnew.graph.diagram --write README.md"
