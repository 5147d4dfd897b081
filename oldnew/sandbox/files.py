"""The project's files as git would commit them, and copying them into a sandbox."""

from __future__ import annotations

import errno
import os
import shutil
import stat
from pathlib import Path

from oldnew.safegit import run_git

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
    proc = run_git("ls-files", "-z", "-co", "--exclude-standard", cwd=source, text=False)
    inside_git = (source / ".git").exists()
    if inside_git and proc.returncode == 0:
        names = sorted({p for p in os.fsdecode(proc.stdout).split("\0") if p})
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


def excluded(rel: str, exclude: tuple[str, ...]) -> bool:
    """Whether the project path ``rel`` is one of the folders ``exclude`` names, or in one."""
    return any(rel == folder or rel.startswith(folder.rstrip("/") + "/") for folder in exclude)


def copy_project(
    source: Path, dest: Path, *, max_bytes: int, exclude: tuple[str, ...] = ()
) -> list[str]:
    """Copy the project's files into ``dest``; symlinks stay links, never followed.

    Returns the copied paths. Anything but regular files and symlinks is skipped, and so is
    everything under the folders ``exclude`` names (project-relative: the acceptance suite,
    which no gate but its own may see).

    Raises:
        SandboxError: the files add up to more than ``max_bytes``.

    """
    total, copied = 0, []
    for rel in project_files(source):
        if excluded(rel, exclude):
            continue
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


class UnsafeOutput(Exception):
    """A file the host reads back from a sandbox run is not a plain, bounded file.

    A link, a FIFO, a device, a hard link to another file, or more than the cap: the code under
    test put it there, so the gate that wanted the file fails with this message.
    """


OUTPUT_CAP = 64 * 2**20
"""The most the host reads of any one file a sandbox run wrote (a report, coverage data)."""


def read_output(root: Path, rel: str, *, max_bytes: int = OUTPUT_CAP) -> bytes | None:
    """Return the bytes of ``root/rel``, a file that sandboxed code could have written.

    Every component of ``rel`` is opened without following links, below ``root`` (a folder
    the host made), and only a regular file with one link and at most ``max_bytes`` is read;
    a FIFO is opened without blocking and refused. Returns None when the file is not there.

    Raises:
        UnsafeOutput: the path is a link, not a regular file, hard-linked, or too large.

    """
    parts = Path(rel).parts
    if not parts or Path(rel).is_absolute() or ".." in parts:
        raise UnsafeOutput(f"{rel!r} is not a path inside {root}")
    nofollow = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | nofollow)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UnsafeOutput(f"{root} cannot be opened as a folder: {exc.strerror}") from None
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            flags = os.O_RDONLY | nofollow | (os.O_NONBLOCK if last else os.O_DIRECTORY)
            try:
                child = os.open(part, flags, dir_fd=fd)
            except FileNotFoundError:
                return None
            except OSError as exc:
                where = "/".join(parts[: i + 1])
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise UnsafeOutput(
                        f"{where} is a symbolic link or not a folder: the code under test "
                        "replaced what the host reads back with a link"
                    ) from None
                raise UnsafeOutput(f"{where} cannot be opened: {exc.strerror}") from None
            os.close(fd)
            fd = child
        return _read_regular(fd, rel, max_bytes)
    finally:
        os.close(fd)


def _read_regular(fd: int, rel: str, max_bytes: int) -> bytes:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(info.st_mode) else "a device or socket"
        if stat.S_ISDIR(info.st_mode):
            kind = "a folder"
        raise UnsafeOutput(f"{rel} is {kind}, not a regular file: the code under test put it there")
    if info.st_nlink != 1:
        raise UnsafeOutput(f"{rel} is hard-linked to another file: the code under test linked it")
    if info.st_size > max_bytes:
        raise UnsafeOutput(f"{rel} holds {info.st_size} bytes, over the {max_bytes} byte cap")
    chunks, total = [], 0
    while True:
        chunk = os.read(fd, min(2**20, max_bytes + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        if total > max_bytes:
            raise UnsafeOutput(f"{rel} grew past the {max_bytes} byte cap while it was read")
    return b"".join(chunks)


def read_project_text(root: Path, rel: str, *, max_bytes: int = OUTPUT_CAP) -> str | None:
    """Return ``root/rel`` as text (undecodable bytes replaced), read as :func:`read_output`.

    For project files the host parses itself (requirements, pyproject): a link or a device
    there is read as nothing rather than followed. Returns None when it is missing or unsafe.
    """
    try:
        data = read_output(root, rel, max_bytes=max_bytes)
    except UnsafeOutput:
        return None
    return None if data is None else data.decode("utf-8", "replace")
