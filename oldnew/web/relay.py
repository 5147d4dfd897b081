"""The preview's two relays: bytes between a TCP port and a unix socket, both ways.

The app listens on 127.0.0.1 inside the sandbox's own network namespace, which has nothing
but ``lo``. A pathname unix socket crosses namespaces through the filesystem, so:

- the host makes the listening unix socket (:func:`listen_unix`) in a folder of the
  sandbox's scratch that the sandboxed code can neither write nor see, and hands the
  listening descriptor into the sandbox;
- inside the sandbox, :func:`serve_inside` accepts on that descriptor and connects each
  client to ``127.0.0.1:PORT`` of the namespace (the app);
- on the host, :func:`serve_host` listens on ``127.0.0.1:PORT`` and connects each client to
  that socket, by a path the app cannot replace: a socket (or a link to one) that the app
  plants in its own home is never what the host connects to.

The app still has no route to any address but its own loopback: the host reaches in, the
app never reaches out. Standard library only (the inside relay runs in the sandbox with
oldnew's interpreter). A client that hangs up, or an app that refuses, ends that connection
and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

CHUNK = 64 * 1024
CONNECT_TIMEOUT = 10.0
Opener = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy ``reader`` to ``writer`` until end of stream, then half-close ``writer``."""
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()  # the other side hung up: so does this direction


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):
        await writer.wait_closed()


async def _splice(
    client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter, open_peer: Opener
) -> None:
    """Connect one client to its peer and copy both ways until both ends are done.

    Cancelled (the relay stops), it closes both ends and returns: a connection's task is
    asyncio's own callback, which would report the cancellation as an error.
    """
    peer_w: asyncio.StreamWriter | None = None
    try:
        peer_r, peer = await asyncio.wait_for(open_peer(), CONNECT_TIMEOUT)
        peer_w = peer
        # Held here (and this task in the relay's set): asyncio keeps only weak references
        # to tasks, and a pump waiting on a quiet connection must not be collected.
        pumps = [
            asyncio.create_task(_pump(client_r, peer)),
            asyncio.create_task(_pump(peer_r, client_w)),
        ]
        await asyncio.gather(*pumps)
    except (TimeoutError, OSError):
        pass  # nothing listens (yet, or any more): the client sees a close
    except asyncio.CancelledError:
        for writer in (peer_w, client_w):
            if writer is not None:
                writer.close()
        return
    if peer_w is not None:
        await _close(peer_w)
    await _close(client_w)


_ACTIVE: set[asyncio.Task[None]] = set()
"""The connections being relayed, strongly held."""


async def _held(splice: Awaitable[None]) -> None:
    task = asyncio.current_task()
    if task is not None:
        _ACTIVE.add(task)
    try:
        await splice
    finally:
        if task is not None:
            _ACTIVE.discard(task)


def listen_unix(path: Path, backlog: int = 128) -> socket.socket:
    """Return a unix socket listening at ``path`` (made in a folder only the host may write).

    The path's folder is made with mode 0700: the sandboxed code (another uid, or behind
    bubblewrap, where the scratch is not shown) can neither replace the socket nor reach it.
    """
    path.parent.mkdir(mode=0o700, exist_ok=True)
    os.chmod(path.parent, 0o700)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


async def serve_inside(
    listener: socket.socket, port: int, ready: asyncio.Event | None = None
) -> None:
    """Relay each client of the listening unix socket ``listener`` to ``127.0.0.1:port``.

    ``listener`` is the host's (:func:`listen_unix`), inherited: this side never makes a
    path the host connects to. Runs until cancelled.
    """

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _held(_splice(reader, writer, lambda: asyncio.open_connection("127.0.0.1", port)))

    listener.setblocking(False)
    server = await asyncio.start_unix_server(handle, sock=listener)
    if ready is not None:
        ready.set()
    async with server:
        await server.serve_forever()


def bind_port(port: int, *, tries: int = 100) -> tuple[list[socket.socket], int]:
    """Bind ``port`` on 127.0.0.1 (and ::1 when the host has IPv6), or the next free one.

    ``localhost`` may mean either address to a browser, so a port counts as free only when
    both are (or IPv6 is off). Returns the listening sockets and the port they hold.

    Raises:
        OSError: none of ``tries`` ports from ``port`` on is free.

    """
    last: OSError | None = None
    for candidate in range(port, min(port + tries, 65536)):
        held: list[socket.socket] = []
        try:
            held.append(_listen(socket.AF_INET, "127.0.0.1", candidate))
            try:
                held.append(_listen(socket.AF_INET6, "::1", candidate))
            except OSError as exc:
                if exc.errno not in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                    raise
            return held, candidate
        except OSError as exc:
            last = exc
            for sock in held:
                sock.close()
    raise OSError(errno.EADDRINUSE, f"no free port from {port} to {port + tries - 1}: {last}")


def _listen(family: socket.AddressFamily, host: str, port: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


async def serve_host(sockets: list[socket.socket], sock_path: Path) -> None:
    """Relay each client of ``sockets`` (:func:`bind_port`) to ``sock_path`` until cancelled."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _held(_splice(reader, writer, lambda: asyncio.open_unix_connection(str(sock_path))))

    servers = [await asyncio.start_server(handle, sock=sock) for sock in sockets]
    try:
        await asyncio.gather(*(server.serve_forever() for server in servers))
    finally:
        for server in servers:
            server.close()
