"""Source builds a person allows: asked, built in the sandbox without network, locked, reported.

A package whose only release is a source distribution stops the run with a question; the
answer ``build`` has oldnew fetch the sdist on the host, build its wheel in the sandbox (no
network, setuptools from oldnew's own environment) and lock it from a page of built wheels.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import threading
import zipfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from depsrun import PLAIN, SCOPE, events, manifest, plan, scope_file
from synthetic import planned_run

from oldnew.bench.pkgindex import LocalIndex, serve
from oldnew.deps import builds
from oldnew.deps.errors import DependencyError
from oldnew.deps.manifest import Dependency
from oldnew.deps.settings import DepSettings
from oldnew.gates.verify import verify_workspace
from oldnew.runs import resume_run, start_run

PLAN = plan("app.py with show(n) using srcpkg")
APP = (
    "FILE: app.py\n```python\nfrom srcpkg import MARK\n\n\ndef show(n: int) -> str:\n"
    "    return f'{n}{MARK}'\n```\n"
    "FILE: tests/test_app.py\n```python\nfrom app import show\n\n\n"
    "def test_show() -> None:\n    assert show(3) == '3!'\n```\n"
)
BROKEN_SETUP = (
    "import sys\n"
    "sys.exit('fatal error: brokenbuild.h: No such file or directory (compile failed)')\n"
)


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> LocalIndex:
    idx = LocalIndex(tmp_path_factory.mktemp("index"))
    idx.sdist("srcpkg", "1.0", {"srcpkg/__init__.py": "MARK = '?'\n"})
    idx.sdist("srcpkg", "1.1", {"srcpkg/__init__.py": "MARK = '!'\n"})
    idx.sdist("srcpkg", "2.0", {"srcpkg/__init__.py": "MARK = '2'\n"})
    idx.sdist("brokenbuild", "1.0", setup_py=BROKEN_SETUP)
    return idx


def _scope(tmp_path: Path) -> Path:
    return scope_file(tmp_path, "Build shouty: show(n) shouts a number.\n")


_events = events


def _run(tmp_path: Path, index: LocalIndex, code: Any) -> Any:
    models = planned_run(SCOPE, PLAN, code={"T1": code})
    ws = tmp_path / "ws"
    ctx = {"package_index": index.url, "deps": "auto", "max_fix_rounds": 2}
    out = asyncio.run(start_run(_scope(tmp_path), ws, context=ctx, models=models))
    return ws, out, models


@pytest.mark.usefixtures("smoke_gates")
def test_an_allowed_source_build_is_built_locked_installed_and_reported(
    tmp_path: Path, index: LocalIndex
) -> None:
    ws, out, models = _run(tmp_path, index, APP + manifest('"srcpkg>=1,<2",  # marks the numbers'))
    assert out.status == "waiting"
    (q,) = out.questions
    assert q["kind"] == "dependency_blocked" and q["packages"] == ["python:srcpkg"]
    keys = [o["key"] for o in q["options"]]
    assert keys == ["retry", "build", "instead", "skip"]
    build = next(o for o in q["options"] if o["key"] == "build")
    assert "built in the sandbox, without network" in build["label"]
    out = asyncio.run(resume_run(ws, answers={q["id"]: "build"}, models=models))
    assert out.status == "delivered", out
    (built,) = _events(ws, node="dependencies", event="built")
    # The newest source release the manifest allows (1.1, not 2.0), built once.
    assert built["packages"] == ["python:srcpkg==1.1"] and built["reused"] == []
    assert built["seconds"] > 0
    lock = (ws / "uv.lock").read_text()
    assert 'name = "srcpkg"' in lock and "built-wheels/srcpkg.html" in lock
    assert "srcpkg-1.1-py3-none-any.whl" in lock and 'hash = "sha256:' in lock
    # The project's environment imports the built package.
    (installed,) = _events(ws, node="dependencies", event="installed")
    python = Path(installed["environments"][0]["path"]) / "bin" / "python"
    probe = [str(python), "-c", "import srcpkg; print(srcpkg.MARK)"]
    assert subprocess.run(probe, capture_output=True, text=True, check=True).stdout == "!\n"
    ledger = json.loads((ws / ".oldnew" / "dependencies.json").read_text())
    assert ledger["python:srcpkg"]["decision"] == "source_build"
    assert ledger["python:srcpkg"]["version"] == "1.1"
    report = json.loads((ws / ".oldnew" / "report.json").read_text())
    srcpkg = next(d for d in report["dependencies"] if d["name"] == "srcpkg")
    assert srcpkg["approved"].startswith("source build allowed by a person; built on this")
    assert srcpkg["why"] == "marks the numbers" and srcpkg["requested_by"] == "T1"
    md = (ws / ".oldnew" / "report.md").read_text()
    assert "srcpkg 1.1 (python)" in md and "source build allowed by a person" in md
    # verify checks the lock with the page of built wheels from this machine's cache...
    cache = Path(os.environ["OLDNEW_DEPS_CACHE"])
    result = verify_workspace(ws, timeout=60, deps=DepSettings(cache=cache, index=index.url))
    assert result.matches, result.differences
    # ...and a cache without that wheel says where the lock finds it, never a lock mismatch.
    fresh = DepSettings(cache=tmp_path / "fresh-cache", index=index.url, timeout=60)
    result = verify_workspace(ws, timeout=60, deps=fresh)
    (difference,) = result.differences
    assert "srcpkg were built from source where the run went" in difference, difference
    assert str(cache / "built-wheels" / "srcpkg.html") in difference


@pytest.mark.usefixtures("smoke_gates")
def test_a_source_build_that_fails_asks_a_person_with_the_builds_words(
    tmp_path: Path, index: LocalIndex
) -> None:
    ws, out, models = _run(tmp_path, index, PLAIN + manifest('"brokenbuild",'))
    (q,) = out.questions
    assert "build" in [o["key"] for o in q["options"]]
    out = asyncio.run(resume_run(ws, answers={q["id"]: "build"}, models=models))
    assert out.status == "waiting"
    (q,) = out.questions
    assert q["kind"] == "dependency_blocked" and "could not install" in q["title"]
    assert "the source build of brokenbuild (brokenbuild-1.0.tar.gz) failed" in q["detail"]
    assert "brokenbuild.h: No such file or directory" in q["detail"]
    assert "provide a wheel of brokenbuild on your package index" in q["detail"]
    # Building again is no answer to a failed build: the other ways out are.
    assert [o["key"] for o in q["options"]] == ["retry", "instead", "skip"]
    (failed,) = _events(ws, node="dependencies", event="failed", kind="install")
    assert "brokenbuild" in failed["error"]


class _Listener:
    """A TCP server on 127.0.0.1 that counts the connections it accepts."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[_Listener]:
    server = _Listener()
    try:
        yield server
    finally:
        server.close()


def _probe_setup(port: int, outside: Path) -> str:
    """A setup.py that tries the network and a write outside, and keeps what happened."""
    return (
        "import socket\n"
        "from setuptools import setup\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {port}), timeout=3).close()\n"
        "    net = 'connected'\n"
        "except OSError as exc:\n"
        "    net = 'refused: ' + type(exc).__name__\n"
        "try:\n"
        f"    open({str(outside)!r}, 'w').write('escaped')\n"
        "    disk = 'written'\n"
        "except OSError as exc:\n"
        "    disk = 'refused: ' + type(exc).__name__\n"
        "with open('netprobe/result.py', 'w') as out:\n"
        "    out.write(f'NET = {net!r}\\nDISK = {disk!r}\\n')\n"
        "setup(name='netprobe', version='1.0', packages=['netprobe'])\n"
    )


def test_a_source_build_has_no_network_and_cannot_write_outside(
    tmp_path: Path, listener: _Listener
) -> None:
    idx = LocalIndex(tmp_path / "index")
    outside = tmp_path / "escaped.txt"
    idx.sdist(
        "netprobe",
        "1.0",
        {"netprobe/__init__.py": ""},
        setup_py=_probe_setup(listener.port, outside),
    )
    # The listener answers from here, so a build with the network would reach it.
    socket.create_connection(("127.0.0.1", listener.port), timeout=3).close()
    settings = DepSettings(cache=tmp_path / "cache", index=idx.url, timeout=120)
    (built,) = builds.build_allowed([Dependency("python", "netprobe", "")], settings)
    with zipfile.ZipFile(built.wheel) as wheel:
        result = wheel.read("netprobe/result.py").decode()
    # setup.py ran (it wrote its findings into the wheel), and both attempts were refused.
    assert "NET = 'refused: " in result and "DISK = 'refused: " in result, result
    assert listener.accepted == 1  # only the check above: nothing from the build
    assert not outside.exists()
    # The same sdist is never built twice.
    (again,) = builds.build_allowed([Dependency("python", "netprobe", "")], settings)
    assert again.reused and again.wheel == built.wheel
    page = builds.page(settings, "netprobe").read_text()
    assert "netprobe-1.0-py3-none-any.whl#sha256=" in page


def test_a_source_download_that_does_not_match_its_hash_is_not_built(tmp_path: Path) -> None:
    idx = LocalIndex(tmp_path / "index")
    idx.sdist("srcpkg", "1.0", {"srcpkg/__init__.py": ""})
    listing = idx.root / "srcpkg" / "index.html"
    text = listing.read_text()
    digest = text.split("#sha256=")[1][:64]
    listing.write_text(text.replace(digest, "0" * 64))
    settings = DepSettings(cache=tmp_path / "cache", index=idx.url, timeout=60)
    with pytest.raises(DependencyError) as caught:
        builds.build_allowed([Dependency("python", "srcpkg", "")], settings)
    assert caught.value.kind == "install" and "does not match the sha256" in caught.value.message
    assert not builds.pages(["srcpkg"], settings)


def test_no_source_release_that_fits_says_what_was_found(tmp_path: Path) -> None:
    idx = LocalIndex(tmp_path / "index")
    idx.sdist("srcpkg", "1.0", {"srcpkg/__init__.py": ""})
    settings = DepSettings(cache=tmp_path / "cache", index=idx.url, timeout=60)
    with pytest.raises(DependencyError) as caught:
        builds.build_allowed([Dependency("python", "srcpkg", ">=3")], settings)
    message = caught.value.message
    assert "no source distribution of srcpkg that matches '>=3'" in message
    assert "srcpkg-1.0.tar.gz" in message and caught.value.packages == ("python:srcpkg",)


@pytest.mark.usefixtures("smoke_gates")
def test_under_deps_ask_allowing_the_build_approves_the_package(
    tmp_path: Path, index: LocalIndex
) -> None:
    models = planned_run(SCOPE, PLAN, code={"T1": APP + manifest('"srcpkg>=1,<2",')})
    ws = tmp_path / "ws"
    ctx = {"package_index": index.url, "deps": "ask", "max_fix_rounds": 2}
    out = asyncio.run(start_run(_scope(tmp_path), ws, context=ctx, models=models))
    (q,) = out.questions
    assert q["kind"] == "dependency_blocked" and "build" in [o["key"] for o in q["options"]]
    out = asyncio.run(resume_run(ws, answers={q["id"]: "build"}, models=models))
    # No second question: allowing the build was the person's approval of the package.
    assert out.status == "delivered", out
    assert _events(ws, event="approval_asked") == []


def test_a_source_release_is_fetched_over_http_from_the_index(tmp_path: Path) -> None:
    idx = LocalIndex(tmp_path / "index")
    idx.sdist("srcpkg", "1.0", {"srcpkg/__init__.py": "MARK = 'http'\n"})
    requests: Counter[str] = Counter()
    with serve(idx, requests) as url:
        settings = DepSettings(cache=tmp_path / "cache", index=url, timeout=60)
        (built,) = builds.build_allowed([Dependency("python", "srcpkg", "")], settings)
    assert requests["/srcpkg/"] == 1 and requests["/srcpkg/srcpkg-1.0.tar.gz"] == 1
    with zipfile.ZipFile(built.wheel) as wheel:
        assert wheel.read("srcpkg/__init__.py") == b"MARK = 'http'\n"


def test_an_index_that_does_not_answer_is_unreachable_and_names_the_package(
    tmp_path: Path,
) -> None:
    settings = DepSettings(cache=tmp_path / "cache", index="http://127.0.0.1:9/simple", timeout=5)
    with pytest.raises(DependencyError) as caught:
        builds.build_allowed([Dependency("python", "srcpkg", "")], settings)
    assert caught.value.kind == "unreachable" and caught.value.packages == ("python:srcpkg",)
    assert "http://127.0.0.1:9/simple" in caught.value.message
    assert "--package-index" in caught.value.message


def test_a_build_that_makes_another_version_is_a_failed_build(tmp_path: Path) -> None:
    idx = LocalIndex(tmp_path / "index")
    liar = "from setuptools import setup\nsetup(name='srcpkg', version='9.9')\n"
    idx.sdist("srcpkg", "1.0", setup_py=liar)
    settings = DepSettings(cache=tmp_path / "cache", index=idx.url, timeout=60)
    with pytest.raises(DependencyError) as caught:
        builds.build_allowed([Dependency("python", "srcpkg", "")], settings)
    assert caught.value.kind == "install"
    assert "the build made srcpkg-9.9-py3-none-any.whl, not a wheel of srcpkg 1.0" in (
        caught.value.message
    )
    assert not builds.pages(["srcpkg"], settings)


def test_a_lock_cannot_name_a_page_of_wheels_outside_the_cache(tmp_path: Path) -> None:
    from oldnew.deps.python import built_pages

    settings = DepSettings(cache=tmp_path / "cache")
    ours = settings.cache / "built-wheels" / "srcpkg.html"
    theirs = tmp_path / "project" / "built-wheels" / "numfmt.html"
    for page in (ours, theirs):
        page.parent.mkdir(parents=True)
        page.write_text("<html></html>")
    lock = "".join(
        f'[[package]]\nname = "{n}"\nversion = "1"\nsource = {{ registry = "{p}" }}\n'
        for n, p in (("srcpkg", ours), ("numfmt", theirs), ("gone", ours.with_name("gone.html")))
    )
    assert built_pages(lock, settings) == [ours]
