"""What dependency handling takes from a run's settings, in one small value."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from oldnew.context import Context


BUILT_WHEELS = "built-wheels"
"""The cache folder of wheels built from source (``deps.builds``), a page per package."""


def default_cache() -> Path:
    """Return where environments and uv's cache live: ``$XDG_CACHE_HOME/oldnew`` (or ~/.cache)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "oldnew"


@dataclass(frozen=True)
class DepSettings:
    """How dependencies are resolved and installed for one run."""

    cache: Path
    """Environments (keyed by their lock's hash) and the package managers' caches."""
    index: str | None = None
    """The Python package index (a simple-API URL or a folder); None: uv's default, PyPI."""
    npm_registry: str | None = None
    """The npm registry URL; None: npm's configured one."""
    timeout: float = 600.0
    """Seconds one resolution or installation may take."""
    max_packages: int = 100
    """Packages a lock may pin, at most (0: no cap)."""
    max_install_mb: float = 1000.0
    """Megabytes an installed environment may hold, at most (0: no cap)."""
    find_links: tuple[Path, ...] = ()
    """Pages of wheels built from source with a person's leave (``deps.builds``), offered to
    uv beside the index."""

    @classmethod
    def of(cls, ctx: Context) -> DepSettings:
        """Return the dependency settings of a run's context."""
        return cls(
            cache=Path(ctx.deps_cache).expanduser() if ctx.deps_cache else default_cache(),
            index=ctx.package_index or None,
            npm_registry=ctx.npm_registry or None,
            timeout=ctx.install_timeout,
            max_packages=ctx.max_packages,
            max_install_mb=ctx.max_install_mb,
        )
