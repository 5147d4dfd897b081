"""Error signatures: what stays the same when the same mistake happens in another project.

A signature keeps the tool, the rule and the message with paths, numbers, quoted names and
test ids taken out, so "FileNotFoundError: [Errno 2] ... '/tmp/x/todo.json'" in one run and the
same error on another path in another run share one key.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

_RENDERED = re.compile(
    r"^(?P<file>.*?):(?P<line>\d+): \[(?P<tool>\w+)(?: (?P<rule>[^\]]+))?\] "
    r"(?P<message>.*)$",
    re.DOTALL,
)
_TEST_ID = re.compile(r"^[\w./]+::[\w\[\]-]+: ")
_PATH = re.compile(r"(?:[A-Za-z]:)?(?:[\w.-]*/)+[\w.-]+")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"|`[^`]*`")
_NUMBER = re.compile(r"-?\b\d+(?:\.\d+)?\b")
_HEX = re.compile(r"\b0x[0-9a-fA-F]+\b")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class ErrorSignature:
    """The parts of an error that identify it across projects."""

    tool: str
    rule: str
    message: str

    @property
    def key(self) -> str:
        """Return a short stable key for the store."""
        raw = f"{self.tool}|{self.rule}|{self.message}".encode()
        return hashlib.sha256(raw).hexdigest()[:24]

    def describe(self) -> str:
        """Return a one-line human form."""
        rule = f" {self.rule}" if self.rule else ""
        return f"[{self.tool}{rule}] {self.message}"


def normalise(message: str) -> str:
    """Take paths, numbers, hex ids, quoted values and test ids out of ``message``."""
    text = _TEST_ID.sub("", message.strip())
    text = _QUOTED.sub("<value>", text)
    text = _HEX.sub("<hex>", text)
    text = _PATH.sub("<path>", text)
    text = _NUMBER.sub("<n>", text)
    return _SPACE.sub(" ", text).strip()[:300]


def signature_of(rendered: str) -> ErrorSignature | None:
    """Return the signature of a rendered diagnostic (``file:line: [tool rule] message``)."""
    match = _RENDERED.match(rendered.removeprefix("after merging the work of other tasks: "))
    if not match:
        return None
    return ErrorSignature(match["tool"], match["rule"] or "", normalise(match["message"]))
