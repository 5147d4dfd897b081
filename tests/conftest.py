"""Test-suite guards: no model provider is reachable, and any attempt fails loudly."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "todo"
sys.path.insert(0, str(Path(__file__).resolve().parent))

# Anything that slips past the socket guard (a subprocess, say) hits a closed loopback port.
for _var in ("OPENAI_API_KEY", "OPENAI_ORG_ID", "OLDNEW_MODEL", "ANTHROPIC_API_KEY"):
    os.environ.pop(_var, None)
os.environ["OPENAI_BASE_URL"] = "http://127.0.0.1:9/v1"
os.environ["LANGSMITH_TRACING"] = "false"
os.environ["LANGCHAIN_TRACING_V2"] = "false"
# uv and npm (run as subprocesses) get a closed loopback port for an index unless a test
# builds its own: the public registries are never reached, and a slip fails at once.
os.environ["OLDNEW_PACKAGE_INDEX"] = "http://127.0.0.1:9/simple"
os.environ["OLDNEW_NPM_REGISTRY"] = "http://127.0.0.1:9/"
os.environ["UV_HTTP_RETRIES"] = "0"

_real_connect = socket.socket.connect


def _guarded_connect(self: socket.socket, address: object) -> object:
    if self.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple):
        host = str(address[0])
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            raise RuntimeError(f"tests must not reach the network (tried {host}:{address[1]})")
    return _real_connect(self, address)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)


@pytest.fixture(autouse=True, scope="session")
def _deps_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Keep project environments in one cache for the session, never in the user's home."""
    path = tmp_path_factory.mktemp("deps-cache")
    saved = os.environ.get("OLDNEW_DEPS_CACHE")
    os.environ["OLDNEW_DEPS_CACHE"] = str(path)
    yield path
    if saved is None:
        os.environ.pop("OLDNEW_DEPS_CACHE", None)
    else:
        os.environ["OLDNEW_DEPS_CACHE"] = saved


@pytest.fixture(autouse=True)
def _own_memory(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Give every test its own memory store, so no test learns from another."""
    path = tmp_path_factory.mktemp("memory") / "memory.sqlite"
    monkeypatch.setenv("OLDNEW_MEMORY_PATH", str(path))
    return path


@pytest.fixture
def smoke_gates(monkeypatch: pytest.MonkeyPatch) -> None:
    """Validate with the smoke profile, chosen as a user would (``OLDNEW_QUALITY``).

    For tests of graph logic (routing, people in the loop, feedback, budgets, stalls): the
    code they generate must still parse, import and pass its tests, and a failure still
    fails, but lint, types, coverage and mutants are the gates' own tests' business (the
    test_gates files, the example end to end, kill and resume, the server).
    ``OLDNEW_TEST_QUALITY=default`` runs them on real gates too (to time or cross-check them).
    """
    monkeypatch.setenv("OLDNEW_QUALITY", os.environ.get("OLDNEW_TEST_QUALITY", "smoke"))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """A private PostgreSQL server for this test process (one per xdist worker), then stopped.

    Never skipped: without PostgreSQL it fails with the command that installs it. Its data
    directory is under /tmp, where the user ``postgres`` (the server's, as root) may go.
    """
    from oldnew.cluster.postgres import PrivateServer

    root = Path(tempfile.mkdtemp(prefix="oldnew-pg-"))
    root.chmod(0o755)
    server = PrivateServer(root / "data")
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: Any) -> str:
    """The URL of a new, empty database of its own on the test process's private server."""
    return str(postgres_server.create_database(f"t_{uuid.uuid4().hex[:16]}"))


@pytest.fixture
def example_model() -> str:
    """The bundled example's scripted model spec."""
    return f"scripted:{EXAMPLE / 'transcript.toml'}"


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local HTTP server on 127.0.0.1 that keeps every JSON body POSTed to it."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"header": self.headers["X-Oldnew-Event"], **json.loads(body)})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    with serving(Handler) as url:
        yield f"{url}/hook?token=secret", received


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve ``handler`` on 127.0.0.1 in a thread of its own; yield its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


HEAVY_FIRST = (
    "test_cluster.py",
    "test_kill_resume.py",
    "test_gates_hostile.py",
    "test_faults.py",
    "test_gates.py",
    "test_hitl.py",
    "test_feedback.py",
    "test_record_replay.py",
    "test_server.py",
    "test_web_run.py",
    "test_deps_graph.py",
    "test_sandbox_containment.py",
    "test_memory.py",
    "test_regression_gate.py",
    "test_stall.py",
    "test_planning_graph.py",
    "test_web_tools.py",
    "test_queue.py",
)
"""Test files that take the longest (tens of seconds each, by ``--durations`` on 2 cores),
sent to the workers first: xdist's loadfile hands out files by their number of tests, which
put these (few tests, long ones) last, so one worker ran on alone long after the other had
finished. A stale entry only costs balance; a file not named keeps its place."""


def pytest_configure(config: pytest.Config) -> None:
    """Hand out files in collection order (heaviest first), not by their number of tests."""
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Collect the files of :data:`HEAVY_FIRST` first, in that order; the others after."""
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(Path(str(item.fspath)).name, len(rank)))


WEB_TEST_FILES = (
    "test_web_tools.py",
    "test_web_gates.py",
    "test_web_run.py",
    "test_node_web.py",
    "test_web_hardening.py",
    "test_preview.py",
)
"""Tests that skip, with the install command, where Chromium, Node or oldnew's web tools are
missing; with ``OLDNEW_REQUIRE_WEB=1`` (CI, whose machine has them all) a skip there fails."""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Turn a web test's skip into a failure when the web tools are required to be there."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    required = os.environ.get("OLDNEW_REQUIRE_WEB") == "1"
    if required and report.skipped and Path(str(item.fspath)).name in WEB_TEST_FILES:
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"OLDNEW_REQUIRE_WEB=1, but this web test was skipped: {reason}"
