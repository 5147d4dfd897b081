"""A file's outline for the map: its public top-level definitions, with signatures.

Functions, classes (with their public methods) and constants, found by a line scan.

A scan, not a parse: 5,000 files must be mapped in well under a second cold, and a
definition inside a triple-quoted string now and then costs nothing worse than a stray
line in the map. Python and JavaScript/TypeScript are read; other files have no outline.
"""

from __future__ import annotations

import re

PYTHON = (".py", ".pyi")
SCRIPT = (".js", ".jsx", ".mjs", ".cjs", ".ts", ".tsx", ".mts", ".cts")
MAX_SIGNATURE = 160
"""Characters of one signature in the map, at most (a longer one ends in '...')."""
MAX_DEFS = 40
"""Definitions one file shows in the map, at most."""

_PY_DEF = re.compile(
    r"^(?P<indent>[ \t]*)(?:async[ \t]+)?def[ \t]+(?P<fn>\w+)|^class[ \t]+(?P<cls>\w+)"
    r"|^(?P<var>[A-Za-z_]\w*)[ \t]*(?P<ann>:[^=\n]*)?=(?!=)",
    re.M,
)
_JS_DEF = re.compile(
    r"^(?:export[ \t]+(?:default[ \t]+)?)?(?:declare[ \t]+)?(?:abstract[ \t]+)?"
    r"(?:async[ \t]+)?(?P<kind>function\*?|class|interface|type|enum|const|let|var)[ \t]+"
    r"(?P<name>[A-Za-z_$][\w$]*)",
    re.M,
)
_WORD = re.compile(r"[A-Za-z_]\w{2,}")


def _header(text: str, start: int) -> str:
    """Return the header that starts at ``start``, up to its ':' at bracket depth 0."""
    end = text.find("\n", start)
    line = text[start : end if end >= 0 else len(text)].rstrip()
    balanced = line.count("(") == line.count(")") and line.count("[") == line.count("]")
    if line.endswith(":") and balanced:
        return " ".join(line[:-1].split())  # the usual one-line header, found quickly
    depth = 0
    end = min(len(text), start + 1000)
    for i in range(start, end):
        ch = text[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == ":" and depth <= 0:
            return " ".join(text[start:i].split())
        elif ch == "\n" and depth <= 0:
            break
    return " ".join(text[start:end].split("\n", 1)[0].split())


def _short(signature: str) -> str:
    return signature if len(signature) <= MAX_SIGNATURE else signature[: MAX_SIGNATURE - 3] + "..."


def python_defs(text: str) -> tuple[list[str], list[str]]:
    """Return the map lines of a Python file's definitions, and the names it defines."""
    lines: list[str] = []
    names: list[str] = []
    in_class = False
    for m in _PY_DEF.finditer(text):
        name = m.group("cls") or m.group("fn") or m.group("var")
        if name.startswith("_") and name != "__init__":
            if not m.group("indent"):
                in_class = False  # a private top-level definition ends the class above
            continue
        if m.group("cls"):
            in_class = True
            names.append(m.group("cls"))
            lines.append(_short(_header(text, m.start())))
        elif m.group("fn"):
            indent = m.group("indent")
            if not indent:
                in_class = False
                names.append(name)
                lines.append(_short(_header(text, m.start())))
            elif in_class and indent in ("    ", "\t"):
                lines.append("    " + _short(_header(text, m.start() + len(indent))))
        elif m.group("var"):
            in_class = False
            ann = (m.group("ann") or "").strip()
            if not name.isupper() and not ann:
                continue
            names.append(name)
            lines.append(f"{name}{ann if ann else ' = ...'}")
    return capped(lines), names


def script_defs(text: str) -> tuple[list[str], list[str]]:
    """Return the map lines of a JavaScript/TypeScript file's top-level definitions."""
    lines: list[str] = []
    names: list[str] = []
    for m in _JS_DEF.finditer(text):
        names.append(m.group("name"))
        end = text.find("\n", m.start())
        line = text[m.start() : end if end >= 0 else len(text)]
        for stop in (" {", "{", " =>"):
            if stop in line:
                line = line.split(stop, 1)[0]
        if m.group("kind") in ("const", "let", "var"):
            line = line.split("=", 1)[0]
        lines.append(_short(" ".join(line.split())))
    return capped(lines), names


def capped(lines: list[str]) -> list[str]:
    """Return the first :data:`MAX_DEFS` lines, and a line saying how many more there are."""
    if len(lines) <= MAX_DEFS:
        return lines
    more = len(lines) - MAX_DEFS
    return [
        *lines[:MAX_DEFS],
        f"... and {more} more definition{'s' if more > 1 else ''} (read the file)",
    ]


def kind(path: str) -> str:
    """Return what the outline reads ``path`` as: ``python``, ``script`` or ``other``."""
    if path.endswith(PYTHON):
        return "python"
    return "script" if path.endswith(SCRIPT) else "other"


def definitions(path: str, text: str) -> tuple[list[str], list[str]]:
    """Return the map lines and the defined names of ``path`` (none for other languages)."""
    if path.endswith(PYTHON):
        return python_defs(text)
    if path.endswith(SCRIPT):
        return script_defs(text)
    return [], []


def words(text: str) -> list[str]:
    """Return the identifiers ``text`` uses (three characters or more), for ranking."""
    return _WORD.findall(text)
