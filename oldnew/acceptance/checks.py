"""The tester's files checked before they are committed: where they are, what they test.

Pure functions of the files' text (nothing runs): the suite's folder only, one file per
requirement, every file parses, every test named for a criterion and every criterion tested,
and no test reading a file that is not there. The tester's writing and the tester's repairs of
tests that do not run use the same check.
"""

from __future__ import annotations

import ast
from collections.abc import Collection, Mapping
from pathlib import PurePosixPath

from oldnew.acceptance import SUITE_DIR, criterion_of, is_suite_path, name_prefix, suite_file
from oldnew.gates.common import parse_python
from oldnew.schemas import Feature

_OPENERS = {"open", "Path", "PurePath", "PurePosixPath", "read_text", "read_bytes", "load"}
"""Calls whose first argument, a literal path, is a file the test reads."""


def _tests_in(tree: ast.Module) -> list[str]:
    """Return the test functions pytest collects from a module (top level and Test classes)."""
    names = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith(
            "test"
        ):
            names.append(node.name)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            names += [
                n.name
                for n in node.body
                if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
                and n.name.startswith("test")
            ]
    return names


def _opened(tree: ast.Module) -> list[str]:
    """Return the literal relative paths the module's code opens or reads."""
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        first = node.args[0]
        if name in _OPENERS and isinstance(first, ast.Constant) and isinstance(first.value, str):
            path = first.value.strip()
            if path and not path.startswith(("/", "~")) and ("/" in path or "." in path):
                out.append(path)
    return out


def _known(path: str, known: Collection[str]) -> bool:
    clean = str(PurePosixPath(path.removeprefix("./")))
    return clean in known or any(k.startswith(clean.rstrip("/") + "/") for k in known)


def _parsed(files: Mapping[str, str | None]) -> tuple[dict[str, ast.Module], list[str]]:
    trees: dict[str, ast.Module] = {}
    problems = []
    for path, text in files.items():
        if text is None:
            problems.append(f"DELETE: {path}: the tester adds tests; it deletes no file")
        elif path.endswith(".py"):
            try:
                trees[path] = parse_python(text, filename=path)
            except SyntaxError as exc:
                problems.append(f"{path} line {exc.lineno}: syntax error: {exc.msg}")
    return trees, problems


def tests_by_criterion(files: Mapping[str, str | None], requirement: Feature) -> dict[str, str]:
    """Return test function name -> the criterion it checks, of the files that parse."""
    ids = [c.id for c in requirement.criteria]
    trees, _ = _parsed(files)
    out: dict[str, str] = {}
    for path in sorted(trees):
        for name in _tests_in(trees[path]):
            crit = criterion_of(name, ids)
            if crit is not None and PurePosixPath(path).name.startswith("test_"):
                out[name] = crit
    return out


def suite_problems(
    files: Mapping[str, str | None], requirement: Feature, known: Collection[str] = ()
) -> list[str]:
    """Return what is wrong with the tester's reply for ``requirement`` ([] when it is fine).

    ``known`` holds the project-relative paths a test may open: the workspace's files, the
    supporting files and the files the plan's tasks make (a test that makes its own file in
    ``tmp_path`` needs none).
    """
    rid = requirement.id
    own = suite_file(rid)
    problems = [
        f"{path} is outside {SUITE_DIR}/: the acceptance suite's files go there and nowhere else"
        for path in files
        if not is_suite_path(path) or path.startswith("/") or ".." in PurePosixPath(path).parts
    ]
    if own not in files:
        problems.append(f"the tests of {rid} go in {own}: that file is missing")
    trees, unparsed = _parsed({p: t for p, t in files.items() if is_suite_path(p)})
    problems += unparsed
    ids = [c.id for c in requirement.criteria]
    covered: set[str] = set()
    for path, tree in sorted(trees.items()):
        collected = PurePosixPath(path).name.startswith("test_")
        for name in _tests_in(tree) if collected else []:
            crit = criterion_of(name, ids)
            if crit is None:
                problems.append(
                    f"{path}: test {name} names no criterion of {rid}: name each test for the "
                    f"criterion it checks, {name_prefix(ids[0]) if ids else 'test_<id>_'}<words>"
                )
            else:
                covered.add(crit)
        for opened in _opened(tree):
            if not is_suite_path(opened) and not _known(opened, known):
                problems.append(
                    f"{path} opens {opened!r}, which neither is in the project nor is a file a "
                    "task of the plan makes: make the file in tmp_path, use a supporting file "
                    "that exists, or ask a person (AskHuman) for the missing file"
                )
    for c in requirement.criteria:
        if c.id not in covered and not unparsed:
            problems.append(f"no test checks {c.id}: write one named {name_prefix(c.id)}<words>")
    return problems
