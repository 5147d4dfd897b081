"""The preview: the app served in the real sandbox, reached from the host through the relays."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from oldnew.cli import app as cli
from oldnew.sandbox import Sandbox, probe_host
from oldnew.web import preview as pv
from oldnew.web import relay
from oldnew.web.preview import (
    Preview,
    preview_failure,
    preview_status,
    start_preview,
    stop_preview,
)
from oldnew.web.start import ServerExited
from oldnew.workspace import Workspace

HOST = probe_host()
needs_bwrap = pytest.mark.skipif(HOST.bwrap is None, reason=f"no bubblewrap: {HOST.bwrap_error}")

STUB_APP = """\
import json, os, socket, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


def attempt(address):
    try:
        socket.create_connection(address, timeout=2).close()
        return "connected"
    except OSError as exc:
        return exc.errno


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/crash":
            os._exit(5)
        if url.path == "/probe":
            port = int(parse_qs(url.query)["port"][0])
            body = json.dumps({
                "interfaces": sorted(name for _, name in socket.if_nameindex()),
                "outside": attempt(("192.0.2.1", 80)),
                "host_loopback": attempt(("127.0.0.1", port)),
            }).encode()
        else:
            body = open("message.txt", "rb").read()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


print("stub listening on", os.environ["PORT"], flush=True)
ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Handler).serve_forever()
"""
PYPROJECT = '[project]\nname = "stub"\nversion = "0"\n\n[tool.oldnew]\nstart = "python -m app"\n'


def _stub(root: Path, message: str = "hello from the stub") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(PYPROJECT)
    (root / "app.py").write_text(STUB_APP)
    (root / "message.txt").write_text(message)
    return root


def _get(port: int, path: str = "/") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the relay binds
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _processes_mentioning(text: str) -> list[int]:
    """Return the pids whose command line or environment holds ``text`` (this one's aside)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if "Z" in (entry / "stat").read_text().rpartition(")")[2].split()[:1]:
                continue
            blob = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
        except OSError:
            continue
        if text.encode() in blob:
            found.append(int(entry.name))
    return found


def _assert_gone(record: dict[str, object], *, removed: bool = True) -> None:
    """The daemon, the sandbox and every process of it are gone (its folder too)."""
    pid, scratch = int(str(record["pid"])), str(record["scratch"])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (pv._alive(pid) or _processes_mentioning(scratch)):
        time.sleep(0.05)
    assert not pv._alive(pid)
    assert _processes_mentioning(scratch) == []
    assert Path(scratch).exists() is not removed


@pytest.fixture(scope="module", autouse=True)
def no_daemon_survives(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After this module, no preview daemon of its workspaces runs (killed, and a failure)."""
    yield
    base = str(tmp_path_factory.getbasetemp())
    left = [pid for pid in _processes_mentioning(base) if pv._alive(pid)]
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert left == [], "a preview daemon outlived its test"


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Path]:
    """A workspace whose main checkout is the stub app; its preview always stopped."""
    root = _stub(tmp_path / "ws")
    try:
        yield root
    finally:
        stop_preview(root)


def _record(root: Path) -> dict[str, object]:
    return dict(json.loads((root / ".oldnew" / "preview.json").read_text()))


def test_a_stop_event_kills_the_whole_tree(tmp_path: Path) -> None:
    stop = threading.Event()
    with Sandbox.open(_stub(tmp_path / "p")) as box:
        timer = threading.Timer(0.3, stop.set)
        timer.start()
        result = box.run(["/bin/sh", "-c", "sleep 30 & sleep 30"], timeout=60, stop=stop)
    assert result.exit_code is None
    assert result.killed.startswith("stopped on request")
    assert result.duration_s < 5
    assert _processes_mentioning(str(box.scratch)) == []


def test_preview_serves_through_the_relay_then_stops(ws: Path) -> None:
    expected = 3000 if _free(3000) else None
    served = start_preview(ws, tree=ws, commit="c0ffee")
    assert served.port == expected or (expected is None and served.port > 3000)
    assert served.url == f"http://localhost:{served.port}"
    assert _get(served.port) == (200, b"hello from the stub")
    assert preview_status(ws) == served
    # Detached: neither this process's child nor in its session (it serves on after us).
    parent = int(Path(f"/proc/{served.pid}/stat").read_text().rpartition(")")[2].split()[1])
    assert parent != os.getpid() and os.getsid(served.pid) != os.getsid(0)
    record = _record(ws)
    assert record["commit"] == "c0ffee" and record["pid"] == served.pid
    assert record["state"] == "serving" and record["started"]
    assert stop_preview(ws) is True
    _assert_gone(record)
    assert preview_status(ws) is None
    assert stop_preview(ws) is False
    with pytest.raises(OSError):
        _get(served.port)


@needs_bwrap
def test_the_app_has_no_route_out_while_it_serves(ws: Path) -> None:
    with socket.socket() as host_server:
        host_server.bind(("127.0.0.1", 0))
        host_server.listen()
        host_port = host_server.getsockname()[1]
        served = start_preview(ws, tree=ws, commit="c1", port=3400)
        status, body = _get(served.port, f"/probe?port={host_port}")
    assert status == 200
    seen = json.loads(body)
    assert seen["interfaces"] == ["lo"]
    assert seen["outside"] == errno.ENETUNREACH
    assert seen["host_loopback"] == errno.ECONNREFUSED  # the host's 127.0.0.1 is not its own


def test_a_taken_port_moves_on_and_a_new_preview_replaces_the_old(ws: Path) -> None:
    with contextlib.ExitStack() as stack:
        taken = stack.enter_context(socket.socket())
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT
        with contextlib.suppress(OSError):  # taken by someone else already: as good
            taken.bind(("127.0.0.1", 3000))
            taken.listen()
        first = start_preview(ws, tree=ws, commit="one")
        assert first.port > 3000
        assert _get(first.port) == (200, b"hello from the stub")
        old = _record(ws)
        (ws / "message.txt").write_text("second delivery")
        second = start_preview(ws, tree=ws, commit="two", port=first.port)
    _assert_gone(old)
    assert second.pid != first.pid and second.commit == "two"
    assert second.port == first.port  # the old one let it go
    assert _get(second.port) == (200, b"second delivery")
    assert preview_status(ws) == second


def test_an_app_that_exits_at_once_is_a_typed_failure_with_its_output(ws: Path) -> None:
    (ws / "app.py").write_text(
        "import sys\nprint('boom: no DATABASE_URL', flush=True)\nsys.exit(3)\n"
    )
    with pytest.raises(ServerExited) as caught:
        start_preview(ws, tree=ws, commit="bad", port=3500, wait=10)
    assert "exited with code 3" in str(caught.value)
    assert "boom: no DATABASE_URL" in caught.value.log_tail
    assert preview_status(ws) is None
    assert not (ws / ".oldnew" / "preview.json").exists()


def test_an_app_that_dies_later_leaves_why_and_no_process(ws: Path) -> None:
    served = start_preview(ws, tree=ws, commit="c2", port=3800)
    record = _record(ws)
    with pytest.raises((OSError, http.client.HTTPException)):
        _get(served.port, "/crash")
    _assert_gone(record)
    assert preview_status(ws) is None
    ended = preview_failure(ws)
    assert isinstance(ended, ServerExited) and "exited with code 5" in str(ended)
    assert "stub listening on 3800" in ended.log_tail


def test_a_daemon_killed_hard_takes_its_sandbox_with_it(ws: Path) -> None:
    served = start_preview(ws, tree=ws, commit="c3", port=3900)
    record = _record(ws)
    os.kill(served.pid, signal.SIGKILL)  # no handler runs: the supervisor's lifeline does it
    _assert_gone(record, removed=False)  # nothing ran its clean-up
    assert preview_status(ws) is None
    deadline = time.monotonic() + 10  # init reaps the daemon (a zombie counts as alive)
    while Path(f"/proc/{served.pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    start_preview(ws, tree=ws, commit="c4", port=3900)
    assert not Path(str(record["scratch"])).exists()  # the next sandbox swept it


def test_the_relays_survive_clients_that_hang_up(tmp_path: Path) -> None:
    async def scenario() -> list[bytes]:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(await reader.read(100))
            await writer.drain()
            writer.close()

        app_server = await asyncio.start_server(echo, "127.0.0.1", 0)
        app_port = app_server.sockets[0].getsockname()[1]
        sock = tmp_path / "relay" / "r.sock"
        inside = asyncio.create_task(relay.serve_inside(relay.listen_unix(sock), app_port))
        listening, port = relay.bind_port(35000)
        host = asyncio.create_task(relay.serve_host(listening, sock))
        answers = []
        for message in (b"", b"half a req", b"hello"):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            if message == b"":
                writer.transport.abort()  # hangs up at once, with a reset
            elif message == b"half a req":
                writer.write(message)
                writer.close()  # and goes away without reading
            else:
                writer.write(message)
                await writer.drain()
                answers.append(await asyncio.wait_for(reader.read(100), 5))
                writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        app_server.close()
        await app_server.wait_closed()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"nobody home")
        answers.append(await asyncio.wait_for(reader.read(100), 5))  # closed, not hung
        writer.close()
        await writer.wait_closed()
        await asyncio.sleep(0.2)  # the relays see the last hang-up
        for task in (inside, host):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return answers

    assert asyncio.run(scenario()) == [b"hello", b""]


NODE_SERVER = """\
const http = require("http");
http.createServer((req, res) => res.end("node says hi on " + process.env.PORT))
  .listen(Number(process.env.PORT), process.env.HOST, () => console.log("node up"));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="no node on this machine")
def test_a_node_app_serves_from_its_package_json_start(tmp_path: Path) -> None:
    root = tmp_path / "web"
    root.mkdir()
    (root / "package.json").write_text(json.dumps({"scripts": {"start": "node server.js"}}))
    (root / "server.js").write_text(NODE_SERVER)
    try:
        served = start_preview(root, tree=root, commit="n1", port=4000)
        assert _get(served.port) == (200, f"node says hi on {served.port}".encode())
    finally:
        stop_preview(root)


def test_the_fallback_sandbox_serves_too(ws: Path) -> None:
    served = start_preview(ws, tree=ws, commit="f", port=3600, use_bwrap=False, drop_uid=False)
    assert _get(served.port) == (200, b"hello from the stub")
    record = _record(ws)
    stop_preview(ws)
    _assert_gone(record)


def test_preview_status_ignores_a_dead_or_foreign_pid(tmp_path: Path) -> None:
    meta = tmp_path / ".oldnew"
    meta.mkdir()
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        for pid in (sleeper.pid, 2**22 + 1):
            record = {"pid": pid, "port": 1, "url": "u", "commit": "c", "state": "serving"}
            (meta / "preview.json").write_text(json.dumps(record))
            assert preview_status(tmp_path) is None
            assert stop_preview(tmp_path) is False  # never kills what is not a preview daemon
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


# -- the command line ---------------------------------------------------------------------------


@pytest.fixture
def delivered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    """A run's workspace whose main holds the stub app, committed."""
    ws = Workspace.create(tmp_path / "run", "r1", {})
    _stub(ws.root)
    ws.git("add", "-A")
    ws.git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "the stub app")
    # The project's own environment is the dependencies step's (tested there); here oldnew's.
    from oldnew.deps import envs
    from oldnew.sandbox import ProjectEnv

    monkeypatch.setattr(envs, "project_env", lambda tree, settings: ProjectEnv.host(tree))
    try:
        yield ws
    finally:
        stop_preview(ws.root)


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["preview", *args], env={"COLUMNS": "200"})
    return result.exit_code, result.output


def test_cli_serves_main_says_where_and_stops(delivered: Workspace) -> None:
    root = str(delivered.root)
    code, out = _cli("--workspace", root, "--port", "3700")
    assert code == 0, out
    served = preview_status(delivered.root)
    assert served is not None and served.commit == delivered.head()
    assert f"serving at http://localhost:{served.port}" in out
    assert _get(served.port) == (200, b"hello from the stub")
    code, out = _cli("--workspace", root, "--status")
    assert code == 0 and served.url in out and delivered.head()[:12] in out
    record = _record(delivered.root)
    code, out = _cli("--workspace", root, "--stop")
    assert code == 0 and "preview stopped" in out
    _assert_gone(record)
    code, out = _cli("--workspace", root, "--status")
    assert code == 0 and "no preview is serving" in out and "ended" not in out


def test_cli_status_says_why_the_page_is_gone(delivered: Workspace) -> None:
    root = str(delivered.root)
    assert _cli("--workspace", root, "--port", "3750")[0] == 0
    served = preview_status(delivered.root)
    assert served is not None
    with pytest.raises((OSError, http.client.HTTPException)):
        _get(served.port, "/crash")
    _assert_gone(_record(delivered.root))
    code, out = _cli("--workspace", root, "--status")
    assert code == 0 and "the last preview ended" in out and "exited with code 5" in out
    assert "no preview is serving" in out


def test_cli_errors_say_what_to_do(tmp_path: Path, delivered: Workspace) -> None:
    (tmp_path / "empty").mkdir()
    code, out = _cli("--workspace", str(tmp_path / "empty"))
    assert code == 2 and "holds no oldnew run" in out and "oldnew run" in out
    code, out = _cli("--workspace", str(delivered.root), "--port", "three")
    assert code == 2 and "Invalid value for '--port'" in out and "integer" in out
    code, out = _cli("--workspace", str(delivered.root), "--port", "70000")
    assert code == 2 and "Invalid value for '--port'" in out and "65535" in out
    (delivered.root / "pyproject.toml").write_text('[project]\nname = "stub"\nversion = "0"\n')
    code, out = _cli("--workspace", str(delivered.root))
    assert code == 2 and "[tool.oldnew] start" in out
    assert not (delivered.root / ".oldnew" / "preview.json").exists()


def test_preview_is_a_dataclass_of_the_record() -> None:
    record = {"url": "http://localhost:3001", "port": 3001, "pid": 7, "commit": "c", "started": "t"}
    assert pv._preview_of(record) == Preview("http://localhost:3001", 3001, 7, "c", "t")
