"""Supporting files a person hands a run (``--with PATH``): checked, then the first commit.

A file keeps its name; a folder keeps its own name and layout (``--with samples`` gives
``samples/...``). Refused, with what to do: a path that does not exist, one inside the
workspace, a link that leads out of what was given, a file over the size cap, two paths that
would land on the same name. Version-control folders inside a given folder are left out.
The scope and plan prompts list the files (:func:`listing`): path, size, type and, for a small
text file, its text; binary and large files are listed, never pasted.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from oldnew.errors import PathViolation, UsageError
from oldnew.workspace import Workspace, check_relative_path

MAX_FILE_BYTES = 20_000_000
"""A supporting file larger than this is refused (the workspace is a git repository)."""
MAX_FILES = 5_000
SHOWN_BYTES = 2_000
"""A text file this small is pasted into the scope and plan prompts; others are listed."""
_SKIP = {".git", ".hg", ".svn", ".oldnew", "__pycache__"}


def _add(out: dict[str, bytes], name: str, path: Path, given: Path) -> None:
    try:
        check_relative_path(name)
    except PathViolation as exc:
        raise UsageError(f"--with {given}: {exc}") from None
    if name in out:
        raise UsageError(f"--with {given}: two supporting paths would both be {name!r}: rename one")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise UsageError(
            f"--with {given}: {path} is {size / 1e6:.1f} MB, over the cap of "
            f"{MAX_FILE_BYTES / 1e6:.0f} MB for a supporting file; hand over a smaller sample"
        )
    out[name] = path.read_bytes()
    if len(out) > MAX_FILES:
        raise UsageError(f"--with: more than {MAX_FILES} supporting files; hand over fewer")


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def collect(paths: Sequence[Path | str], workspace: Path | str) -> dict[str, bytes]:
    """Return the supporting files ``paths`` name, by their path in the workspace.

    Raises:
        UsageError: a path does not exist, is inside the workspace, holds a link that leads
            out of it, or a file over the cap (the message says which and what to do).

    """
    out: dict[str, bytes] = {}
    target = Path(workspace).resolve()
    for raw in paths:
        given = Path(raw)
        if not given.exists() and not given.is_symlink():
            raise UsageError(f"--with {given}: no such file or folder")
        real = given.resolve()
        if _inside(real, target) or _inside(target, real):
            raise UsageError(
                f"--with {given}: it is inside the workspace {target} (or holds it); hand over "
                "files from elsewhere"
            )
        if real.is_file():
            _add(out, given.name, real, given)
            continue
        for dirpath, dirnames, filenames in os.walk(real):
            dirnames[:] = sorted(d for d in dirnames if d not in _SKIP)
            for name in sorted(filenames):
                path = Path(dirpath) / name
                if path.is_symlink() and not _inside(path.resolve(), real):
                    raise UsageError(
                        f"--with {given}: {path} is a link that leads out of {given} (to "
                        f"{path.resolve()}); copy what it points to instead"
                    )
                if not path.resolve().is_file():
                    continue  # a FIFO, a socket, a broken link: nothing to hand over
                rel = PurePosixPath(real.name, *Path(dirpath).relative_to(real).parts, name)
                _add(out, str(rel), path.resolve(), given)
            for name in dirnames:
                link = Path(dirpath) / name
                if link.is_symlink() and not _inside(link.resolve(), real):
                    raise UsageError(
                        f"--with {given}: {link} is a link that leads out of {given}; copy "
                        "what it points to instead"
                    )
    return out


def is_text(data: bytes) -> bool:
    """Whether ``data`` reads as UTF-8 text (no NUL byte in its start)."""
    if b"\0" in data[:8192]:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def listing(root: Path, names: list[str]) -> list[dict[str, Any]]:
    """Return what the prompts show of each supporting file: path, size, type, small text."""
    out = []
    for name in names:
        path = root / name
        if not path.is_file() or path.is_symlink():
            continue
        data = path.read_bytes()
        text = is_text(data)
        kind = "text" if text else "binary"
        entry: dict[str, Any] = {"path": name, "size": len(data), "type": kind}
        if text and len(data) <= SHOWN_BYTES:
            entry["text"] = data.decode("utf-8")
        out.append(entry)
    return out


def supporting_names(ws: Workspace) -> list[str]:
    """Return the paths of the run's supporting files (none for a run started without)."""
    return list(((ws.run_info() or {}).get("supporting")) or [])


def named_by(task_text: str, task_files: list[str], names: list[str]) -> list[str]:
    """Return the supporting files a task names (in its files, title or description).

    A folder named (``samples/``) names every file in it.
    """
    out = []
    for name in names:
        parents = [str(p) for p in PurePosixPath(name).parents if str(p) != "."]
        mentioned = [name, *parents]
        if any(m in task_files or m in task_text for m in mentioned):
            out.append(name)
    return out


def task_view(root: Path, names: list[str], limit: int = 20_000) -> dict[str, str]:
    """Return what a task's coder sees of the supporting files it names: text, or a line."""
    out = {}
    for entry in listing(root, names):
        path = root / entry["path"]
        if entry["type"] == "text" and entry["size"] <= limit:
            out[entry["path"]] = path.read_text(encoding="utf-8")
        else:
            out[entry["path"]] = (
                f"({entry['type']} supporting file, {entry['size']} bytes: not shown; "
                "read it from the project's folder at run time)"
            )
    return out
