"""The tester: writes one requirement's acceptance tests from its criteria, never the code.

The tester sees the project's title, summary and stack, the requirement (with the person's
own words for it), its criteria and the answers that settle them, the public interface and
the design decisions the plan fixes, and the supporting files: never a task's code (the suite
is written before any task runs). Its reply is file blocks, like the coder's, checked here
(:func:`suite_problems`) and asked again with the problems until it passes or the retries
run out; it may ask a person instead (``AskHuman``).
"""

from __future__ import annotations

import ast
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import Runnable

from oldnew.acceptance import SUITE_DIR, criterion_of, is_suite_path, name_prefix, suite_file
from oldnew.gates.common import parse_python
from oldnew.nodes.coding import files_from_model  # the one loop for file-block answers
from oldnew.planning.words import ScopeWords
from oldnew.prompts import render
from oldnew.recovery.retry import RetryPolicy
from oldnew.schemas import AskHuman, Feature, Plan, Scope

_OPENERS = {"open", "Path", "PurePath", "PurePosixPath", "read_text", "read_bytes", "load"}
"""Calls whose first argument, a literal path, is a file the test reads."""


@dataclass
class Brief:
    """Everything the tester is shown for one requirement (and nothing of the code)."""

    scope: Scope
    requirement: Feature
    kind: str
    plan: Plan
    answers: list[str] = field(default_factory=list)
    """The clarifications' answers that concern the requirement's criteria."""
    supporting: list[dict[str, Any]] = field(default_factory=list)
    """The supporting files' listing (``supporting.listing``)."""
    words: ScopeWords | None = None
    asked: list[str] = field(default_factory=list)
    """The tester's earlier questions to a person for this requirement, with the answers."""


def tester_messages(brief: Brief) -> list[BaseMessage]:
    """Return the tester's prompt for one requirement."""
    scope = brief.scope
    system = render("tester_system", project=scope.title, stack=scope.stack, suite_dir=SUITE_DIR)
    user = render(
        "tester_user",
        scope=scope,
        requirement=brief.requirement,
        kind=brief.kind,
        file=suite_file(brief.requirement.id),
        prefixes={c.id: name_prefix(c.id) for c in brief.requirement.criteria},
        answers=brief.answers,
        interface=brief.plan.interface,
        decisions=brief.plan.decisions,
        files=brief.supporting,
        words=brief.words,
        asked=brief.asked,
    )
    return [SystemMessage(system), HumanMessage(user)]


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


def suite_tests(files: Mapping[str, str | None], requirement: Feature) -> dict[str, str]:
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


async def write_tests(
    model: Runnable[Any, Any],
    messages: list[BaseMessage],
    requirement: Feature,
    *,
    known: Collection[str],
    root: Path,
    retries: int,
    policy: RetryPolicy,
) -> dict[str, str] | AskHuman:
    """Ask the tester until its reply passes :func:`suite_problems`; return its files or question.

    Nothing is written: the caller commits the files. A reply with problems is asked again
    with them (``blocks_retry.j2``, as the coder's is).

    Raises:
        ModelOutputError: the reply still had problems after ``retries`` more tries.

    """

    def check(files: Mapping[str, str | None]) -> list[str]:
        return suite_problems(files, requirement, known)

    result, _, _ = await files_from_model(
        model, messages, root, retries, policy, check=check, write=False
    )
    if isinstance(result, AskHuman):
        return result
    return {path: text for path, text in result.items() if text is not None}
