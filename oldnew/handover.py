"""What a delivered project carries so that a person can use it without oldnew.

Delivery adds, in one commit on main, what the tasks did not write: a ``.gitignore`` for the
environments and caches the project's tools make, and a README that says how to install,
test and run it, from its manifests (an existing README gets an "Install and run" section
when it says nothing about installing). Nothing a task wrote is replaced.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from oldnew.deps.errors import DependencyError
from oldnew.deps.manifest import JS_LOCK, JS_MANIFEST, PY_LOCK, PY_MANIFEST, declared
from oldnew.sandbox.files import read_project_text
from oldnew.workspace import Workspace

GITIGNORE = (
    "# environments and caches the project's tools make\n"
    ".venv/\nnode_modules/\n__pycache__/\n*.py[cod]\n.pytest_cache/\n.mypy_cache/\n"
    ".ruff_cache/\n.coverage\ncoverage.json\nhtmlcov/\ndist/\nbuild/\n*.egg-info/\n"
)
_README = re.compile(r"^readme(\.(md|rst|txt))?$", re.I)


def _pyproject(tree: Path) -> dict[str, Any]:
    text = read_project_text(tree, PY_MANIFEST)
    try:
        return tomllib.loads(text) if text else {}
    except tomllib.TOMLDecodeError:
        return {}


def _commands(tree: Path) -> list[str]:
    """Return the README's install/test/run lines for what the project holds."""
    lines: list[str] = []
    data = _pyproject(tree)
    python = any(tree.rglob("*.py")) or bool(data)
    if python:
        if (tree / PY_LOCK).is_file():
            lines += [
                "Python, with [uv](https://docs.astral.sh/uv/) (the versions in `uv.lock`):",
                "",
                "```sh",
                "uv sync                      # creates .venv with the locked dependencies",
                "uv run --with pytest pytest  # runs the tests",
                "```",
            ]
        else:
            lines += [
                "Python (standard library only):",
                "",
                "```sh",
                "python -m venv .venv && .venv/bin/pip install pytest",
                ".venv/bin/python -m pytest",
                "```",
            ]
        runs = [f"uv run {name}" for name in (data.get("project", {}).get("scripts") or {})]
        runs += [
            f"uv run python -m {p.parent.name}"
            for p in sorted(tree.glob("*/__main__.py"))
            if (p.parent / "__init__.py").is_file()
        ]
        if runs:
            lines += ["", "Run it:", "", "```sh", *runs, "```"]
    if (tree / JS_MANIFEST).is_file():
        install = "npm ci --ignore-scripts" if (tree / JS_LOCK).is_file() else "npm install"
        lines += ["", "JavaScript/TypeScript:", "", "```sh", install, "npm test", "```"]
    return lines


def _dependency_lines(tree: Path) -> list[str]:
    try:
        deps = declared(tree)
    except DependencyError:
        return []
    if not deps:
        return []
    out = ["", "## Dependencies", ""]
    for d in deps:
        group = "" if d.group == "main" else f" ({d.group})"
        why = f": {d.why}" if d.why else ""
        out.append(f"- `{d.name}{d.spec}`{group}{why}")
    return out


def readme_text(tree: Path, title: str, summary: str) -> str:
    """Return a README for the project in ``tree``: what it is, how to install, test, run."""
    lines = [f"# {title or tree.name}", "", summary or "", "", "## Install and run", ""]
    lines += _commands(tree) + _dependency_lines(tree)
    lines += ["", "Built and validated by oldnew; see `.oldnew/report.md` in its workspace.", ""]
    return "\n".join(lines)


def hand_over(ws: Workspace, title: str, summary: str) -> list[str]:
    """Add the README and .gitignore main lacks, as one commit; return the paths written.

    A run on a person's repository adds nothing it was not asked for (the repository's
    README and ignore rules are theirs), and hands the branch over: the run's checkout lets
    go of it, so that the person can check it out.
    """
    if ws.repo is not None:
        ws.release_branch()
        return []
    tree = ws.root
    written: list[str] = []
    if not (tree / ".gitignore").exists():
        (tree / ".gitignore").write_text(GITIGNORE, encoding="utf-8")
        written.append(".gitignore")
    readme = next((p for p in sorted(tree.iterdir()) if _README.match(p.name)), None)
    if readme is None:
        (tree / "README.md").write_text(readme_text(tree, title, summary), encoding="utf-8")
        written.append("README.md")
    elif readme.is_file() and not readme.is_symlink():
        text = readme.read_text(encoding="utf-8", errors="replace")
        if not re.search(r"\binstall", text, re.I):
            section = readme_text(tree, title, summary).split("## Install and run", 1)[1]
            readme.write_text(text.rstrip() + "\n\n## Install and run" + section, encoding="utf-8")
            written.append(readme.name)
    if written:
        ws.git("add", "--", *written)
        ws.git("commit", "-q", "-m", "Hand-over: how to install, test and run the project")
    return written
