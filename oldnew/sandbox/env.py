"""The environment a project's own code runs in: its interpreter, import paths, node_modules.

Everything that runs or resolves the project's code (its tests, their coverage, the mutants,
import resolution, mypy's view of installed packages) takes a :class:`ProjectEnv`, and the
sandbox binds what it names. Today there is one: :meth:`ProjectEnv.host`, oldnew's own
interpreter and site-packages with the project's own ``node_modules``. A step that provisions a
per-project environment (a virtual environment built from the project's lock) describes it
with :meth:`ProjectEnv.probe` and hands that to the gates instead; nothing else changes.

oldnew's own analysis tools (ruff, mypy, bandit, detect-secrets, lizard, pip-audit) read the
project without running it: they run from :func:`oldnew_env`, whatever the project's is.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess  # nosec B404 - fixed argument lists, never a shell
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from oldnew.sandbox import pyinfo

PROBE_TIMEOUT = 60.0

# ``python -s -c`` has the working folder first on sys.path as "" (it was not there while
# ``site`` ran, so no sitecustomize or .pth of the project's ran either): drop it, import the
# tool and what it loads, put the folder back first, then run the tool as ``python -m`` does.
MODULE_LAUNCHER = (
    "import os, runpy, sys\n"
    "here = os.getcwd()\n"
    "sys.path[:] = [p for p in sys.path if p not in ('', '.', here)]\n"
    "module, preload = sys.argv[1], sys.argv[2]\n"
    "for name in [module, *filter(None, preload.split(','))]:\n"
    "    __import__(name)\n"
    "sys.path.insert(0, here)\n"
    "sys.argv[:] = [module, *sys.argv[3:]]\n"
    "runpy.run_module(module, run_name='__main__', alter_sys=True)\n"
)


class EnvironmentProbeError(Exception):
    """An interpreter could not describe itself (missing, broken, or not Python)."""


@dataclass(frozen=True)
class ProjectEnv:
    """The interpreter, import paths and node_modules a project's code runs with."""

    python: Path
    """The interpreter the project's tests run with (unresolved: a venv's ``bin/python``)."""
    prefix: Path
    """Its ``sys.prefix`` (the virtual environment's folder, if it is one)."""
    base_prefix: Path
    """Its ``sys.base_prefix``: the installation its standard library comes from."""
    version: str
    """Its version, ``3.11.7``."""
    import_paths: tuple[Path, ...]
    """Where its imports resolve: the standard library, then site-packages."""
    stdlib_modules: frozenset[str] = field(repr=False, default=frozenset())
    """Top-level modules of its standard library (built-in ones have no file to find)."""
    test_tool_paths: tuple[Path, ...] = ()
    """Folders put on PYTHONPATH so this interpreter imports the test tools oldnew drives
    (pytest, pytest-cov, coverage) when they are not installed in it: empty when they are
    (the host environment holds them)."""
    node_modules: Path | None = None
    """The project's installed npm packages, mounted read-only at ``node_modules`` in the
    copy; None when it has none."""

    # -- constructors --------------------------------------------------------------------------

    @classmethod
    def host(cls, project: Path | None = None) -> ProjectEnv:
        """Return oldnew's own environment, with ``project``'s own node_modules if it has one.

        That is how every project has been validated so far: its code runs with oldnew's
        interpreter and sees the packages installed for oldnew.
        """
        modules = Path(project) / "node_modules" if project is not None else None
        env = oldnew_env()
        return replace(env, node_modules=modules if modules and modules.is_dir() else None)

    @classmethod
    def probe(
        cls,
        python: Path | str,
        *,
        test_tool_paths: tuple[Path, ...] = (),
        node_modules: Path | None = None,
    ) -> ProjectEnv:
        """Describe the interpreter ``python`` (a virtual environment's, say) by asking it.

        It runs :mod:`oldnew.sandbox.pyinfo` with ``-I -S``: no PYTHONPATH, no user site, no
        ``.pth`` file runs, so a package installed in that environment runs nothing here.

        Raises:
            EnvironmentProbeError: ``python`` does not run, or does not answer as Python.

        """
        argv = [str(python), "-I", "-S", pyinfo.__file__]
        try:
            proc = subprocess.run(  # nosec B603 - fixed argv: an interpreter and oldnew's file
                argv,
                capture_output=True,
                text=True,
                check=False,
                timeout=PROBE_TIMEOUT,
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise EnvironmentProbeError(f"{python} does not run: {exc}") from None
        try:
            data = json.loads(proc.stdout)
        except json.JSONDecodeError:
            data = None
        if proc.returncode != 0 or not isinstance(data, dict):
            why = (proc.stderr or proc.stdout).strip()[-300:]
            raise EnvironmentProbeError(f"{python} could not describe itself: {why}")
        data["python"] = str(python)  # as named: a venv's bin/python, not what it links to
        return _from_description(data, test_tool_paths=test_tool_paths, node_modules=node_modules)

    # -- what runs with it ---------------------------------------------------------------------

    def module_argv(self, module: str, *args: str, preload: Sequence[str] = ()) -> list[str]:
        """Return the argv that runs ``python -m module`` with this interpreter, safely.

        ``python -m`` puts the working folder (the project) first on ``sys.path`` before it
        imports ``module``, so a project package named like the tool would run instead. Here
        :data:`MODULE_LAUNCHER` imports ``module`` and ``preload`` with the project's folder
        off ``sys.path`` (no user site either), then puts the folder back first, as
        ``python -m`` would, for the project's own imports (its tests import its modules).
        """
        names = ",".join(preload)
        return [str(self.python), "-s", "-c", MODULE_LAUNCHER, module, names, *args]

    def python_argv(self, *args: str) -> list[str]:
        """Return the argv that runs this interpreter with ``args``."""
        return [str(self.python), *args]

    def variables(self) -> dict[str, str]:
        """Return the environment variables a command running the project's code needs."""
        if not self.test_tool_paths:
            return {}
        return {"PYTHONPATH": os.pathsep.join(str(p) for p in self.test_tool_paths)}

    def search_path(self) -> list[str]:
        """Return every folder the project's code can import from when the gates run it."""
        return [str(p) for p in (*self.import_paths, *self.test_tool_paths)]

    @property
    def bin_dirs(self) -> tuple[Path, ...]:
        """Folders that go first on the sandbox's PATH (the environment's scripts)."""
        return (self.python.parent,)

    def read_only(self) -> tuple[Path, ...]:
        """Return the host folders the sandbox must show, read-only, for this to run.

        ``node_modules`` is not among them: the sandbox mounts it inside the project's copy.
        """
        exe = self.python.resolve()
        folders = [self.prefix, self.base_prefix, exe.parent, *self.import_paths]
        out: list[Path] = []
        for folder in [*folders, *self.test_tool_paths]:
            if folder not in out:
                out.append(folder)
        return tuple(out)

    def key(self) -> str:
        """Return what validation results depend on in this environment, hashed.

        The node_modules folder is left out: its place differs between a task's worktree and
        main, and the files it holds were never part of the key.
        """
        parts = {
            "python": str(self.python),
            "version": self.version,
            "import_paths": [str(p) for p in self.import_paths],
            "test_tool_paths": [str(p) for p in self.test_tool_paths],
        }
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _from_description(
    data: dict[str, Any], *, test_tool_paths: tuple[Path, ...], node_modules: Path | None
) -> ProjectEnv:
    return ProjectEnv(
        python=Path(data["python"]),
        prefix=Path(data["prefix"]),
        base_prefix=Path(data["base_prefix"]),
        version=str(data["version"]),
        import_paths=tuple(Path(p) for p in data["import_paths"]),
        stdlib_modules=frozenset(data["stdlib_modules"]),
        test_tool_paths=tuple(Path(p) for p in test_tool_paths),
        node_modules=node_modules,
    )


@functools.cache
def oldnew_env() -> ProjectEnv:
    """Return the environment oldnew itself runs in (its analysis tools run from it)."""
    data = pyinfo.describe()
    data["python"] = sys.executable
    return _from_description(data, test_tool_paths=(), node_modules=None)
