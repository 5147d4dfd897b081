"""Hardening of the preview and the app's start against a hostile or broken project."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from oldnew.web.app import RunningApp, build_app, probe, start_app, wait_ready
from oldnew.web.driver import fetch_capped
from oldnew.web.preview import (
    preview_failure,
    preview_status,
    start_preview,
    started_ticks,
    stop_preview,
)
from oldnew.web.start import (
    MAX_COMMAND,
    BuildFailed,
    CannotStart,
    NoStartCommand,
    ReadinessTimeout,
    StartSpec,
    find_start,
    npm_script,
)

# -- the declared command: bounded, and a refused exec is the coder's ----------------------------


def test_nested_npm_runs_that_fan_out_are_refused_before_they_grow() -> None:
    # Each level runs the next one twenty times: 160,000 copies of "echo hi" (megabytes).
    scripts = {f"s{i}": " && ".join([f"npm run s{i + 1}"] * 20) for i in range(4)}
    scripts["s4"] = "echo hi"
    scripts["start"] = "npm run s0"
    assert len(json.dumps(scripts)) < 2_100
    started = time.monotonic()
    with pytest.raises(NoStartCommand, match="expands to more than 64 KB") as caught:
        npm_script(scripts, "start")
    assert time.monotonic() - started < 1.0
    assert "scripts.start" in caught.value.message


def test_a_long_but_legal_expansion_still_reads() -> None:
    scripts = {"a": "echo " + "x" * 1000, "start": " && ".join(["npm run a"] * 20)}
    line = npm_script(scripts, "start")
    assert line.count("x" * 1000) == 20
    assert len(line) < MAX_COMMAND


def test_a_huge_declared_command_is_no_start_command(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        f'[tool.oldnew]\nstart = "python -c pass #{"x" * 240_000}"\n', encoding="utf-8"
    )
    with pytest.raises(NoStartCommand, match="expands to more than"):
        find_start(tmp_path)
    (tmp_path / "pyproject.toml").unlink()
    big = json.dumps({"scripts": {"start": "node s.js " + "y" * 100_000}})
    (tmp_path / "package.json").write_text(big, encoding="utf-8")
    with pytest.raises(NoStartCommand, match="scripts.start expands to more than"):
        find_start(tmp_path)


def test_an_exec_that_fails_is_a_typed_failure_not_a_crash(tmp_path: Path) -> None:
    huge = "true " + "z" * 240_000  # past the kernel's limit for one argument: E2BIG
    log = tmp_path / "server.log"
    with pytest.raises(CannotStart, match="longer than the system accepts") as caught:
        start_app(StartSpec("python", huge), tmp_path, port=1, log=log)
    assert caught.value.kind == "CannotStart"
    assert len(caught.value.message) < 1000
    gone = tmp_path / "gone"  # the tree is not there: ENOENT
    with pytest.raises(CannotStart, match="No such file"):
        start_app(StartSpec("python", "true"), gone, port=1, log=log)
    with pytest.raises(BuildFailed, match="could not be run"):
        build_app(StartSpec("node", "true", build=huge), tmp_path, log=log, timeout=5)


# -- the preview's record: a signal only for the daemon that wrote it ---------------------------


def test_a_record_pointing_at_another_process_never_has_it_killed(tmp_path: Path) -> None:
    ws, other = tmp_path / "ws", tmp_path / "other"
    (ws / ".oldnew").mkdir(parents=True)
    # Looks like another workspace's daemon: the mark, a token, a workspace on its argv.
    argv = [sys.executable, "-c", "import time; time.sleep(30)", "oldnew.web.preview", "serve"]
    argv += ["--workspace", str(other.resolve()), "--token", "t1"]
    looks_like = subprocess.Popen(argv)
    try:
        ticks = started_ticks(looks_like.pid)
        assert ticks is not None
        base = {"pid": looks_like.pid, "port": 1, "url": "u", "commit": "c", "state": "serving"}
        records = [
            base | {"token": "t1"},  # an old or tampered record: no start time
            base | {"token": "t1", "pid_start": ticks + 1},  # a reused pid
            base | {"token": "t1", "pid_start": ticks},  # another workspace's daemon
            base | {"token": "t2", "pid_start": ticks},  # another token
        ]
        for record in records:
            (ws / ".oldnew" / "preview.json").write_text(json.dumps(record))
            assert preview_status(ws) is None
            assert stop_preview(ws) is False
            assert looks_like.poll() is None, record
        # The same record in the workspace it names is that daemon: status sees it.
        (other / ".oldnew").mkdir(parents=True)
        (other / ".oldnew" / "preview.json").write_text(json.dumps(records[2]))
        assert looks_like.poll() is None, "the look-alike ended before the last check"
        assert preview_status(other) is not None
        assert stop_preview(other) is True
        assert looks_like.wait(timeout=15) != 0
    finally:
        looks_like.kill()
        looks_like.wait()


# -- the preview: the app's home is the app's, never a way into the host ------------------------

PLANTING_APP = """\
import json, os, signal, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

home = os.environ["HOME"]
secret_sock, secret_log, secret_status = open("targets.txt").read().split()


def plant(name, target):
    path = os.path.join(home, name)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    os.symlink(target, path)


def keep_planting():  # whatever is at preview.sock now, a link to the host's socket
    while True:
        plant("preview.sock", secret_sock)
        time.sleep(0.05)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/crash":  # the server's own status and log become links, it dies
            plant("preview-app.log", secret_log)
            plant("preview-status.json", secret_status)
            for pid in os.listdir("/proc"):
                try:
                    argv = open(f"/proc/{pid}/cmdline", "rb").read()
                except OSError:
                    continue
                if argv.startswith(b"/") and b"oldnew.web.serve" in argv:
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except PermissionError:
                        pass  # the sandbox's init (bubblewrap, root): not the server
        body = b"the app's own page"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


threading.Thread(target=keep_planting, daemon=True).start()
ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Handler).serve_forever()
"""


def _host_secrets(tmp_path: Path) -> tuple[Path, list[int], socket.socket]:
    """A host-only folder: a unix socket that counts its clients, a log and a status file."""
    secret = tmp_path / "host-only"
    secret.mkdir(mode=0o700)
    (secret / "shadow.txt").write_text("HOST-SECRET-LOG\n")
    failure = {"kind": "ServerExited", "message": "HOST-SECRET-STATUS", "log_tail": ""}
    (secret / "status.json").write_text(json.dumps({"state": "failed", "failure": failure}))
    for name in ("shadow.txt", "status.json"):
        os.chmod(secret / name, 0o600)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(secret / "docker.sock"))
    server.listen(8)
    server.settimeout(0.05)
    return secret, [], server


def _accepted(server: socket.socket, clients: list[int]) -> None:
    with contextlib.suppress(TimeoutError):
        while True:
            conn, _ = server.accept()
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 11\r\n\r\nHOST-SOCKET")
            conn.close()
            clients.append(1)


def _get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def test_an_app_that_plants_links_in_its_home_reaches_nothing_of_the_host(
    tmp_path: Path,
) -> None:
    secret, clients, server = _host_secrets(tmp_path)
    root = tmp_path / "app"
    root.mkdir()
    (root / "pyproject.toml").write_text('[tool.oldnew]\nstart = "python -m app"\n')
    (root / "app.py").write_text(PLANTING_APP)
    targets = [secret / "docker.sock", secret / "shadow.txt", secret / "status.json"]
    (root / "targets.txt").write_text(" ".join(map(str, targets)))
    try:
        served = start_preview(root, tree=root, commit="c", port=3900)
        for _ in range(5):  # the link is in place: every request still reaches the app
            assert _get(served.port, "/") == (200, b"the app's own page")
            _accepted(server, clients)
            time.sleep(0.05)
        assert clients == []
        with contextlib.suppress(OSError, http.client.HTTPException):
            _get(served.port, "/crash")
        deadline = time.monotonic() + 20
        while preview_status(root) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        failure = preview_failure(root)
        assert failure is not None
        record = (root / ".oldnew" / "preview.json").read_text()
        assert "HOST-SECRET" not in record
        assert "HOST-SECRET" not in str(failure)
        assert "preview-app.log was not read: preview-app.log is a symbolic link" in str(failure)
        _accepted(server, clients)
        assert clients == []
    finally:
        stop_preview(root)
        server.close()


# -- a server that drips its answer: every request has a total deadline --------------------------


@contextlib.contextmanager
def _drip_server(interval: float = 0.1) -> Iterator[int]:
    """A server that sends a status line, then one header line every ``interval``, forever."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    done = threading.Event()

    def drip(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.recv(4096)
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            n = 0
            while not done.wait(interval):
                n += 1
                conn.sendall(f"X-Drip-{n}: {n}\r\n".encode())

    def serve() -> None:
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                conn, _ = server.accept()
                threading.Thread(target=drip, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        done.set()
        thread.join()
        server.close()


def test_readiness_against_a_dripping_server_ends_on_time(tmp_path: Path) -> None:
    running = subprocess.Popen(["sleep", "30"])
    try:
        with _drip_server() as port:
            app = RunningApp(running, port, tmp_path / "log", StartSpec("node", "x"))
            started = time.monotonic()
            with pytest.raises(ReadinessTimeout, match="answered too slowly") as caught:
                wait_ready(app, timeout=1.0)
            assert time.monotonic() - started < 2.5
            assert caught.value.slow
    finally:
        running.kill()
        running.wait()


def test_a_page_that_drips_is_a_finding_within_the_fetch_deadline() -> None:
    with _drip_server() as port:
        started = time.monotonic()
        record = fetch_capped(f"http://127.0.0.1:{port}", "/", 1000, 1.0)
        assert time.monotonic() - started < 2.0
    assert record["status"] is None
    assert "answered too slowly" in record["error"]


def test_the_deadline_fetch_still_reads_status_size_and_cap() -> None:
    body = b"<html>" + b"x" * 5000

    class Page(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keeps the connection open after the body

        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/" else 404)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = False  # a server that ignores "Connection: close"

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        started = time.monotonic()
        whole = fetch_capped(base, "/", 10_000, 5.0)
        assert time.monotonic() - started < 1.0  # done at Content-Length, not at the close
        assert (whole["status"], whole["bytes"], whole["over_cap"]) == (200, len(body), False)
        assert whole["content_type"] == "text/html"
        capped = fetch_capped(base, "/", 100, 5.0)
        assert (capped["bytes"], capped["over_cap"]) == (101, True)
        assert fetch_capped(base, "/missing", 10_000, 5.0)["status"] == 404
        assert probe(int(server.server_address[1]), "/") == 200
        assert probe(int(server.server_address[1]), "/ HTTP/1.0\r\nX-Injected: 1") is None
    finally:
        server.shutdown()
        server.server_close()


def test_the_driver_routes_a_command_too_long_to_run_to_the_coder(tmp_path: Path) -> None:
    tree, out = tmp_path / "tree", tmp_path / "out"
    tree.mkdir()
    (tree / "pyproject.toml").write_text(f'[tool.oldnew]\nstart = "true #{"x" * 240_000}"\n')
    argv = [sys.executable, "-m", "oldnew.web.driver", "--tree", str(tree), "--out", str(out)]
    subprocess.run([*argv, "--steps", "build,start"], check=True, timeout=60)
    web = json.loads((out / "web.json").read_text())
    assert web["error"] == ""  # not "the web driver crashed"
    start = web["steps"]["start"]
    assert start["status"] == "failed"
    assert start["failure"]["kind"] == "NoStartCommand"
    assert "expands to more than 64 KB" in start["failure"]["message"]
