"""The preview: the delivered app, served from the sandbox, reachable from the host.

:func:`start_preview` starts a detached daemon (``python -m oldnew.web.preview serve ...``)
that lives on after the process that started it (a run that delivers leaves its preview
serving for the person). The daemon

1. binds the host port (3000 by default, the next free one if taken) on 127.0.0.1 (and ::1);
2. opens oldnew's real :class:`~oldnew.sandbox.Sandbox` on a copy of the given tree, with the
   project's environment, and runs :mod:`oldnew.web.serve` in it: the app is built and
   started there, on the loopback of the sandbox's own network namespace, and a relay
   (:mod:`oldnew.web.relay`) accepts on a unix socket the host made in a folder of the
   scratch the sandbox can neither write nor see, and handed in as a descriptor;
3. relays the host port to that socket, until it is stopped (SIGTERM: the sandbox's whole
   process tree is killed, its scratch folder removed) or the app fails.

It keeps ``.oldnew/preview.json`` in the workspace current (pid, its start time and token,
port, url, commit, started, state and, when the app failed, why). The app never gets a route
out: the sandbox keeps ``--unshare-net``; only the host reaches in, through the socket.
Nothing the app puts in its home (it owns it) is followed by this daemon, which may run as
root: the socket is not there, and the status and log it reads back are read without
following links, capped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import http.client
import json
import os
import signal
import subprocess  # nosec B404 - fixed argument lists, never a shell
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from oldnew.errors import OldnewError
from oldnew.locks import exclusive
from oldnew.sandbox import Limits, ProjectEnv, Sandbox
from oldnew.sandbox.files import UnsafeOutput, read_output
from oldnew.web import relay
from oldnew.web.app import free_port, http_get
from oldnew.web.launch import launch_argv
from oldnew.web.serve import BUILD_TIMEOUT, LOG_NAME, SOCKET_NAME, STATUS_NAME
from oldnew.web.start import (
    AppFailure,
    BuildFailed,
    CannotStart,
    NoStartCommand,
    PortNeverOpened,
    ReadinessTimeout,
    ServerExited,
    WrongPort,
    find_start,
)

RECORD = "preview.json"
LOG = "preview.log"
LOCK = "preview.lock"
DEFAULT_PORT = 3000
LIMITS = dataclasses.replace(Limits(), cpu_seconds=7 * 24 * 3600)
"""A preview serves for as long as the person wants it: a week of CPU time, not ten minutes."""
FOREVER = 365 * 24 * 3600.0
STOP_GRACE = 10.0
_DAEMON_MARK = "oldnew.web.preview"
STATUS_CAP = 1 * 2**20
LOG_CAP = 16 * 2**20
"""What the daemon reads of the files the sandbox writes, at most (the app owns them)."""


class PreviewError(OldnewError):
    """The preview itself could not start (not the app's fault); the message says why."""


@dataclass(frozen=True)
class Preview:
    """A preview that serves: where, from which process, of which commit."""

    url: str
    port: int
    pid: int
    commit: str
    started: str = ""


# -- the record --------------------------------------------------------------------------------


def _meta(ws_root: Path) -> Path:
    return Path(ws_root).resolve() / ".oldnew"


def _read_record(ws_root: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((_meta(ws_root) / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_record(meta: Path, record: dict[str, Any]) -> None:
    tmp = meta / f"{RECORD}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, meta / RECORD)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (not a zombie): for waiting on a daemon already identified."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def started_ticks(pid: int) -> int | None:
    """Return when ``pid`` started (field 22 of /proc/PID/stat, clock ticks since boot).

    With the pid it names one process for good: a pid reused later has another start time.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def _is_daemon(ws_root: Path, record: dict[str, Any]) -> bool:
    """Whether the record's pid is this workspace's preview daemon, the one that wrote it.

    All must hold: the process runs, started when the record says (not a reused pid), and
    its command line is the daemon's, for this workspace, with the record's token. A stale
    or tampered record then never has another process signalled (another workspace's
    daemon, or anything else that merely looks like one).
    """
    try:
        pid, ticks, token = int(record["pid"]), int(record["pid_start"]), str(record["token"])
    except (KeyError, TypeError, ValueError):
        return False
    if pid <= 0 or not token or not _alive(pid) or started_ticks(pid) != ticks:
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    want = {
        b"--token": token.encode(),
        b"--workspace": str(Path(ws_root).resolve()).encode(),
    }
    pairs = dict(zip(argv, argv[1:], strict=False))
    return _DAEMON_MARK.encode() in argv and all(pairs.get(k) == v for k, v in want.items())


def _preview_of(record: dict[str, Any]) -> Preview:
    return Preview(
        url=str(record["url"]),
        port=int(record["port"]),
        pid=int(record["pid"]),
        commit=str(record.get("commit", "")),
        started=str(record.get("started", "")),
    )


def _log_tail(meta: Path, lines: int = 30) -> str:
    try:
        text = (meta / LOG).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def failure_of(data: dict[str, Any], *, fallback_log: str = "") -> Exception:
    """Return the typed failure the preview's server reported (its ``to_dict()``).

    An app's failure comes back as its own :class:`AppFailure` subclass, with the server's
    message and log tail; anything else is a :class:`PreviewError`.
    """
    message = str(data.get("message") or "the preview's server ended without saying why")
    tail = str(data.get("log_tail") or fallback_log)
    cls = _FAILURES.get(str(data.get("kind")))
    if cls is None:
        return PreviewError(f"{message}\n{tail}".strip())
    failure = cls.__new__(cls)  # its own __init__ composes a message: this one is made
    AppFailure.__init__(failure, message, tail)
    return failure


_FAILURES: dict[str, type[AppFailure]] = {
    cls.kind: cls
    for cls in (
        AppFailure,
        NoStartCommand,
        BuildFailed,
        CannotStart,
        ServerExited,
        PortNeverOpened,
        WrongPort,
        ReadinessTimeout,
    )
}


# -- the API -----------------------------------------------------------------------------------


def preview_status(ws_root: Path) -> Preview | None:
    """Return the preview serving for ``ws_root``, or None when none is."""
    record = _read_record(ws_root)
    if not record or record.get("state") != "serving":
        return None
    try:
        preview = _preview_of(record)
    except (KeyError, TypeError, ValueError):
        return None
    return preview if _is_daemon(ws_root, record) else None


def preview_failure(ws_root: Path) -> Exception | None:
    """Return why the workspace's last preview ended by itself (its app failed), or None.

    An app that comes up and crashes later leaves its failure in the record, so that
    ``oldnew preview --status`` can say why the page is gone.
    """
    record = _read_record(ws_root)
    if not record or record.get("state") != "failed":
        return None
    failure = record.get("failure")
    return failure_of(failure if isinstance(failure, dict) else {})


def stop_preview(ws_root: Path) -> bool:
    """Stop the preview of ``ws_root``: its daemon and the sandbox's whole process tree.

    Returns whether one was running. The daemon kills the sandbox when it gets SIGTERM; one
    that does not end within a grace period is killed, and its sandbox's supervisor then
    kills the tree (it holds the daemon's lifeline).
    """
    with exclusive(_meta(ws_root) / LOCK):
        return _stop(ws_root)


def _stop(ws_root: Path) -> bool:
    meta = _meta(ws_root)
    record = _read_record(ws_root)
    if record is None:
        return False
    was = _is_daemon(ws_root, record)
    if was:
        _end(int(record["pid"]), int(record["pid_start"]))
    with contextlib.suppress(FileNotFoundError):
        (meta / RECORD).unlink()
    return was


def _end(pid: int, ticks: int) -> None:
    """TERM the daemon (identified), KILL it after the grace; each signal only while it is it."""

    def same() -> bool:
        return _alive(pid) and started_ticks(pid) == ticks

    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    while time.monotonic() < deadline:
        if not same():
            return
        time.sleep(0.05)
    if same():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    while same():
        time.sleep(0.05)


def start_preview(
    ws_root: Path,
    *,
    tree: Path,
    commit: str,
    port: int = DEFAULT_PORT,
    env: ProjectEnv | None = None,
    wait: float = 60,
    use_bwrap: bool = True,
    drop_uid: bool = True,
) -> Preview:
    """Serve a copy of ``tree`` (``commit`` of the workspace's main) and return where.

    A preview already serving for ``ws_root`` is replaced. The page must answer through the
    host relay within ``wait`` seconds (plus the sandbox's start).

    Raises:
        AppFailure: the app did not come up (NoStartCommand, BuildFailed, ServerExited,
            PortNeverOpened, WrongPort, ReadinessTimeout), with the server's log tail.
        PreviewError: the preview itself could not start (no free port, a daemon that died).

    """
    ws_root = Path(ws_root).resolve()
    with exclusive(_meta(ws_root) / LOCK):  # one start or stop of a workspace's at a time
        _stop(ws_root)
        token = _launch(ws_root, tree, commit, port, env, wait, use_bwrap, drop_uid)
        try:
            return _await_serving(ws_root, token, wait + _build_allowance(tree))
        except BaseException:
            _stop(ws_root)
            raise


def _build_allowance(tree: Path) -> float:
    """Seconds the sandbox's start (and the app's declared build) may take before readiness."""
    try:
        spec = find_start(tree)
    except AppFailure:
        spec = None
    return 30 + (BUILD_TIMEOUT if spec is not None and spec.build else 0)


def _launch(
    ws_root: Path,
    tree: Path,
    commit: str,
    port: int,
    env: ProjectEnv | None,
    wait: float,
    use_bwrap: bool,
    drop_uid: bool,
) -> str:
    """Start the daemon (detached); return the token its record will carry."""
    meta = _meta(ws_root)
    token = uuid.uuid4().hex
    env_file = meta / "preview-env.json"
    env_file.write_text(json.dumps(_env_dict(env or ProjectEnv.host(tree))), encoding="utf-8")
    argv = launch_argv(_DAEMON_MARK, "serve", "--workspace", str(ws_root))
    argv += ["--tree", str(Path(tree).resolve()), "--commit", commit, "--port", str(port)]
    argv += ["--env", str(env_file), "--token", token, "--wait", f"{wait:g}"]
    argv += [] if use_bwrap else ["--no-bwrap"]
    argv += [] if drop_uid else ["--no-drop-uid"]
    with open(meta / LOG, "wb") as log:
        # The daemon forks again and this child exits at once: nothing is left to reap here.
        subprocess.run(  # nosec B603 - oldnew's own module, fixed argv
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd="/",
            env=_daemon_environment(),
            check=False,
            timeout=60,
        )
    return token


def _daemon_environment() -> dict[str, str]:
    """Return what the daemon keeps of this process's environment: no key, no token.

    It serves for hours; what it needs is where its tools are (PATH) and where scratch
    folders go (TMPDIR); the sandbox gives the app a scrubbed environment of its own anyway.
    """
    keep = ("PATH", "LANG", "LC_ALL", "TMPDIR", "HOME", "OLDNEW_CHROMIUM")
    return {name: os.environ[name] for name in keep if name in os.environ}


def _await_serving(ws_root: Path, token: str, seconds: float) -> Preview:
    """Wait until the page answers through the relay; raise why it does not."""
    meta = _meta(ws_root)
    wait = seconds
    deadline = time.monotonic() + seconds
    last = "no answer yet"
    while True:
        record = _read_record(ws_root)
        mine = record is not None and record.get("token") == token
        if mine and record is not None:
            if record.get("state") == "failed":
                failure = record.get("failure") or {}
                raise failure_of(failure, fallback_log=_log_tail(meta))
            if record.get("state") == "serving":
                status = _probe(int(record["port"]), str(record.get("health") or "/"))
                if status == 200:
                    return _preview_of(record)
                last = f"HTTP {status}" if status else "no answer through the relay"
            if not _is_daemon(ws_root, record):
                raise PreviewError(
                    "the preview's daemon ended before the app answered:\n" + _log_tail(meta)
                )
        if time.monotonic() > deadline:
            if not mine:
                raise PreviewError(
                    "the preview's daemon never reported (see .oldnew/preview.log):\n"
                    + _log_tail(meta)
                )
            raise PreviewError(
                f"the app did not answer through the preview's relay within {wait:g}s "
                f"({last}):\n" + _log_tail(meta)
            )
        time.sleep(0.1)


def _probe(port: int, path: str) -> int | None:
    """Return the HTTP status of GET ``path`` on the host relay, or None (no proxy is used).

    Within 5 s in all: an app that drips its answer cannot hold the start past its wait.
    """
    try:
        return http_get(port, path, timeout=5).status
    except (OSError, http.client.HTTPException):
        return None


# -- the environment, across the daemon's command line ----------------------------------------


def _env_dict(env: ProjectEnv) -> dict[str, Any]:
    return {
        "python": str(env.python),
        "prefix": str(env.prefix),
        "base_prefix": str(env.base_prefix),
        "version": env.version,
        "import_paths": [str(p) for p in env.import_paths],
        "stdlib_modules": sorted(env.stdlib_modules),
        "test_tool_paths": [str(p) for p in env.test_tool_paths],
        "node_modules": str(env.node_modules) if env.node_modules else None,
    }


def _env_of(data: dict[str, Any]) -> ProjectEnv:
    return ProjectEnv(
        python=Path(data["python"]),
        prefix=Path(data["prefix"]),
        base_prefix=Path(data["base_prefix"]),
        version=str(data["version"]),
        import_paths=tuple(Path(p) for p in data["import_paths"]),
        stdlib_modules=frozenset(data["stdlib_modules"]),
        test_tool_paths=tuple(Path(p) for p in data["test_tool_paths"]),
        node_modules=Path(data["node_modules"]) if data.get("node_modules") else None,
    )


# -- the daemon --------------------------------------------------------------------------------


def _daemon(args: argparse.Namespace) -> int:
    """Serve until stopped; keep the record current. Runs detached, in its own session."""
    meta = _meta(Path(args.workspace))
    env = _env_of(json.loads(Path(args.env).read_text(encoding="utf-8")))
    record: dict[str, Any] = {
        "pid": os.getpid(),
        "pid_start": started_ticks(os.getpid()),
        "token": args.token,
        "commit": args.commit,
        "tree": args.tree,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "state": "starting",
    }
    try:
        sockets, port = relay.bind_port(args.port)
    except OSError as exc:
        record |= {"state": "failed", "failure": {"kind": "NoFreePort", "message": str(exc)}}
        _write_record(meta, record)
        return 1
    record |= {"port": port, "url": f"http://localhost:{port}"}
    _write_record(meta, record)
    with Sandbox.open(
        Path(args.tree),
        env=env,
        limits=LIMITS,
        use_bwrap=args.bwrap,
        drop_uid=args.drop_uid,
        oldnew_code=True,
    ) as box:
        record["scratch"] = str(box.scratch)
        _write_record(meta, record)
        code = asyncio.run(_serve(box, sockets, meta, record, args.wait))
    if record["state"] != "failed":
        with contextlib.suppress(FileNotFoundError):
            if (_read_record(meta.parent) or {}).get("token") == args.token:
                (meta / RECORD).unlink()
    return code


async def _serve(
    box: Sandbox, sockets: list[Any], meta: Path, record: dict[str, Any], wait: float
) -> int:
    """Run the app in ``box`` and the host relay to it until either ends."""
    stop = threading.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    status_file = STATUS_NAME
    argv = launch_argv("oldnew.web.serve", "--tree", str(box.tree))
    # In a network namespace of its own the app listens on the host's port number (what it
    # prints is where the person finds it); sharing the host's network, on a port of its own.
    isolated = box.bwrap is not None or box.host.unshare_net
    inner = record["port"] if isolated else free_port()
    # The relay's socket is the host's, in a folder of the scratch the sandbox can neither
    # write (another uid) nor see (bubblewrap shows only the tree and the home): the app
    # cannot swap it for a link to another of the host's sockets. The sandbox inherits the
    # listening descriptor and only accepts on it.
    sock_path = box.scratch / "relay" / SOCKET_NAME
    listener = relay.listen_unix(sock_path)
    argv += ["--port", str(inner), "--socket-fd", str(listener.fileno())]
    argv += ["--status", str(box.home / status_file)]
    argv += ["--wait", f"{wait:g}"]
    run = asyncio.create_task(
        asyncio.to_thread(box.run, argv, timeout=FOREVER, stop=stop, pass_fds=(listener.fileno(),))
    )
    host = asyncio.create_task(relay.serve_host(sockets, sock_path))
    while not run.done():  # until the app answers inside (or fails): then only wait
        state = _status(box.home, status_file)
        if state.get("state") == "ready":
            record |= {"state": "serving", "health": state.get("health", "/")}
            _write_record(meta, record)
            await asyncio.wait({run})
        elif state.get("state") == "failed":
            break
        await asyncio.wait({run}, timeout=0.1)
    await asyncio.wait({run})
    listener.close()
    host.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await host
    result = run.result()
    if stop.is_set():
        return 0
    state = _status(box.home, status_file)
    failure = state.get("failure") or {
        "kind": "PreviewError",
        "message": f"the preview's server ended (exit {result.exit_code}) {result.ending()}",
        "log_tail": (_box_tail(box.home, LOG_NAME) + "\n" + result.output).strip()[-4000:],
    }
    record |= {"state": "failed", "failure": failure}
    _write_record(meta, record)
    print(f"preview ended: {failure.get('kind')}: {failure.get('message')}", flush=True)
    return 1


def _status(home: Path, rel: str) -> dict[str, Any]:
    """Return the server's status file from the sandbox's home ({} while there is none).

    Read as the sandbox wrote it: no link followed, a regular file of bounded size only
    (the app owns the home; this daemon must not read a host file through it).
    """
    try:
        raw = read_output(home, rel, max_bytes=STATUS_CAP)
        data = json.loads(raw.decode("utf-8")) if raw is not None else {}
    except (UnsafeOutput, OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _box_tail(home: Path, rel: str, chars: int = 3_000) -> str:
    """Return the end of a log the sandbox wrote in its home, read safely (as :func:`_status`)."""
    try:
        raw = read_output(home, rel, max_bytes=LOG_CAP)
    except (UnsafeOutput, OSError) as exc:
        return f"(the app's log {rel} was not read: {exc})"
    return "" if raw is None else raw.decode("utf-8", "replace")[-chars:]


def main(argv: list[str] | None = None) -> int:
    """``python -m oldnew.web.preview serve ...``: the daemon (start_preview runs it, light)."""
    parser = argparse.ArgumentParser(prog="python -m oldnew.web.preview")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve a tree as the workspace's preview (a daemon)")
    serve.add_argument("--workspace", required=True)
    serve.add_argument("--tree", required=True)
    serve.add_argument("--commit", required=True)
    serve.add_argument("--port", type=int, default=DEFAULT_PORT)
    serve.add_argument("--env", required=True)
    serve.add_argument("--token", required=True)
    serve.add_argument("--wait", type=float, default=60)
    serve.add_argument("--no-bwrap", dest="bwrap", action="store_false")
    serve.add_argument("--no-drop-uid", dest="drop_uid", action="store_false")
    args = parser.parse_args(argv)
    if os.fork() > 0:  # the starter waits for this one; the daemon is re-parented
        return 0
    os.setsid()
    try:
        return _daemon(args)
    except Exception as exc:  # the record must say why, whatever it was
        meta = _meta(Path(args.workspace))
        record = _read_record(meta.parent) or {}
        if record.get("token") == args.token:
            why = f"the preview's daemon failed: {type(exc).__name__}: {exc}"
            record |= {"state": "failed", "failure": {"kind": "PreviewError", "message": why}}
            _write_record(meta, record)
        raise


if __name__ == "__main__":
    sys.exit(main())
