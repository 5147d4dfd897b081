"""Build, start, probe and stop a project's web app (inside the sandbox, or the preview's box).

:func:`start_app` runs the declared start command with ``/bin/sh -c`` in the tree, in a
session of its own, with ``PORT`` and ``HOST=127.0.0.1`` in its environment and its output in
a log file. :func:`wait_ready` polls ``GET <health>`` every 50 ms until HTTP 200, and tells
apart a server that exited, a port that never opened (or another one that did: the app's
processes' listening sockets are read from ``/proc/net/tcp`` and ``tcp6``) and a server that
listens but never answers 200. :func:`stop_app` ends the whole tree: TERM to its process group
and every process of its session or below it, KILL after the grace period.

Only the standard library: this runs with oldnew's interpreter in the box.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import http.client
import os
import signal
import socket
import subprocess  # nosec B404 - the project's declared command, inside the sandbox
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from oldnew.web.start import (
    AppFailure,
    BuildFailed,
    CannotStart,
    PortNeverOpened,
    ReadinessTimeout,
    ServerExited,
    StartSpec,
    WrongPort,
)

POLL_S = 0.05
"""How often readiness is probed."""
PROBE_TIMEOUT_S = 5.0
"""How long one readiness probe may take in all (a server that drips its answer)."""
READY_TIMEOUT_S = 30.0
WRONG_PORT_GRACE_S = 3.0
"""How long the app may listen only on other ports before that is its answer (a dev server
may open a helper port first)."""
STOP_GRACE_S = 2.0
_TCP_LISTEN = "0A"
_PR_SET_CHILD_SUBREAPER = 36


@dataclass
class RunningApp:
    """A started app: its process (the shell running the start command), port and log."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    spec: StartSpec
    started: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        """The process id of the start command's shell (its session and group id too)."""
        return self.proc.pid

    def log_tail(self, chars: int = 3_000) -> str:
        """Return the end of the server's output."""
        return log_tail(self.log, chars)


def log_tail(path: Path, chars: int = 3_000) -> str:
    """Return the last ``chars`` characters of a log file ('' when there is none)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - chars * 4))
            return fh.read().decode("utf-8", "replace")[-chars:]
    except OSError:
        return ""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def app_environment(tree: Path, port: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """Return the app's environment: ``base`` (default: ours), PORT, HOST, node_modules/.bin."""
    env = dict(os.environ if base is None else base)
    bins = [str(Path(tree) / "node_modules" / ".bin")]
    env["PATH"] = os.pathsep.join([*bins, env.get("PATH", "/usr/bin:/bin")])
    env["PORT"] = str(port)
    env["HOST"] = "127.0.0.1"
    return env


def become_subreaper() -> bool:
    """Make this process adopt its orphaned descendants (Linux), so none escapes the stop.

    A server that double-forks a daemon leaves it to init; with this, to us, where
    :func:`stop_descendants` finds it. Returns whether it took effect.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def build_app(
    spec: StartSpec, tree: Path, *, log: Path, timeout: float, env: dict[str, str] | None = None
) -> float:
    """Run the declared build in ``tree``; return its duration.

    Raises:
        BuildFailed: the build exited non-zero or ran past ``timeout`` (its tree is stopped).

    """
    if spec.build is None:
        return 0.0
    start = time.monotonic()
    with open(log, "ab") as out:
        try:
            proc = subprocess.Popen(  # nosec B603 B607 - the project's own build, sandboxed
                ["/bin/sh", "-c", spec.build],
                cwd=tree,
                env=app_environment(tree, 0, env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:  # E2BIG (a huge command), ENOENT: the declaration's to fix
            why = f"could not be run ({_exec_error(exc)})"
            raise BuildFailed(_shown(spec.build), None, log_tail(log), why) from None
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_tree(proc.pid)
        proc.wait()
        raise BuildFailed(
            spec.build, None, log_tail(log), f"did not finish within {timeout:g}s"
        ) from None
    stop_tree(proc.pid)  # what the build left running
    if code != 0:
        raise BuildFailed(spec.build, code, log_tail(log))
    return time.monotonic() - start


def start_app(
    spec: StartSpec, tree: Path, *, port: int, log: Path, env: dict[str, str] | None = None
) -> RunningApp:
    """Start the declared server in ``tree`` on ``port``, its output appended to ``log``.

    Raises:
        CannotStart: the system refused to run the command (too long, not there).

    """
    with open(log, "ab") as out:
        try:
            proc = subprocess.Popen(  # nosec B603 B607 - the project's own start, sandboxed
                ["/bin/sh", "-c", spec.start],
                cwd=tree,
                env=app_environment(tree, port, env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:  # E2BIG (a huge command), ENOENT: the declaration's to fix
            raise CannotStart(spec.start, _exec_error(exc)) from None
    return RunningApp(proc, port, log, spec)


def _exec_error(exc: OSError) -> str:
    """Say why exec refused a command, in words the coder can act on."""
    if exc.errno == errno.E2BIG:
        return "the command line is longer than the system accepts"
    return f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}"


def _shown(command: str, chars: int = 200) -> str:
    return command if len(command) <= chars else f"{command[:chars]}... ({len(command)} chars)"


class TooSlow(TimeoutError):
    """The server did not finish its answer within the request's total deadline."""


@dataclass(frozen=True)
class Answer:
    """What an HTTP GET got back: the status, the headers, how much body (up to the cap)."""

    status: int
    headers: dict[str, str]
    """Header names lower-cased; a repeated header keeps its last value."""
    body_bytes: int = 0
    over_cap: bool = False


HEADER_CAP = 64 * 1024


def http_get(
    port: int,
    path: str,
    *,
    timeout: float,
    host: str = "127.0.0.1",
    body_cap: int | None = None,
    accept: str = "*/*",
) -> Answer:
    """GET ``path`` from ``host:port`` within ``timeout`` seconds in all (no proxy).

    ``http.client``'s timeout is per socket operation: a server that sends one byte a
    second never trips it. Here the deadline is the whole request's: connect, send, the
    status line and headers, and (with ``body_cap``) the body, read up to ``body_cap + 1``
    bytes. Without ``body_cap`` the body is not read.

    Raises:
        ConnectionRefusedError: nothing listens on the port.
        TooSlow: the answer was not complete within ``timeout``.
        http.client.HTTPException: what came back is not an HTTP answer.
        OSError: the connection failed otherwise.

    """
    if not path.startswith("/") or any(ord(c) <= 32 or ord(c) == 127 for c in path):
        raise http.client.InvalidURL(f"{path!r} is not a URL path")
    deadline = time.monotonic() + timeout

    def left() -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TooSlow(f"no complete answer within {timeout:g}s")
        return remaining

    try:
        sock = socket.create_connection((host, port), timeout=left())
    except TimeoutError as exc:
        raise TooSlow(f"the connection was not accepted within {timeout:g}s") from exc
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: {accept}\r\n"
        "Connection: close\r\n\r\n"
    )
    with sock:
        try:
            sock.settimeout(left())
            sock.sendall(request.encode("latin-1"))
            header, rest = _read_head(sock, left)
            answer = _parse_head(header)
            if body_cap is None:
                return answer
            length = answer.headers.get("content-length", "")
            end = int(length) if length.isdigit() else None
            size = _read_body(sock, left, len(rest), body_cap, end)
        except TooSlow:
            raise
        except TimeoutError as exc:
            raise TooSlow(f"no complete answer within {timeout:g}s") from exc
    return Answer(answer.status, answer.headers, min(size, body_cap + 1), size > body_cap)


def _read_head(sock: socket.socket, left: Callable[[], float]) -> tuple[bytes, bytes]:
    """Read up to the end of the headers; return them and what came after."""
    head = bytearray()
    while b"\r\n\r\n" not in head:
        if len(head) > HEADER_CAP:
            raise http.client.LineTooLong(f"headers over {HEADER_CAP} bytes")
        sock.settimeout(left())
        chunk = sock.recv(16384)
        if not chunk:
            break
        head += chunk
    header, _, rest = bytes(head).partition(b"\r\n\r\n")
    return header, rest


def _read_body(
    sock: socket.socket, left: Callable[[], float], size: int, cap: int, end: int | None
) -> int:
    """Read the body until its end or past ``cap``; return the bytes seen (``size`` so far).

    The end is the close, or ``end`` bytes (Content-Length: a server that keeps the
    connection open after all is not waited for).
    """
    while size <= cap and (end is None or size < end):
        sock.settimeout(left())
        chunk = sock.recv(min(65536, cap + 1 - size))
        if not chunk:
            break
        size += len(chunk)
    return size


def _parse_head(header: bytes) -> Answer:
    lines = header.decode("latin-1").split("\r\n")
    parts = lines[0].split(None, 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise http.client.BadStatusLine(lines[0][:200])
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return Answer(int(parts[1]), headers)


def probe(port: int, path: str, timeout: float = PROBE_TIMEOUT_S) -> int | None:
    """Return the HTTP status of ``GET path`` on 127.0.0.1:port; None when it did not answer.

    ``timeout`` bounds the whole request (:func:`http_get`).

    Raises:
        ConnectionRefusedError: nothing listens on the port.
        TooSlow: it accepted, but its status line and headers took longer than ``timeout``.

    """
    try:
        return http_get(port, path, timeout=timeout).status
    except (ConnectionRefusedError, TooSlow):
        raise
    except (OSError, http.client.HTTPException):
        return None


def wait_ready(app: RunningApp, *, timeout: float = READY_TIMEOUT_S) -> float:
    """Poll the app's health path until HTTP 200; return the seconds it took.

    Raises:
        ServerExited: its process ended first.
        WrongPort: nothing listens on its port, but its processes listen on another one.
        PortNeverOpened: nothing listened on its port at all.
        ReadinessTimeout: it listens but never answered 200 (the last status is kept).

    """
    deadline = time.monotonic() + timeout
    path = app.spec.health
    answered = False
    slow = False
    last: int | None = None
    elsewhere_since: float | None = None
    next_port_check = 0.0
    while True:
        code = app.proc.poll()
        if code is not None:
            raise ServerExited(code, app.spec.start, app.log_tail())
        try:
            wait = min(PROBE_TIMEOUT_S, max(POLL_S, deadline - time.monotonic()))
            last = probe(app.port, path, wait)
            answered, slow = True, False
            if last == 200:
                return time.monotonic() - app.started
        except TooSlow:
            answered, slow = True, True
        except ConnectionRefusedError:
            now = time.monotonic()
            if not answered and now >= next_port_check:
                next_port_check = now + 0.5
                opened = listening_ports(tree_pids(app.pid))
                if opened:  # it listens, but 127.0.0.1:port refuses
                    elsewhere_since = elsewhere_since or now
                    if now - elsewhere_since >= min(WRONG_PORT_GRACE_S, timeout / 3):
                        raise _unreachable(app, opened, timeout) from None
                else:
                    elsewhere_since = None
        if time.monotonic() >= deadline:
            break
        time.sleep(POLL_S)
    if answered:
        raise ReadinessTimeout(path, last, timeout, app.log_tail(), slow=slow)
    opened = listening_ports(tree_pids(app.pid))
    if opened:
        raise _unreachable(app, opened, timeout)
    raise PortNeverOpened(app.port, timeout, app.log_tail())


def _unreachable(app: RunningApp, opened: list[int], timeout: float) -> AppFailure:
    """Return the failure of an app that listens, but not where oldnew connects."""
    if app.port in opened:
        return PortNeverOpened(app.port, timeout, app.log_tail(), elsewhere=True)
    return WrongPort(app.port, opened, app.log_tail())


def stop_app(app: RunningApp, *, grace: float = STOP_GRACE_S) -> None:
    """Stop the app's whole process tree (TERM, then KILL after ``grace`` seconds)."""
    stop_tree(app.pid, grace=grace)
    with contextlib.suppress(subprocess.TimeoutExpired):
        app.proc.wait(timeout=grace)


# -- processes and their sockets --------------------------------------------------------------


def _stat(pid: int) -> tuple[int, int, int] | None:
    """Return (ppid, pgid, sid) of ``pid`` from /proc, or None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()
    try:
        return int(fields[1]), int(fields[2]), int(fields[3])
    except (IndexError, ValueError):
        return None


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def tree_pids(root: int) -> set[int]:
    """Return ``root``, the processes below it, and those of its session or process group.

    A child that left the group (``setsid``) is still below its parent; one whose parent died
    was adopted by a subreaper (:func:`become_subreaper`) or init, and counts if it kept the
    session or group.
    """
    stats = {pid: s for pid in _all_pids() if (s := _stat(pid)) is not None}
    # The root is started as a session leader; a process that merely holds its pid (reused
    # after the root was reaped) leads nothing of it, and is nobody's to stop.
    found = {pid for pid, (_, pgid, sid) in stats.items() if root in (pgid, sid)}
    grew = True
    while grew:
        below = {pid for pid, (ppid, _, _) in stats.items() if ppid in found} - found
        grew = bool(below)
        found |= below
    return found


def descendants(root: int) -> set[int]:
    """Return every process below ``root`` (by parent links), not ``root`` itself."""
    stats = {pid: s for pid in _all_pids() if (s := _stat(pid)) is not None}
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, (ppid, _, _) in stats.items() if ppid in frontier} - found
        found |= frontier
    return found


def _signal_all(pids: set[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if state[state.rfind(")") + 2 :][:1] not in ("Z", "X"):
            alive.add(pid)
    return alive


def stop_tree(root: int, *, grace: float = STOP_GRACE_S) -> None:
    """TERM ``root``'s tree (:func:`tree_pids`), then KILL what is left after ``grace``."""
    pids = tree_pids(root)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(root, signal.SIGTERM)
    _signal_all(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        pids = _alive(pids | tree_pids(root))
        if not pids:
            break
        time.sleep(POLL_S)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(root, signal.SIGKILL)
    left = _alive(pids | tree_pids(root))
    _signal_all(left, signal.SIGKILL)
    reap(pids - {root})  # the root is its Popen's to wait for


def stop_descendants(*, grace: float = STOP_GRACE_S) -> None:
    """Stop every process below this one (what a subreaper adopted included)."""
    pids = descendants(os.getpid())
    _signal_all(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        time.sleep(POLL_S)
        pids = _alive(pids | descendants(os.getpid()))
    _signal_all(_alive(pids | descendants(os.getpid())), signal.SIGKILL)
    time.sleep(POLL_S)
    reap(pids)


def reap(pids: set[int]) -> None:
    """Collect the exit status of those of ``pids`` that are our ended children (adopted too).

    Only the processes named: a wait on any child would steal the status of a command another
    thread is running.
    """
    for pid in pids:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


def _socket_inodes(pids: set[int]) -> set[str]:
    inodes = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    return inodes


def listening_ports(pids: set[int]) -> list[int]:
    """Return the TCP ports (IPv4 and IPv6) the processes ``pids`` listen on, sorted."""
    inodes = _socket_inodes(pids)
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text(encoding="ascii", errors="replace").splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) > 9 and cols[3] == _TCP_LISTEN and cols[9] in inodes:
                ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return sorted(ports)
