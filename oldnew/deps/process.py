"""Running a package manager: a fixed argv, an environment oldnew chose, a time limit."""

from __future__ import annotations

import subprocess  # nosec B404 - fixed argument lists, never a shell
from pathlib import Path

from oldnew.deps.errors import DependencyError


def run_manager(
    argv: list[str], *, cwd: Path, env: dict[str, str], timeout: float, source: str
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` (uv or npm, then its command) in ``cwd``, its output captured.

    Raises:
        DependencyError: it took longer than ``timeout`` (kind ``install``: the message says
            to raise --install-timeout, or to check that ``source``, the index, answers).

    """
    try:
        return subprocess.run(  # nosec B603 - fixed argv: a package manager and oldnew's args
            argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        tool, command = Path(argv[0]).name, (argv[1:] or [""])[0]
        raise DependencyError(
            "install",
            f"{tool} {command} took longer than {timeout:g} s and was stopped: raise "
            f"--install-timeout, or check that {source} answers",
        ) from None
