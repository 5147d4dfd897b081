"""How a web project says it starts (:class:`StartSpec`), and the ways starting it fails.

A Node project declares it in ``package.json``: ``scripts.start``, else ``scripts.preview``
(served after ``scripts.build``, a Vite app's way), with its readiness path under
``"oldnew": {"health": "/healthz"}``. A Python project declares it in ``pyproject.toml``::

    [tool.oldnew]
    start = "python -m app"     # or an argv list
    build = "python -m app.build"   # optional
    health = "/"                # optional readiness path

An explicit ``[tool.oldnew] start`` wins over ``package.json`` (a Python app may keep a
``package.json`` for its browser tests). oldnew chooses the port: the app reads ``PORT`` (and
``HOST=127.0.0.1``) from its environment.

``npm run X`` needs npm and reads npm's configuration; in the sandbox oldnew runs the script's
own command line instead, with ``node_modules/.bin`` on ``PATH`` (as npm would), its ``preX``
script first, and an ``npm run Y`` inside it replaced by ``Y``'s own command line.

Every failure to start is an :class:`AppFailure`, the coder's to fix: its message says what to
change, and it carries the server's own output (:attr:`AppFailure.log_tail`).
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from oldnew.sandbox.files import read_project_text

Stack = Literal["node", "python"]
LOG_TAIL = 3_000
"""Characters of the server's output a failure keeps."""
_NPM_RUN = re.compile(
    r"\bnpm\s+(?:run(?:-script)?\s+([\w:.@/-]+)|(start|test))\b(?:\s+--((?:\s+[^\s&|;()]+)*))?"
)
_NESTING = 5
MAX_COMMAND = 64 * 1024
"""The longest command line a declaration may expand to (``npm run`` inlined): a few lines of
package.json that fan out would otherwise grow to megabytes (and past what exec accepts)."""
PORT_CONVENTION = (
    "the app must listen on 127.0.0.1 at the port in the PORT environment variable "
    "(HOST=127.0.0.1 is set too): oldnew chooses the port"
)


@dataclass(frozen=True)
class StartSpec:
    """How the project builds and starts, as it declares it."""

    stack: Stack
    start: str
    """Shell command line, run with ``/bin/sh -c`` in the tree."""
    build: str | None = None
    """Run before start, when declared."""
    health: str = "/"
    """The path that answers HTTP 200 once the app is ready."""
    source: str = ""
    """Where it was declared, for messages: ``package.json scripts.start``."""

    def to_dict(self) -> dict[str, Any]:
        """Return the spec as JSON-ready data (evidence)."""
        return asdict(self)


class AppFailure(Exception):
    """The app did not build or come up; the coder's to fix.

    ``kind`` names the failure (the class name), ``log_tail`` is the end of the server's (or
    the build's) own output.
    """

    kind = "AppFailure"

    def __init__(self, message: str, log_tail: str = "") -> None:
        """Keep the message (what happened and what to change) and the output's tail."""
        super().__init__(message)
        self.message = message
        self.log_tail = log_tail[-LOG_TAIL:]

    def to_dict(self) -> dict[str, Any]:
        """Return the failure as JSON-ready data (``web.json``'s ``start.failure``)."""
        return {"kind": self.kind, "message": self.message, "log_tail": self.log_tail}

    def render(self) -> str:
        """Return the message with the output's tail, as the fixer reads it."""
        if not self.log_tail.strip():
            return f"{self.message} (the server printed nothing)"
        return f"{self.message}\nthe server's output ends with:\n{self.log_tail.strip()}"


class NoStartCommand(AppFailure):
    """The project declares no way to start it (or a declaration that does not read)."""

    kind = "NoStartCommand"

    def __init__(self, stack: str | None = None, problem: str = "") -> None:
        """Say what is missing (or wrong) and how to declare it, for ``stack`` if known."""
        how_node = (
            'add "scripts": {"start": "node server.js"} to package.json (or "build" plus '
            '"preview" for a Vite app)'
        )
        how_python = 'add [tool.oldnew] start = "python -m app" to pyproject.toml'
        if stack == "node":
            how = how_node
        elif stack == "python":
            how = how_python
        else:
            how = f"{how_node}, or for a Python app {how_python}"
        what = problem or f"the project ({stack or 'web'} stack) declares no start command"
        super().__init__(f"{what}: {how}; {PORT_CONVENTION}")
        self.stack = stack


class CannotStart(AppFailure):
    """The declared start command could not even be run (exec refused it)."""

    kind = "CannotStart"

    def __init__(self, command: str, why: str) -> None:
        """Name the command and why the system would not run it."""
        shown = command if len(command) <= 200 else f"{command[:200]}... ({len(command)} chars)"
        super().__init__(
            f"the start command ({shown!r}) could not be run ({why}): declare a short command "
            f"that exists in the project; {PORT_CONVENTION}"
        )
        self.command = command


class BuildFailed(AppFailure):
    """The declared build command failed."""

    kind = "BuildFailed"

    def __init__(self, command: str, code: int | None, log_tail: str, why: str = "") -> None:
        """Name the build command and how it ended."""
        ended = why or f"exited with code {code}"
        super().__init__(
            f"the build ({command!r}) {ended}: fix the build so that it succeeds", log_tail
        )
        self.command, self.code = command, code


class ServerExited(AppFailure):
    """The server's process ended before it was ready."""

    kind = "ServerExited"

    def __init__(self, code: int | None, command: str, log_tail: str) -> None:
        """Say the server ended, with its exit code."""
        how = (
            f"was killed by signal {-code}"
            if code is not None and code < 0
            else (f"exited with code {code}")
        )
        super().__init__(
            f"the server ({command!r}) {how} before it answered: it must keep running and "
            f"serve HTTP; {PORT_CONVENTION}",
            log_tail,
        )
        self.code = code


class PortNeverOpened(AppFailure):
    """The server runs but nothing listens on the port it was given."""

    kind = "PortNeverOpened"

    def __init__(
        self, port: int, seconds: float, log_tail: str, *, elsewhere: bool = False
    ) -> None:
        """Say which port stayed closed, and for how long.

        ``elsewhere``: the app holds the port, but not on 127.0.0.1 (on ``::1`` only, say).
        """
        what = (
            f"the app listens on port {port}, but 127.0.0.1:{port} refuses connections (it "
            "listens on another address, ::1 only?): listen on HOST (127.0.0.1)"
            if elsewhere
            else f"nothing listened on port {port} within {seconds:g}s while the server ran"
        )
        super().__init__(f"{what}: {PORT_CONVENTION}", log_tail)
        self.port, self.elsewhere = port, elsewhere


class WrongPort(AppFailure):
    """The server listens, but on another port than the one it was given."""

    kind = "WrongPort"

    def __init__(self, port: int, opened: list[int], log_tail: str) -> None:
        """Name the port asked for and the ports the app opened instead."""
        shown = ", ".join(map(str, opened))
        super().__init__(
            f"the app listens on port {shown}, not on {port}, the one in $PORT: read the "
            f"port from the PORT environment variable instead of a fixed number",
            log_tail,
        )
        self.port, self.opened = port, list(opened)


class ReadinessTimeout(AppFailure):
    """The server listens but its health path never answered HTTP 200."""

    kind = "ReadinessTimeout"

    def __init__(
        self,
        path: str,
        last_status: int | None,
        seconds: float,
        log_tail: str,
        *,
        slow: bool = False,
    ) -> None:
        """Say what the health path answered last (None: it never answered).

        ``slow``: the last probe was cut off: the server kept sending, too slowly to finish.
        """
        got = (
            "answered too slowly (its status line and headers did not arrive within "
            "seconds of the request)"
            if slow
            else f"answered HTTP {last_status} last"
            if last_status is not None
            else "accepted connections but never answered"
        )
        super().__init__(
            f"GET {path} {got}, with no HTTP 200 within {seconds:g}s: the health path must "
            f"answer 200 once the app is ready (declare another one with "
            f'"oldnew": {{"health": "/healthz"}} in package.json or [tool.oldnew] health)',
            log_tail,
        )
        self.path, self.last_status, self.slow = path, last_status, slow


# -- reading the declaration ------------------------------------------------------------------


def find_start(tree: Path) -> StartSpec | None:
    """Return how the project in ``tree`` starts, or None when it declares nothing.

    Raises:
        NoStartCommand: a declaration is there but does not read (not JSON, not a command).

    """
    tree = Path(tree)
    spec = _from_pyproject(tree)
    return spec if spec is not None else _from_package_json(tree)


def declared_stack(tree: Path) -> Stack | None:
    """Return the stack the project's manifests show (package.json: node), else None."""
    if (Path(tree) / "package.json").is_file():
        return "node"
    if (Path(tree) / "pyproject.toml").is_file():
        return "python"
    return None


def _from_pyproject(tree: Path) -> StartSpec | None:
    text = read_project_text(tree, "pyproject.toml")
    if not text or "[tool.oldnew" not in text:
        return None
    try:
        tool = tomllib.loads(text).get("tool", {}).get("oldnew", {})
    except tomllib.TOMLDecodeError as exc:
        raise NoStartCommand("python", f"pyproject.toml does not parse ({exc})") from None
    if not isinstance(tool, dict) or "start" not in tool:
        return None
    start = _command(tool.get("start"), "[tool.oldnew] start")
    build = _command(tool["build"], "[tool.oldnew] build") if "build" in tool else None
    health = _health(tool.get("health", "/"), "[tool.oldnew] health", "python")
    return StartSpec("python", start, build, health, "pyproject.toml [tool.oldnew] start")


def _command(value: object, where: str) -> str:
    if isinstance(value, str) and value.strip():
        return _capped(value.strip(), where, "python")
    if isinstance(value, list) and value and all(isinstance(a, str) for a in value):
        return _capped(shlex.join(value), where, "python")
    raise NoStartCommand(
        "python",
        f'{where} in pyproject.toml must be a command: a string such as "python -m app" '
        'or a list such as ["python", "-m", "app"]',
    )


def _capped(line: str, where: str, stack: Stack) -> str:
    """Return ``line``, or raise when it is longer than :data:`MAX_COMMAND`."""
    if len(line) > MAX_COMMAND:
        raise _too_long(where, stack, len(line))
    return line


def _too_long(where: str, stack: Stack, size: int) -> NoStartCommand:
    return NoStartCommand(
        stack,
        f"{where} expands to more than {MAX_COMMAND // 1024} KB of command line "
        f"({size} characters or more): declare a short command (a script file, not nested "
        "npm runs that repeat each other)",
    )


def _health(value: object, where: str, stack: Stack) -> str:
    if isinstance(value, str) and value.startswith("/") and not any(c.isspace() for c in value):
        return value
    raise NoStartCommand(stack, f"{where} must be a URL path starting with '/', such as /healthz")


def _from_package_json(tree: Path) -> StartSpec | None:
    text = read_project_text(tree, "package.json")
    if text is None:
        return None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise NoStartCommand("node", f"package.json is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise NoStartCommand("node", "package.json must hold a JSON object")
    scripts = data.get("scripts") or {}
    if not isinstance(scripts, dict):
        raise NoStartCommand("node", 'package.json "scripts" must be an object of strings')
    scripts = {k: v for k, v in scripts.items() if isinstance(v, str) and v.strip()}
    name = "start" if "start" in scripts else "preview" if "preview" in scripts else None
    if name is None:
        return None
    start = npm_script(scripts, name)
    build = npm_script(scripts, "build") if "build" in scripts else None
    meta = data.get("oldnew") or {}
    health = "/"
    if isinstance(meta, dict) and "health" in meta:
        health = _health(meta["health"], 'package.json "oldnew": {"health"}', "node")
    return StartSpec("node", start, build, health, f"package.json scripts.{name}")


def npm_script(scripts: dict[str, str], name: str, depth: int = 0) -> str:
    """Return the command line ``npm run <name>`` runs, with no npm: pre-script, then script.

    An ``npm run other`` (or ``npm start``/``npm test``) inside it becomes ``other``'s own
    command line, in a subshell; one that names no script is left as it is.

    Raises:
        NoStartCommand: the scripts nest more than :data:`_NESTING` deep, or expand to more
            than :data:`MAX_COMMAND` characters (checked as they expand: a fan-out stops
            early, before it takes the host's memory).

    """
    try:
        line = _expand(scripts, name, depth)
    except _TooLong as exc:
        raise _too_long(f"package.json scripts.{name}", "node", exc.size) from None
    return line


class _TooLong(Exception):
    """An expansion went past :data:`MAX_COMMAND` (its size so far)."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


def _expand(scripts: dict[str, str], name: str, depth: int) -> str:
    if depth > _NESTING:
        raise NoStartCommand("node", f"package.json scripts nest npm run more than {_NESTING} deep")
    pre = f"pre{name}"
    with_pre = pre in scripts and not name.startswith("pre")
    grown = len(scripts[name]) + (len(scripts[pre]) if with_pre else 0)

    def inline(match: re.Match[str]) -> str:
        nonlocal grown
        other = match.group(1) or match.group(2)
        if other not in scripts:
            return match.group(0)
        extra = match.group(3) or ""
        child = f"({_expand(scripts, other, depth + 1)}{extra})"
        grown += len(child)  # checked as it grows: a fan-out stops before it takes memory
        if grown > MAX_COMMAND:
            raise _TooLong(grown)
        return child

    line = _NPM_RUN.sub(inline, scripts[name])
    if with_pre:
        line = f"{_NPM_RUN.sub(inline, scripts[pre])} && {line}"
    if len(line) > MAX_COMMAND:
        raise _TooLong(len(line))
    return line
