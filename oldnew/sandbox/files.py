"""The project's files as git would commit them, and copying them into a sandbox."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess  # nosec B404 - fixed argument lists, never a shell
from pathlib import Path

SKIP_DIRS = frozenset(
    {".git", ".oldnew", ".venv", "venv", "node_modules", "__pycache__"}
    | {".mypy_cache", ".pytest_cache", ".ruff_cache"}
)


class SandboxError(Exception):
    """The project cannot be put in a sandbox (too large, unreadable)."""


def project_files(source: Path) -> list[str]:
    """Return the project's files as git would commit them.

    Those are the tracked files and the untracked ones git does not ignore; without git,
    every file outside VCS, caches and oldnew's own folder.
    """
    proc = subprocess.run(  # nosec B603 B607 - fixed argv, git from PATH
        ["git", "-C", str(source), "ls-files", "-z", "-co", "--exclude-standard"],
        capture_output=True,
        check=False,
    )
    inside_git = (source / ".git").exists()
    if inside_git and proc.returncode == 0:
        names = sorted({p for p in proc.stdout.decode("utf-8", "replace").split("\0") if p})
    else:
        names = []
        for dirpath, dirnames, filenames in os.walk(source):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
            rel = Path(dirpath).relative_to(source)
            names += [str(rel / f) if str(rel) != "." else f for f in sorted(filenames)]
    return [n for n in names if not SKIP_DIRS.intersection(Path(n).parts)]


def link_leaves(rel: str, target: str) -> bool:
    """Whether a symlink at ``rel`` pointing to ``target`` leads out of the project."""
    if os.path.isabs(target):
        return True
    resolved = os.path.normpath(os.path.join(os.path.dirname(rel), target))
    return resolved == ".." or resolved.startswith("../")


def copy_project(source: Path, dest: Path, *, max_bytes: int) -> list[str]:
    """Copy the project's files into ``dest``; symlinks stay links, never followed.

    Returns the copied paths. Anything but regular files and symlinks is skipped.

    Raises:
        SandboxError: the files add up to more than ``max_bytes``.

    """
    total, copied = 0, []
    for rel in project_files(source):
        src, dst = source / rel, dest / rel
        try:
            info = src.lstat()
        except OSError:
            continue  # tracked but deleted in the working tree
        dst.parent.mkdir(parents=True, exist_ok=True)
        if stat.S_ISLNK(info.st_mode):
            os.symlink(os.readlink(src), dst)
        elif stat.S_ISREG(info.st_mode):
            total += info.st_size
            if total > max_bytes:
                raise SandboxError(
                    f"the project's files exceed the sandbox's disk quota "
                    f"({max_bytes // 2**20} MB) at {rel}"
                )
            shutil.copyfile(src, dst)
            os.chmod(dst, stat.S_IMODE(info.st_mode) | 0o600)
        else:
            continue
        copied.append(rel)
    return copied


def disk_usage(root: Path) -> int:
    """Return the bytes on disk of everything under ``root``."""
    total = 0
    stack = [root]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if stat.S_ISDIR(st.st_mode):
                        stack.append(Path(entry.path))
                    else:
                        total += st.st_blocks * 512
        except OSError:
            continue
    return total


def workspace_root(path: Path) -> Path | None:
    """Return the oldnew workspace that holds ``path``, if any."""
    for folder in [path, *path.parents]:
        if (folder / ".oldnew" / "run.json").is_file():
            return folder
    return None
