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
keeps the mode it has. The mark is found however the header is dressed: inside the path's
backticks or bold, with no space before it, with a colon after it. A path is never made of a
header's decoration: one that holds ``(``, ``)`` or ``*`` (a mark misspelt, bold left open) is
refused with the header quoted, to be asked again, never written as a file of that name.

A file that itself holds fenced blocks (a README with code examples) is fenced with a longer
fence (````): a block ends only at a fence of its own character at least as long as the one
that opened it. What a block leaves behind is never dropped silently: a fence line after a
block's end and before the next header means the block ended early (an inner fence closed it),
and the answer is refused with that problem, to be asked again. Prose between blocks is
fine; a fence before the first header the parser understands is not (a header it could not
read would lose its file silently): the answer is refused, the lines quoted.

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
_HEADER = re.compile(r"^\s*(?:#+\s*)?(?:\*\*)?(FILE|DELETE):(.*)$")
"""A header line: its verb, and the rest (the path and its decoration, read by :func:`_path`)."""
_MARK = re.compile(r"\(executable\)$", re.IGNORECASE)
_NOT_IN_PATH = ("(", ")", "*")
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


def _path(line: str, rest: str) -> tuple[str, bool]:
    """Return the path a header's ``rest`` names and whether it asks for the executable bit.

    Bold, backticks and a closing colon around the path and the mark are decoration.

    Raises:
        ModelOutputError: the path is empty or holds ``(``, ``)`` or ``*``.

    """
    bare = rest.replace("**", "").replace("`", "").strip().rstrip(":").strip()
    mark = _MARK.search(bare)
    path = bare[: mark.start()].strip() if mark else bare
    if not path or any(c in path for c in _NOT_IN_PATH):
        raise ModelOutputError(
            f"the header {line.strip()!r} names no usable path ({path!r}): a path holds no "
            f"'(', ')' or '*'. Write each header as 'FILE: <path>' alone on its line, or "
            f"'FILE: <path> {EXECUTABLE}' for a script to make executable (that exact mark)"
        )
    return path, mark is not None


def _before_first_header(lines: list[str]) -> None:
    """Refuse a fence before the first header: the header of its block was not understood.

    Raises:
        ModelOutputError: quoting the fence's line and the one before it.

    """
    for i, line in enumerate(lines):
        if _HEADER.match(line):
            return
        if _FENCE.match(line):
            above = next((ln.strip() for ln in reversed(lines[:i]) if ln.strip()), "")
            raise ModelOutputError(
                f"line {i + 1} of the answer ({line.strip()!r}) opens a code block before any "
                f"FILE: header the parser understands (the line above it: {above!r}), so its "
                "file would be lost. Put 'FILE: <path>' alone on the line before each block "
                f"('FILE: <path> {EXECUTABLE}' for a script)"
            )


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
            appears twice or holds a header's decoration, a fence comes before any header, or
            the answer or one of its files is over the size limits.

    """
    if len(text) > MAX_ANSWER_CHARS:
        raise ModelOutputError(
            f"the answer is {len(text):,} characters, over the {MAX_ANSWER_CHARS:,} limit; "
            "give only the files the task changes"
        )
    lines = text.splitlines()
    _before_first_header(lines)
    files: dict[str, str | None] = {}
    executable: set[str] = set()
    i = 0
    while i < len(lines):
        match = _HEADER.match(lines[i])
        i += 1
        if not match:
            continue
        verb = match.group(1)
        path, wants_exec = _path(lines[i - 1], match.group(2))
        if path in files:
            raise ModelOutputError(f"{path} appears twice; give each file once")
        if verb == "DELETE":
            if wants_exec:
                raise ModelOutputError(
                    f"DELETE: {path} {EXECUTABLE}: a deleted file has no mode; write "
                    f"'DELETE: {path}' alone, or 'FILE: {path} {EXECUTABLE}' with its content"
                )
            files[path] = None
            continue
        if wants_exec:
            executable.add(path)
        i, files[path] = _block(lines, i, path)
    if not files:
        raise ModelOutputError(
            "no file blocks found; give each file as a line 'FILE: <path>' followed by the "
            "whole file in a ``` fence"
        )
    return Answer(files, frozenset(executable))
