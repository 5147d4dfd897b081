"""Parse code from a model's plain-text answer: file blocks with a path header.

The format the prompts ask for::

    FILE: todo/storage.py
    ```python
    ...whole file...
    ```

    DELETE: old_module.py

Code is never wrapped in JSON (aider measured that JSON-wrapped code costs pass rate).
"""

from __future__ import annotations

import re

from oldnew.errors import ModelOutputError

MAX_ANSWER_CHARS = 2_000_000
"""A longer answer is refused unread: no task needs it, and it would fill the disk and prompts."""
MAX_FILE_CHARS = 500_000
"""A longer file is refused: generated source files are far smaller."""

_HEADER = re.compile(r"^\s*(?:#+\s*)?(?:\*\*)?(FILE|DELETE):\s*`?([^`*]+?)`?(?:\*\*)?\s*$")
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})")


def parse_file_blocks(text: str) -> dict[str, str | None]:
    """Return path -> new content (None to delete) from ``text``.

    Raises:
        ModelOutputError: no block found, a block is not closed (a truncated answer), a
            header has no code fence after it, a path appears twice, or the answer or one of
            its files is over the size limits.

    """
    if len(text) > MAX_ANSWER_CHARS:
        raise ModelOutputError(
            f"the answer is {len(text):,} characters, over the {MAX_ANSWER_CHARS:,} limit; "
            "give only the files the task changes"
        )
    lines = text.splitlines()
    files: dict[str, str | None] = {}
    i = 0
    while i < len(lines):
        match = _HEADER.match(lines[i])
        i += 1
        if not match:
            continue
        verb, path = match.group(1), match.group(2).strip()
        if path in files:
            raise ModelOutputError(f"{path} appears twice; give each file once")
        if verb == "DELETE":
            files[path] = None
            continue
        while i < len(lines) and not lines[i].strip():
            i += 1
        fence = _FENCE.match(lines[i]) if i < len(lines) else None
        if fence is None:
            raise ModelOutputError(f"FILE: {path} is not followed by a ``` code fence")
        mark = fence.group(1)
        i += 1
        body: list[str] = []
        while i < len(lines) and not (
            lines[i].strip().startswith(mark) and set(lines[i].strip()) == {mark[0]}
        ):
            body.append(lines[i])
            i += 1
        if i >= len(lines):
            raise ModelOutputError(f"the code block of {path} is not closed (answer cut off?)")
        i += 1
        files[path] = "\n".join(body) + "\n"
        if len(files[path] or "") > MAX_FILE_CHARS:
            raise ModelOutputError(
                f"{path} is {len(files[path] or ''):,} characters, over the {MAX_FILE_CHARS:,} "
                "limit for one file; split it into smaller modules"
            )
    if not files:
        raise ModelOutputError(
            "no file blocks found; give each file as a line 'FILE: <path>' followed by the "
            "whole file in a ``` fence"
        )
    return files
