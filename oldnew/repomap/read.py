"""The ``ReadFile`` tool's answer: a project file's text (whole or some lines), or why not.

Only a file the context's listing knows is served: tracked, or new and not ignored by the
project's git (a ``.env`` or a build folder git ignores is never shown). One answer holds at
most :data:`READ_MAX_BYTES`; a larger file is read by line ranges.
"""

from __future__ import annotations

from pathlib import Path

from oldnew.errors import PathViolation
from oldnew.safegit import run_git
from oldnew.supporting import is_text
from oldnew.workspace import resolve_inside

READ_MAX_BYTES = 100_000
"""One ``ReadFile`` answer holds at most this much of a file; a larger one is read by ranges."""
RANGE_MAX_FILE_BYTES = 20_000_000
"""A file larger than this is not read at all, not even by ranges."""


def ignored(tree: Path, path: str) -> bool:
    """Whether the project's git ignores ``path`` (a tracked file never is)."""
    proc = run_git("check-ignore", "-q", "--", path, cwd=tree)
    return proc.returncode == 0  # 1: not ignored; 128: no repository, nothing is ignored


def _lines_answer(path: str, lines: list[str], start: int, end: int | None) -> str:
    total = len(lines)
    if start > max(total, 1):
        return f"ERROR: {path} has {total} lines; start_line {start} is past its end."
    first = start - 1
    last = min(total, end if end is not None else total)
    out: list[str] = []
    size = 0
    for line in lines[first:last]:
        if size + len(line.encode()) > READ_MAX_BYTES:
            break
        out.append(line)
        size += len(line.encode())
    if not out and first < last:  # one line over the cap alone: its start, and why
        raw = lines[first].encode()
        part = raw[:READ_MAX_BYTES].decode("utf-8", "ignore")
        return (
            f"{path}: line {start} of {total}, cut: the line is {len(raw)} bytes, over the cap "
            f"of {READ_MAX_BYTES} bytes an answer; its first {len(part.encode())} bytes:\n{part}"
        )
    shown_end = first + len(out)
    head = f"{path}: lines {start}-{shown_end} of {total}"
    if shown_end < last:
        head += (
            f" (cut at the cap of {READ_MAX_BYTES} bytes an answer; ask again with "
            f"start_line={shown_end + 1})"
        )
    return f"{head}\n{''.join(out)}"


def read_for_model(
    tree: Path, path: str, start_line: int | None = None, end_line: int | None = None
) -> str:
    """Return what the model is told when it asks for ``path``: its text, or a clear refusal.

    With ``start_line``/``end_line`` (1-based, inclusive) only those lines, under a line that
    says which and how many the file has; a file over the cap is served by ranges the same way.
    """
    try:
        target = resolve_inside(tree, path)
    except PathViolation as exc:
        return f"ERROR: {path!r} is outside the project ({exc}); ask for a path from the map."
    if not target.is_file():
        return f"ERROR: no file {path!r} in the project; the map lists the files there are."
    if ignored(tree, path):
        return f"ERROR: {path} is ignored by the project's git: not shown."
    if (start_line is not None and start_line < 1) or (end_line is not None and end_line < 1):
        return "ERROR: start_line and end_line count from 1."
    if start_line is not None and end_line is not None and end_line < start_line:
        return f"ERROR: end_line {end_line} is before start_line {start_line}."
    size = target.stat().st_size
    if size > RANGE_MAX_FILE_BYTES:
        return (
            f"ERROR: {path} is {size} bytes, over the cap of {RANGE_MAX_FILE_BYTES} for "
            "ReadFile; work from its outline in the map."
        )
    data = target.read_bytes()
    if b"\0" in data[:8192]:
        return f"ERROR: {path} is a binary file ({size} bytes); it cannot be shown as text."
    if not is_text(data):
        return f"ERROR: {path} is not UTF-8 text ({size} bytes); it cannot be shown as text."
    text = data.decode("utf-8")
    if start_line is None and end_line is None and size <= READ_MAX_BYTES:
        return text
    return _lines_answer(path, text.splitlines(keepends=True), start_line or 1, end_line)
