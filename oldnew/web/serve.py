"""The preview's server, inside the sandbox: build, start, wait for the app, then relay to it.

``python -I -m oldnew.web.serve --tree T --port P --socket-fd N --status F`` runs with oldnew's
interpreter in the preview's sandbox (:mod:`oldnew.web.preview` starts it). It builds the
app when the project declares a build, starts it on ``127.0.0.1:P`` of the sandbox's own
network namespace (the same number as the host's port, so what the app prints is where the
person finds it), waits until its health path answers 200, then relays the clients of the
listening unix socket it inherited as descriptor ``N`` (the host made it, in a folder the
sandbox cannot write or see) to the app until it is killed.

What happened is written to the JSON file ``F`` for the host to read: ``{"state": "ready",
"port", "health"}`` once the app answers, ``{"state": "failed", "failure": {"kind",
"message", "log_tail"}}`` when it does not come up or ends later.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import signal
import socket
import struct
import sys
from pathlib import Path
from typing import Any

from oldnew.web import relay
from oldnew.web.app import (
    RunningApp,
    become_subreaper,
    build_app,
    start_app,
    stop_descendants,
    wait_ready,
)
from oldnew.web.start import AppFailure, NoStartCommand, declared_stack, find_start

SOCKET_NAME = "preview.sock"
"""The relay's listening socket, in a host-only folder of the sandbox's scratch."""
STATUS_NAME = "preview-status.json"
"""What the server says happened, in the sandbox's home."""
LOG_NAME = "preview-app.log"
"""The app's (and its build's) own output, in the sandbox's home."""
BUILD_TIMEOUT = 600.0
POLL_S = 0.2
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1
_IFREQ = "16sH22x"


def _loopback_works() -> bool:
    try:
        with socket.socket() as server:
            server.bind(("127.0.0.1", 0))
            server.listen()
            socket.create_connection(server.getsockname(), timeout=2).close()
    except OSError:
        return False
    return True


def loopback() -> str | None:
    """Make sure 127.0.0.1 works here; return why it cannot, or None.

    bubblewrap brings ``lo`` up in its network namespace; ``unshare --net`` (the fallback)
    leaves it down, and only a process with the namespace's CAP_NET_ADMIN can bring it up.
    """
    if _loopback_works():
        return None
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            got = fcntl.ioctl(sock, _SIOCGIFFLAGS, struct.pack(_IFREQ, b"lo", 0))
            flags = struct.unpack(_IFREQ, got)[1]
            fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack(_IFREQ, b"lo", flags | _IFF_UP))
    except OSError as exc:
        return (
            f"the sandbox's network namespace has no working loopback and it cannot be "
            f"brought up ({exc}): install bubblewrap (Debian: apt-get install bubblewrap), "
            "which gives the sandbox one"
        )
    return None if _loopback_works() else "the sandbox's loopback does not accept connections"


def write_status(path: Path, data: dict[str, Any]) -> None:
    """Replace the status file at once (the host reads it while this runs)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)


def _up(tree: Path, port: int, log: Path, wait: float) -> RunningApp:
    """Build and start the app; return it once it answers.

    Raises:
        AppFailure: it declares no start, its build failed, or it did not come up.

    """
    spec = find_start(tree)
    if spec is None:
        raise NoStartCommand(declared_stack(tree))
    build_app(spec, tree, log=log, timeout=BUILD_TIMEOUT)
    app = start_app(spec, tree, port=port, log=log)
    wait_ready(app, timeout=wait)
    return app


async def _relay_while_up(app: RunningApp, sock: socket.socket, status: Path) -> int:
    """Relay the clients of ``sock`` to the app until the app ends; return its exit code.

    The status says ready once the socket listens: the host's first request gets through.
    """
    listening = asyncio.Event()
    server = asyncio.create_task(relay.serve_inside(sock, app.port, listening))
    try:
        await asyncio.wait(
            [asyncio.create_task(listening.wait()), server], return_when=asyncio.FIRST_COMPLETED
        )
        if listening.is_set():
            write_status(status, {"state": "ready", "port": app.port, "health": app.spec.health})
        while (code := app.proc.poll()) is None and not server.done():
            await asyncio.sleep(POLL_S)
        if server.done():
            server.result()  # the relay itself failed: say why
    finally:
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server
    return code if code is not None else -1


def main(argv: list[str] | None = None) -> int:
    """Serve the app of ``--tree`` through ``--socket-fd`` until killed; 1 when it fails."""
    parser = argparse.ArgumentParser(prog="python -m oldnew.web.serve")
    parser.add_argument("--tree", required=True, type=Path)
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--socket-fd", required=True, type=int, help="a listening unix socket")
    parser.add_argument("--status", required=True, type=Path)
    parser.add_argument("--wait", type=float, default=60.0)
    args = parser.parse_args(argv)
    os.set_inheritable(args.socket_fd, False)  # the app and its build never get it
    become_subreaper()  # a server that double-forks still ends with this one

    def end(*_: object) -> None:
        stop_descendants()
        os._exit(0)

    signal.signal(signal.SIGTERM, end)
    signal.signal(signal.SIGHUP, end)
    log = args.status.with_name(LOG_NAME)
    why = loopback()
    if why is not None:
        write_status(
            args.status, {"state": "failed", "failure": {"kind": "Loopback", "message": why}}
        )
        return 1
    try:
        app = _up(args.tree, args.port, log, args.wait)
    except AppFailure as exc:
        write_status(args.status, {"state": "failed", "failure": exc.to_dict()})
        stop_descendants()
        return 1
    listener = socket.socket(fileno=args.socket_fd)
    code = asyncio.run(_relay_while_up(app, listener, args.status))
    failure = {
        "kind": "ServerExited",
        "message": f"the server ({app.spec.start!r}) exited with code {code} while the "
        "preview served it: it must keep running",
        "log_tail": app.log_tail(),
    }
    write_status(args.status, {"state": "failed", "failure": failure})
    stop_descendants()
    return 1


if __name__ == "__main__":
    sys.exit(main())
