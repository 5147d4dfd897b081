"""Parse code from a model's plain-text answer: file blocks with a path header.

The format the prompts ask for::

    FILE: todo/storage.py
    ```python
    ...whole file...
    ```

    FILE: scripts/run.sh (executable)
    ```bash
    ...a script git records as executable (mode 100755)...
    ```

    DELETE: old_module.py

``(executable)`` after a FILE: path asks for the executable bit; a file rewritten without it
keeps the mode it has.

A file that itself holds fenced blocks (a README with code examples) is fenced with a longer
fence (````): a block ends only at a fence of its own character at least as long as the one
that opened it. What a block leaves behind is never dropped silently: a fence line after a
block's end and before the next header means the block ended early (an inner fence closed it),
and the answer is refused with that problem, to be asked again. Prose between blocks is fine.

Code is never wrapped in JSON (aider measured that JSON-wrapped code costs pass rate).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from oldnew.errors import ModelOutputError

MAX_ANSWER_CHARS = 2_000_000
"""A longer answer is refused unread: no task needs it, and it would fill the disk and prompts."""
MAX_FILE_CHARS = 500_000
"""A longer file is refused: generated source files are far smaller."""

EXECUTABLE = "(executable)"
"""Written after a FILE: path, asks for the executable bit (``FILE: run.sh (executable)``)."""
_HEADER = re.compile(
    r"^\s*(?:#+\s*)?(?:\*\*)?(FILE|DELETE):\s*`?([^`*]+?)`?(?:\*\*)?"
    r"(?:\s+((?i:\(executable\))))?(?:\*\*)?\s*$"
)
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
_BACKTICKS = re.compile(r"^[ \t]*(`{3,})", re.MULTILINE)


def fence_for(text: str) -> str:
    """Return a backtick fence longer than any fence inside ``text`` (at least ```)."""
    longest = max((len(m.group(1)) for m in _BACKTICKS.finditer(text)), default=2)
    return "`" * max(3, longest + 1)


def fenced(text: str) -> str:
    """Return ``text`` between fences that nothing inside it can close (prompts show files so)."""
    fence = fence_for(text)
    return f"{fence}\n{text.rstrip(chr(10))}\n{fence}"


def _left_behind(lines: list[str], i: int, path: str, mark: str) -> None:
    """Refuse an answer whose block ``path`` ended early: a fence follows before the next header.

    Raises:
        ModelOutputError: naming the file and how to fence it.

    """
    while i < len(lines) and not _HEADER.match(lines[i]):
        if _FENCE.match(lines[i]):
            longer = "`" * (len(mark) + 1) if mark[0] == "`" else "~" * (len(mark) + 1)
            raise ModelOutputError(
                f"the code block of {path} ended early: after its closing {mark}, line "
                f"{i + 1} of the answer opens or closes another fence before the next FILE: "
                f"header, so the file seems to hold fenced blocks of its own and its rest "
                f"would be lost. Give {path} again, whole, fenced with a longer fence "
                f"({longer}) that opens and closes it"
            )
        i += 1


@dataclass(frozen=True)
class Answer:
    """What a model's answer asks to write."""

    files: dict[str, str | None]
    """Path -> new content, None to delete."""
    executable: frozenset[str] = field(default_factory=frozenset)
    """The paths whose header asked for the executable bit."""


def _block(lines: list[str], i: int, path: str) -> tuple[int, str]:
    """Return where the code block of ``path`` (from line ``i``) ends, and its text.

    Raises:
        ModelOutputError: no fence opens it, none closes it, or it ended early.

    """
    while i < len(lines) and not lines[i].strip():
        i += 1
    fence = _FENCE.match(lines[i]) if i < len(lines) else None
    if fence is None:
        raise ModelOutputError(f"FILE: {path} is not followed by a ``` code fence")
    mark = fence.group(1)
    i += 1
    body: list[str] = []
    # Only a fence of the same character, at least as long, and nothing else closes it.
    while i < len(lines) and not (
        lines[i].strip().startswith(mark) and set(lines[i].strip()) == {mark[0]}
    ):
        body.append(lines[i])
        i += 1
    if i >= len(lines):
        raise ModelOutputError(f"the code block of {path} is not closed (answer cut off?)")
    i += 1
    _left_behind(lines, i, path, mark)
    text = "\n".join(body) + "\n"
    if len(text) > MAX_FILE_CHARS:
        raise ModelOutputError(
            f"{path} is {len(text):,} characters, over the {MAX_FILE_CHARS:,} "
            "limit for one file; split it into smaller modules"
        )
    return i, text


def parse_file_blocks(text: str) -> dict[str, str | None]:
    """Return path -> new content (None to delete) from ``text`` (see :func:`parse_answer`)."""
    return parse_answer(text).files


def parse_answer(text: str) -> Answer:
    """Return the files ``text`` gives and the ones it asks to be executable.

    Raises:
        ModelOutputError: no block found, a block is not closed (a truncated answer) or ended
            early (a fence of its own closed it), a header has no code fence after it, a path
            appears twice, or the answer or one of its files is over the size limits.

    """
    if len(text) > MAX_ANSWER_CHARS:
        raise ModelOutputError(
            f"the answer is {len(text):,} characters, over the {MAX_ANSWER_CHARS:,} limit; "
            "give only the files the task changes"
        )
    lines = text.splitlines()
    files: dict[str, str | None] = {}
    executable: set[str] = set()
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
            if match.group(3):
                raise ModelOutputError(
                    f"DELETE: {path} {EXECUTABLE}: a deleted file has no mode; write "
                    f"'DELETE: {path}' alone, or 'FILE: {path} {EXECUTABLE}' with its content"
                )
            files[path] = None
            continue
        if match.group(3):
            executable.add(path)
        i, files[path] = _block(lines, i, path)
    if not files:
        raise ModelOutputError(
            "no file blocks found; give each file as a line 'FILE: <path>' followed by the "
            "whole file in a ``` fence"
        )
    return Answer(files, frozenset(executable))
