"""The cache of environments: one folder per lock hash, made once, complete or absent."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oldnew.deps.errors import DependencyError
from oldnew.deps.settings import DepSettings
from oldnew.locks import exclusive

MARK = ".oldnew-env.json"


@dataclass
class Installed:
    """One environment: where it is, what it holds, and what making it cost."""

    ecosystem: str
    path: Path
    key: str
    packages: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    reused: bool = False
    """True when it existed already (nothing was installed)."""
    summary: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return what events and evidence keep of it."""
        return {
            "ecosystem": self.ecosystem,
            "path": str(self.path),
            "key": self.key,
            "packages": len(self.packages),
            "seconds": round(self.seconds, 3),
            "reused": self.reused,
        }


def _size_mb(folder: Path) -> float:
    total = 0
    for dirpath, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue
    return total / 1e6


def check_caps(packages: list[dict[str, str]], settings: DepSettings, what: str) -> None:
    """Refuse a lock that pins more packages than the run allows."""
    if settings.max_packages and len(packages) > settings.max_packages:
        raise DependencyError(
            "caps",
            f"{what} pins {len(packages)} packages, more than the cap of {settings.max_packages}"
            ": raise --max-packages, or ask for fewer dependencies",
            packages=tuple(p["name"] for p in packages),
        )


def built(
    ecosystem: str,
    key: str,
    settings: DepSettings,
    packages: list[dict[str, str]],
    make: Callable[[Path], Any],
) -> Installed:
    """Return the environment ``key`` from the cache, making it with ``make(folder)`` if new.

    One process at a time makes a given environment (a file lock); others wait and reuse it.
    """
    folder = settings.cache / "envs" / f"{ecosystem}-{key}"
    start = time.monotonic()
    with exclusive(folder.with_name(folder.name + ".lock")):
        if (folder / MARK).is_file():
            return Installed(ecosystem, folder, key, packages, time.monotonic() - start, True)
        shutil.rmtree(folder, ignore_errors=True)
        folder.parent.mkdir(parents=True, exist_ok=True)
        try:
            summary = make(folder)
            size = _size_mb(folder)
            if settings.max_install_mb and size > settings.max_install_mb:
                raise DependencyError(
                    "caps",
                    f"the {ecosystem} environment holds {size:.0f} MB, more than the cap of "
                    f"{settings.max_install_mb:.0f} MB: raise --max-install-mb, or ask for "
                    "smaller dependencies",
                    packages=tuple(p["name"] for p in packages),
                )
            mark = {"key": key, "packages": packages, "size_mb": round(size, 1)}
            (folder / MARK).write_text(json.dumps(mark), encoding="utf-8")
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
    took = time.monotonic() - start
    return Installed(ecosystem, folder, key, packages, took, False, str(summary or ""))
