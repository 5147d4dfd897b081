"""Project environments, built from a lock and shared by every task and run with that lock.

An environment is a folder under the cache, named by the hash of the lock it was built from
(and the interpreter), complete once its marker file is written. A second task or run with
the same lock finds it and installs nothing; a lock with one package more is a new folder,
filled from uv's (or npm's) cache by hard links, so only the new package is fetched. A folder
without its marker (a build that was killed, a disk that filled) is removed and built again.

The gates get it as a :class:`~oldnew.sandbox.ProjectEnv`: its interpreter, its site-packages
(read-only in the sandbox), and the test tools oldnew drives when the project's own
environment lacks them.
"""

from __future__ import annotations

import compileall
import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import sys
from dataclasses import replace
from pathlib import Path

from oldnew.deps import node, python
from oldnew.deps.errors import DependencyError
from oldnew.deps.manifest import PY_LOCK, uses
from oldnew.deps.settings import DepSettings
from oldnew.deps.store import Installed, built, check_caps
from oldnew.sandbox import ProjectEnv

LAYOUT = "2"
"""How oldnew lays out an environment (bytecode compiled, test tools lent by a .pth): part of
every environment's key, so a cache made by an older layout is never taken for this one."""
LENT = "zz-oldnew-test-tools.pth"
"""The file in an environment's site-packages that lends it oldnew's test tools."""
TEST_TOOLS = ("pytest", "pluggy", "iniconfig", "packaging", "pygments", "coverage", "pytest-cov")
"""The distributions oldnew's pytest and coverage gates import, lent to an environment that
lacks them (the project declared no test tools)."""


def python_env(tree: Path, settings: DepSettings) -> Installed:
    """Return the Python environment of ``tree``'s uv.lock (a bare one when it declares none).

    Raises:
        DependencyError: the lock is missing or broken, a cap is passed, or uv failed.

    """
    tools = test_tools(settings)
    interpreter = f"{LAYOUT} {python.base_python()} {sys.version.split()[0]} {tools.name}"
    if not uses(tree, "python"):
        key = hashlib.sha256(f"bare {interpreter}".encode()).hexdigest()[:16]

        def bare(folder: Path) -> str:
            python.bare_venv(folder, settings)
            return lend_test_tools(folder, tools)

        return built("py", key, settings, [], bare)
    if not (tree / PY_LOCK).is_file():
        python.check_lock(tree, settings)  # raises: no lock
    text = (tree / PY_LOCK).read_text(encoding="utf-8")
    packages = python.locked_packages(text)
    check_caps(packages, settings, PY_LOCK)
    key = hashlib.sha256(f"{interpreter}\0{text}".encode()).hexdigest()[:16]

    def synced(folder: Path) -> str:
        summary = python.sync(tree, folder, settings)
        return f"{summary}\n{lend_test_tools(folder, tools)}".strip()

    return built("py", key, settings, packages, synced)


def _lend(source: Path, target: Path) -> None:
    """Hard-link ``source`` at ``target`` (a copy, with its times, across file systems)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _site_packages(folder: Path) -> Path:
    found = sorted(folder.glob("lib/python*/site-packages"))
    if not found:
        raise DependencyError("install", f"{folder} has no site-packages: delete it and retry")
    return found[0]


def lend_test_tools(folder: Path, tools: Path) -> str:
    """Put oldnew's test tools after the environment's own packages, when it lacks them.

    A ``.pth`` file appends ``tools`` to the end of ``sys.path``: what the project locked
    (its own pytest, packaging, coverage) comes first and is what its code gets; the tools
    fill in only what it does not have. Returns what was done, for the install summary.
    """
    site = _site_packages(folder)
    if all((site / name).is_dir() for name in ("pytest", "pytest_cov")):
        return ""
    (site / LENT).write_text(f"{tools}\n", encoding="utf-8")
    return f"test tools lent from {tools}"


def node_env(tree: Path, settings: DepSettings) -> Installed | None:
    """Return the node_modules environment of ``tree``'s package-lock.json, if it has deps."""
    return node.install(tree, settings) if uses(tree, "node") else None


def lock_all(tree: Path, settings: DepSettings) -> bool:
    """Lock every manifest ``tree`` uses (uv, npm); return whether a lock changed.

    Raises:
        DependencyError: a manifest cannot be locked (by its kind: the coder's or a person's).

    """
    changed = False
    if uses(tree, "python"):
        changed |= python.lock(tree, settings)
    if uses(tree, "node"):
        changed |= node.lock(tree, settings)
    return changed


def test_tools(settings: DepSettings) -> Path:
    """Return a folder holding oldnew's own pytest, pytest-cov and coverage, to lend.

    Copied (hard-linked where the disk allows) from oldnew's environment once per version set.
    """
    dists = [importlib.metadata.distribution(name) for name in TEST_TOOLS]
    versions = " ".join(f"{d.metadata['Name']}={d.version}" for d in dists)
    key = hashlib.sha256(f"{LAYOUT}\0{sys.version}\0{versions}".encode()).hexdigest()[:16]

    def make(folder: Path) -> str:
        for dist in dists:
            for item in dist.files or []:
                source = Path(str(dist.locate_file(item)))
                if ".." in item.parts or item.suffix == ".pyc" or not source.is_file():
                    continue
                _lend(source, folder / item)
                if source.suffix == ".py":  # its bytecode too, valid for the linked source
                    cached = Path(importlib.util.cache_from_source(str(source)))
                    if cached.is_file():
                        _lend(cached, Path(importlib.util.cache_from_source(str(folder / item))))
        # The sandbox mounts it read-only: compile now, or every test run compiles it again.
        compileall.compile_dir(folder, quiet=2, workers=1)
        return versions

    return built("test-tools", key, settings, [], make).path


def project_env(
    tree: Path,
    settings: DepSettings,
    py: Installed | None = None,
    js: Installed | None = None,
) -> ProjectEnv:
    """Return the environment the gates run ``tree``'s code with, installing it if needed.

    ``py`` and ``js`` are environments already made for this tree (by the dependencies step).

    Raises:
        DependencyError: the environment cannot be made (see :func:`python_env`).

    """
    py = py or python_env(tree, settings)
    js = js if js is not None else node_env(tree, settings)
    modules = js.path / "node_modules" if js is not None else None
    env = ProjectEnv.probe(py.path / "bin" / "python", node_modules=modules)
    lent = _site_packages(py.path) / LENT
    if not lent.is_file():
        return env
    # The probe runs without ``site`` (no .pth runs on the host): add what the .pth adds.
    tools = Path(lent.read_text(encoding="utf-8").strip())
    return replace(env, import_paths=(*env.import_paths, tools))
