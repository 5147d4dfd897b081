"""What a project declares it needs: ``pyproject.toml`` and ``package.json``, read and checked.

The coder declares dependencies the way each ecosystem does: Python in ``[project]
dependencies`` with test tools in a ``[dependency-groups]`` group (or an extra), JS/TS in
``dependencies`` and ``devDependencies``. This module reads them, never runs anything, and
refuses what would make a lock depend on more than a package index: a direct URL or path, a
VCS source, dynamic dependencies, an install script of the project's own.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from oldnew.deps.errors import DependencyError
from oldnew.sandbox.files import read_project_text

Ecosystem = Literal["python", "node"]
PY_MANIFEST, PY_LOCK = "pyproject.toml", "uv.lock"
JS_MANIFEST, JS_LOCK = "package.json", "package-lock.json"
INSTALL_SCRIPTS = ("preinstall", "install", "postinstall", "prepare", "prepublish")
"""npm lifecycle scripts that run on ``npm install``/``npm ci`` of the project itself."""

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)$")
_URLISH = re.compile(r"(^|\s)@\s*\S|://|^(git\+|file:|\.{0,2}/)")
_NPM_SPEC_OK = re.compile(r"^[\w^~<>=|.*\s@/-]*$")
NPM_TABLES = (
    ("dependencies", "main"),
    ("devDependencies", "dev"),
    ("optionalDependencies", "optional"),
    ("peerDependencies", "peer"),
)
"""package.json's tables of packages, each reviewed and locked (an alias to another name is
refused: the name reviewed must be the name installed)."""
NPM_REFUSED = ("overrides", "bundleDependencies", "bundledDependencies", "workspaces")


@dataclass(frozen=True)
class Dependency:
    """One package a project declares."""

    ecosystem: Ecosystem
    name: str
    """Normalised: lower case, ``-`` for runs of ``-_.`` (PEP 503) for Python."""
    spec: str
    """The version constraint as written (``>=4.12``, ``^5.0.0``), or ``""``."""
    group: str = "main"
    """``main`` for what the project runs with; a group or extra name (``dev``) otherwise."""
    why: str = ""
    """The comment the coder wrote beside it, if any."""

    @property
    def key(self) -> str:
        """Return ``ecosystem:name``, the one name a dependency has in records and answers."""
        return f"{self.ecosystem}:{self.name}"


def normalise(name: str) -> str:
    """Return a Python package name in PEP 503 form (``Foo_Bar`` -> ``foo-bar``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def package_names(answer: str, ecosystem: Ecosystem) -> list[Dependency]:
    """Return the packages a person's answer names, or [] when it is not only package names.

    ``"httpx"``, ``"lxml, html5lib"`` and ``"httpx>=0.27"`` name packages (one, or several
    separated by commas, at most five); a sentence does not.
    """
    parts = [p.strip() for p in answer.split(",")]
    out = []
    for part in parts:
        match = re.fullmatch(r"(@?[A-Za-z0-9][A-Za-z0-9._/-]*)\s*([<>=!~^@]\S*)?", part)
        if match is None:
            return []
        name = match.group(1)
        out.append(Dependency(ecosystem, normalise(name) if ecosystem == "python" else name, ""))
    return out if len(out) <= 5 else []


def uses(tree: Path, ecosystem: Ecosystem) -> bool:
    """Whether ``tree`` declares packages of ``ecosystem``, or has its lock (to keep in step)."""
    if ecosystem == "python":
        return bool(python_dependencies(tree)) or (tree / PY_LOCK).is_file()
    return bool(node_dependencies(tree)) or (tree / JS_LOCK).is_file()


def declared(tree: Path) -> list[Dependency]:
    """Return every dependency the project in ``tree`` declares, Python's then JS's.

    Raises:
        DependencyError: a manifest does not read, or declares what no lock can pin (kind
            ``manifest``: the coder's to fix; the message says how).

    """
    return [*python_dependencies(tree), *node_dependencies(tree)]


def _comments(text: str) -> dict[str, str]:
    """Map each quoted requirement on a line to the comment after it (``"x>=1",  # why``)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        quoted, _, comment = line.partition("#")
        match = re.search(r"""["']([^"']+)["']""", quoted)
        if match and comment.strip():
            out[match.group(1).strip()] = comment.strip()[:200]
    return out


def _python_requirement(raw: str, group: str, why: dict[str, str]) -> Dependency:
    text = raw.split(";", 1)[0]
    match = _NAME.match(text)
    if not match or _URLISH.search(match.group(3) or ""):
        raise DependencyError(
            "manifest",
            f"{PY_MANIFEST}: {raw!r} is not a package from the index: declare it by name with "
            "a version range (for example 'requests>=2.31'); URLs, paths and VCS sources "
            "cannot be locked and audited here",
        )
    return Dependency(
        "python", normalise(match.group(1)), match.group(3).strip(), group, why.get(raw.strip(), "")
    )


def python_dependencies(tree: Path) -> list[Dependency]:
    """Return what ``pyproject.toml`` declares: dependencies, groups, optional extras."""
    text = read_project_text(tree, PY_MANIFEST)
    if text is None:
        return []
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DependencyError(
            "manifest", f"{PY_MANIFEST} is not valid TOML ({exc}): fix its syntax"
        ) from None
    project = data.get("project", {})
    if not isinstance(project, dict):
        raise DependencyError("manifest", f"{PY_MANIFEST}: [project] must be a table")
    if "dependencies" in (project.get("dynamic") or []):
        raise DependencyError(
            "manifest",
            f"{PY_MANIFEST}: dependencies are 'dynamic': list them in [project] dependencies "
            "so they can be resolved without building the project",
        )
    uv = (data.get("tool") or {}).get("uv") if isinstance(data.get("tool"), dict) else None
    if uv is not None:
        raise DependencyError(
            "manifest",
            f"{PY_MANIFEST} has a [tool.uv] table: oldnew resolves with the run's own settings "
            "(its index, no sources, wheels only) and refuses uv settings of the project's "
            "(indexes, sources, overrides, workspaces). Remove [tool.uv]; declare test tools "
            "under [dependency-groups] dev instead of tool.uv dev-dependencies",
        )
    why = _comments(text)
    groups: dict[str, Any] = {"main": project.get("dependencies", [])}
    groups |= {f"extra:{k}": v for k, v in (project.get("optional-dependencies") or {}).items()}
    groups |= dict(data.get("dependency-groups") or {})
    out: list[Dependency] = []
    for group, items in groups.items():
        if not isinstance(items, list):
            raise DependencyError(
                "manifest", f"{PY_MANIFEST}: the dependencies of {group!r} must be a list"
            )
        for item in items:
            if isinstance(item, dict):  # {include-group = "..."}: resolved by uv itself
                continue
            if not isinstance(item, str):
                raise DependencyError(
                    "manifest", f"{PY_MANIFEST}: {item!r} in {group!r} is not a requirement"
                )
            out.append(_python_requirement(item, group, why))
    return out


def node_dependencies(tree: Path) -> list[Dependency]:
    """Return what ``package.json`` declares in ``dependencies`` and ``devDependencies``."""
    data = read_package_json(tree)
    if data is None:
        return []
    scripts = data.get("scripts") or {}
    hooks = [s for s in INSTALL_SCRIPTS if isinstance(scripts, dict) and s in scripts]
    if hooks:
        raise DependencyError(
            "manifest",
            f"{JS_MANIFEST} has install scripts ({', '.join(hooks)}): oldnew installs with "
            "--ignore-scripts, so they would never run; remove them and do that work in a "
            "build or test script instead",
        )
    unsafe = [k for k in NPM_REFUSED if k in data]
    if unsafe:
        raise DependencyError(
            "manifest",
            f"{JS_MANIFEST} has {', '.join(unsafe)}: oldnew locks and audits each package "
            "the project declares by name and version, so overrides, bundled packages and "
            "workspaces are refused; declare every package in dependencies or devDependencies",
        )
    out: list[Dependency] = []
    for field, group in NPM_TABLES:
        table = data.get(field) or {}
        if not isinstance(table, dict):
            raise DependencyError("manifest", f"{JS_MANIFEST}: {field} must be an object")
        for name, spec in table.items():
            if not isinstance(spec, str) or not _NPM_SPEC_OK.match(spec) or "npm:" in spec:
                raise DependencyError(
                    "manifest",
                    f"{JS_MANIFEST}: {name}@{spec!r} is not a registry version range: use one "
                    "such as '^1.2.0'; URLs, paths, git, file: sources and npm: aliases "
                    "cannot be locked as declared",
                )
            out.append(Dependency("node", name, spec, group))
    return out


def read_package_json(tree: Path) -> dict[str, Any] | None:
    """Return ``package.json`` as a dict, None if there is none.

    Raises:
        DependencyError: it is not a JSON object.

    """
    text = read_project_text(tree, JS_MANIFEST)
    if text is None:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DependencyError(
            "manifest", f"{JS_MANIFEST} is not valid JSON ({exc}): fix its syntax"
        ) from None
    if not isinstance(data, dict):
        raise DependencyError("manifest", f"{JS_MANIFEST} must hold a JSON object")
    return data
