"""The Python gates that read code without running it: syntax and import resolution.

Imports resolve against the project's environment (:attr:`GateRun.env`): what its
interpreter can import when the tests run is what counts, not what oldnew has installed. A
third-party module it lacks is the coder's to declare (``[project] dependencies`` in
pyproject.toml): :func:`missing_module_advice` says so, naming the distribution when known.
"""

from __future__ import annotations

import ast
import fnmatch
import functools
import importlib.machinery
import importlib.metadata
import re
import sys
import time
from pathlib import Path

from oldnew.deps.errors import DependencyError
from oldnew.deps.manifest import PY_MANIFEST, normalise, python_dependencies
from oldnew.gates.common import (
    GateRun,
    Outcome,
    files_with,
    parse_python,
)
from oldnew.gates.model import Check, CheckStatus, Diagnostic
from oldnew.sandbox import ProjectEnv

_TEST_FILE = re.compile(r"(^|/)(tests?/|test_[^/]*\.py$|[^/]*_test\.py$|conftest\.py$)")


def python_files(tree: Path) -> list[Path]:
    """Return the project's .py files."""
    return files_with(tree, (".py",))


def is_test_file(rel_path: str) -> bool:
    """Whether a project path is test code (tests/, test_*.py, *_test.py, conftest.py)."""
    return bool(_TEST_FILE.search(rel_path))


TEST_MODULES = ("test_*.py", "*_test.py")
"""The file names pytest collects tests from (its default ``python_files``)."""


def is_test_module(rel_path: str) -> bool:
    """Whether pytest collects tests from the file ``rel_path`` by its name."""
    return any(fnmatch.fnmatchcase(rel_path.rsplit("/", 1)[-1], p) for p in TEST_MODULES)


def defined_tests(source: str) -> dict[str, tuple[int, str]]:
    """Return each test a module defines (``name``, ``Class::name``, ``A::B::name``): line, code.

    Read from its syntax tree, never run: module-level ``test*`` functions and the ``test*``
    methods of ``Test*`` classes, nested ones too (pytest collects those as well); ``code`` is
    the test's syntax tree dumped, to tell a changed test from an unchanged one. A module
    that does not parse defines none.
    """
    try:
        module = parse_python(source)
    except (SyntaxError, ValueError, RecursionError):
        return {}
    found: dict[str, tuple[int, str]] = {}

    def walk(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and (
                node.name.startswith("test")
            ):
                found[prefix + node.name] = (node.lineno, ast.dump(node))
            elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
                walk(node.body, f"{prefix}{node.name}::")

    walk(module.body, "")
    return found


# -- syntax -----------------------------------------------------------------------------------


def gate_syntax(run: GateRun) -> Outcome:
    """Parse every .py file with ``ast``; never runs the code."""
    start = time.monotonic()
    diags = []
    files = python_files(run.tree)
    for path in files:
        name = str(path.relative_to(run.tree))
        try:
            parse_python(path.read_text(encoding="utf-8"), name)
        except SyntaxError as exc:
            diags.append(Diagnostic("syntax", name, exc.lineno or 0, exc.msg, "E999"))
        except (UnicodeDecodeError, ValueError, RecursionError, MemoryError) as exc:
            diags.append(Diagnostic("syntax", name, 0, f"{type(exc).__name__}: {exc}"[:300]))
    status: CheckStatus = "failed" if diags else "passed"
    check = Check(
        "syntax",
        status,
        ["ast.parse"],
        None,
        round(time.monotonic() - start, 3),
        f"{len(files)} files parsed, {len(diags)} syntax errors",
        f"python {sys.version.split()[0]}",
        metrics={"files": len(files), "errors": len(diags)},
    )
    return check, diags


# -- imports ----------------------------------------------------------------------------------


def declared_names(tree: Path) -> set[str]:
    """Return the normalised names of every Python package the project's manifest declares.

    A manifest that does not read declares nothing here (the dependency step reports it).
    """
    try:
        return {d.name for d in python_dependencies(tree)}
    except DependencyError:
        return set()


def _top_levels(dist: importlib.metadata.Distribution) -> set[str]:
    declared = (dist.read_text("top_level.txt") or "").split()
    if declared:
        return set(declared)
    names = set()
    for item in dist.files or []:
        first = item.parts[0] if item.parts else ""
        if len(item.parts) > 1 and not first.endswith((".dist-info", ".data")):
            names.add(first)
        elif len(item.parts) == 1 and item.suffix == ".py":
            names.add(item.stem)
    return names - {"__pycache__", ".."}


def module_distributions(env: ProjectEnv) -> dict[str, str]:
    """Return which distribution installed each top-level module of ``env``'s packages."""
    paths = [str(p) for p in env.import_paths]
    out: dict[str, str] = {}
    for dist in importlib.metadata.distributions(path=paths):
        name = dist.metadata["Name"] or ""
        for module in _top_levels(dist):
            out.setdefault(module, name)
    return out


@functools.cache
def _oldnew_distributions() -> dict[str, str]:
    """Top-level module -> distribution, as oldnew's own environment has them."""
    return {k: v[0] for k, v in importlib.metadata.packages_distributions().items() if v}


def missing_module_advice(top: str, tree: Path) -> str:
    """Return what the coder does about a third-party module the environment lacks.

    The distribution is named when oldnew knows which one provides ``top`` (from its own
    environment: ``yaml`` comes from ``PyYAML``); a declared one means the lock or the module
    name is wrong, not the manifest.
    """
    dist = _oldnew_distributions().get(top)
    declared = declared_names(tree)
    named = next((n for n in (dist, top) if n and normalise(n) in declared), None)
    if named is not None:
        return (
            f"{named!r} is declared in {PY_MANIFEST}, but the environment built from the lock "
            f"has no module {top!r}: import the module that distribution installs, or re-lock "
            "('uv lock') so that the lock and the environment include it"
        )
    if dist and normalise(dist) == normalise(top):
        which = f"{dist!r}"
    elif dist:
        which = f"its distribution {dist!r} (which provides {top!r})"
    else:
        which = f"the distribution that provides it (often named {top!r}: check its docs)"
    return (
        f"declare {which} in {PY_MANIFEST} [project] dependencies (a package only the tests "
        "use: in a [dependency-groups] dev group), so that oldnew locks and installs it; if "
        "it is a typo or a module of the project's, fix the import"
    )


def local_names(tree: Path, files: list[Path]) -> set[str]:
    """Names a project file can import as top-level modules (any layout pytest supports)."""
    names = set()
    for path in files:
        parts = path.relative_to(tree).parts
        names.add(path.stem)
        names.update(parts[:-1])
    return names


def _guarded(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Whether an import sits under ``try/except ImportError`` or ``if TYPE_CHECKING``."""
    child, parent = node, parents.get(node)
    while parent is not None:
        if isinstance(parent, ast.Try) and child in parent.body:
            for handler in parent.handlers:
                names = ast.unparse(handler.type) if handler.type else "Exception"
                if any(n in names for n in ("ImportError", "ModuleNotFoundError", "Exception")):
                    return True
        if isinstance(parent, ast.If) and "TYPE_CHECKING" in ast.unparse(parent.test):
            return True
        child, parent = parent, parents.get(parent)
    return False


def _relative_ok(path: Path, level: int, module: str | None, names: list[str]) -> bool:
    base = path.parent
    for _ in range(level - 1):
        base = base.parent
    target = base.joinpath(*module.split(".")) if module else base
    if target.with_suffix(".py").is_file() or target.is_dir():
        return True
    return False


def _unresolved(path: Path, tree: Path, local: set[str], env: ProjectEnv) -> list[Diagnostic]:
    try:
        module = parse_python(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError, RecursionError, MemoryError):
        return []
    parents = {child: node for node in ast.walk(module) for child in ast.iter_child_nodes(node)}
    site = env.search_path()
    diags = []
    name = str(path.relative_to(tree))
    for node in ast.walk(module):
        if isinstance(node, ast.ImportFrom) and node.level:
            if not _relative_ok(path, node.level, node.module, [a.name for a in node.names]):
                target = "." * node.level + (node.module or "")
                diags.append(
                    Diagnostic("imports", name, node.lineno, f"no module {target!r} here", "")
                )
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            targets = [node.module]
        else:
            continue
        for target in targets:
            top = target.split(".")[0]
            if top == "__future__" or top in env.stdlib_modules or top in local:
                continue
            if importlib.machinery.PathFinder.find_spec(top, site) is not None:
                continue
            if _guarded(node, parents):
                continue
            diags.append(
                Diagnostic(
                    "imports",
                    name,
                    node.lineno,
                    f"module {top!r} cannot be imported: it is not a file of the project, "
                    "not in the standard library and not installed in the project's "
                    f"environment: {missing_module_advice(top, tree)}",
                    "unresolved-import",
                )
            )
    return diags


def gate_imports(run: GateRun) -> Outcome:
    """Check statically that every import names a project file, stdlib or installed module.

    Installed means: in the project environment's stdlib or site-packages.
    """
    start = time.monotonic()
    files = python_files(run.tree)
    local = local_names(run.tree, files)
    diags = [d for path in files for d in _unresolved(path, run.tree, local, run.env)]
    status: CheckStatus = "failed" if diags else "passed"
    check = Check(
        "imports",
        status,
        ["ast import resolution"],
        None,
        round(time.monotonic() - start, 3),
        f"{len(diags)} unresolved imports in {len(files)} files",
        f"python {run.env.version}",
        metrics={"unresolved": len(diags)},
    )
    return check, diags
