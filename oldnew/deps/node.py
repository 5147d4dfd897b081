"""JavaScript/TypeScript dependencies with npm: lock package.json, install the lock.

(Being written: ``lock`` and ``install`` are the interface :mod:`oldnew.deps.envs` and the
dependencies step use.)
"""

from __future__ import annotations

from pathlib import Path

from oldnew.deps.errors import DependencyError
from oldnew.deps.settings import DepSettings
from oldnew.deps.store import Installed


def lock(tree: Path, settings: DepSettings) -> bool:
    """Resolve ``tree``'s package.json into package-lock.json; return whether it changed."""
    raise DependencyError("install", "npm dependencies are not handled yet")


def install(tree: Path, settings: DepSettings) -> Installed:
    """Return the node_modules environment of ``tree``'s package-lock.json."""
    raise DependencyError("install", "npm dependencies are not handled yet")


def locked_packages(lock_text: str) -> list[dict[str, str]]:
    """Return the packages a package-lock.json pins (name, version)."""
    return []
