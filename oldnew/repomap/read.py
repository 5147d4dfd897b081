"""The ``ReadFile`` tool's answer: a project file's text, or why it cannot be had."""

from __future__ import annotations

from pathlib import Path

from oldnew.errors import PathViolation
from oldnew.supporting import is_text
from oldnew.workspace import resolve_inside

READ_MAX_BYTES = 100_000
"""A file larger than this is not sent whole through ``ReadFile``."""


def read_for_model(tree: Path, path: str) -> str:
    """Return what the model is told when it asks for ``path``: its text, or a clear refusal."""
    try:
        target = resolve_inside(tree, path)
    except PathViolation as exc:
        return f"ERROR: {path!r} is outside the project ({exc}); ask for a path from the map."
    if not target.is_file():
        return f"ERROR: no file {path!r} in the project; the map lists the files there are."
    size = target.stat().st_size
    if size > READ_MAX_BYTES:
        return (
            f"ERROR: {path} is {size} bytes, over the cap of {READ_MAX_BYTES} for ReadFile; "
            "work from its outline in the map."
        )
    data = target.read_bytes()
    if not is_text(data):
        return f"ERROR: {path} is a binary file ({size} bytes); it cannot be shown as text."
    return data.decode("utf-8")
