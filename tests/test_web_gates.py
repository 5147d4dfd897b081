"""The web gates: the app's start and its typed failures, the driver, the milestone gate set.

The failure routes run tiny Python stub servers (no browser): in the real sandbox through
``validate_tree(..., milestone=True)``, and the driver on the host where the test is about our
own process handling (the sandbox's pid namespace would hide a leak). The parse tests read the
web steps' stored JSON (``tests/fixtures/web``). One end-to-end test runs the whole milestone
set with Chromium on a tiny good app; it is skipped, with the install command, without the
tools.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from oldnew.gates import validate_tree
from oldnew.gates.browser import (
    axe_findings,
    e2e_findings,
    e2e_results,
    lighthouse_findings,
    load_findings,
    screenshot_findings,
)
from oldnew.gates.model import ValidationResult
from oldnew.gates.profiles import PROFILES, Profile
from oldnew.gates.runner import reuse_key, toolchains_of
from oldnew.gates.web import WebSettings, copy_out, driver_steps, page_source, unrun_outcome
from oldnew.sandbox.host import probe_host
from oldnew.web import toolchain
from oldnew.web.app import free_port, start_app, stop_app, tree_pids, wait_ready
from oldnew.web.driver import e2e_specs, launch_failure, scan_egress
from oldnew.web.start import (
    NoStartCommand,
    PortNeverOpened,
    ReadinessTimeout,
    ServerExited,
    StartSpec,
    WrongPort,
    find_start,
    npm_script,
)
from oldnew.web.targets import WebTargets, from_scope

FIXTURES = Path(__file__).parent / "fixtures" / "web"
MILESTONE = Profile(
    "web-test",
    gates=("web-build",),
    milestone_gates=("web-start", "e2e", "load"),
    web_ready_s=1.5,
    load_seconds=1.0,
)
"""The web gates with no browser, a short readiness timeout: the failure routes need no more."""

SERVER = textwrap.dedent(
    """
    import os, socket, sys, time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    mode = sys.argv[1]
    port = int(os.environ["PORT"])
    if mode == "exit":
        print("boom: the configuration file config.toml is missing", flush=True)
        sys.exit(3)
    if mode == "wrong":
        port = int(os.environ.get("WRONG_PORT", "3000"))
    if mode == "ipv6":
        class Server6(ThreadingHTTPServer):
            address_family = socket.AF_INET6
        ThreadingHTTPServer = Server6
    if mode == "egress":
        try:
            socket.create_connection(("192.0.2.1", 80), timeout=1)
        except OSError as exc:
            print(f"fetching the exchange rates failed: {exc}", file=sys.stderr, flush=True)
    if mode == "daemon":
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                with open("daemon.pid", "w") as fh:
                    fh.write(str(os.getpid()))
                os.execvp(sys.executable, [sys.executable, "-c", "import time; time.sleep(300)"])
            os._exit(0)
    BIG = b"<p>" + b"x" * (50 * 2**20) + b"</p>"
    SERVED = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if mode == "never200":
                self.send_response(503)
                self.end_headers()
                return
            body = BIG if mode == "big" else b"<!doctype html><title>t</title><h1>hi</h1>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
                self.wfile.flush()
            except OSError:
                pass
            SERVED.append(self.path)
            if mode == "dies" and len(SERVED) == 2:  # readiness, then the page fetch
                print("out of memory, giving up", flush=True)
                os._exit(4)

        def log_message(self, *args):
            pass

    print(f"serving on {port}", flush=True)
    ThreadingHTTPServer(("::1" if mode == "ipv6" else "127.0.0.1", port), Handler).serve_forever()
    """
)


def _project(tmp_path: Path, mode: str | None, *, build: str | None = None) -> Path:
    """Write a stub web project; ``mode`` None: one that declares no start."""
    tree = tmp_path / f"app-{mode}"
    tree.mkdir()
    (tree / "server.py").write_text(SERVER, encoding="utf-8")
    lines = ["[project]", 'name = "stub"', 'version = "0.1.0"', ""]
    if mode is not None:
        lines += ["[tool.oldnew]", f'start = "python server.py {mode}"']
        if build:
            lines.append(f"build = {json.dumps(build)}")
    (tree / "pyproject.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tree


def _milestone(
    tree: Path, pages: tuple[str, ...] = ("/",), *, evidence: Path | None = None
) -> ValidationResult:
    """Run the milestone set (no browser gate) on ``tree``; no process of its app is left."""
    result = validate_tree(
        tree,
        timeout=60,
        profile=MILESTONE,
        toolchains=["python", "web"],
        milestone=True,
        web=WebTargets(pages, ()),
        evidence_dir=evidence,
    )
    mode = tree.name.removeprefix("app-").encode()
    assert _leftovers(mode) == [], "a process of the app outlived its validation"
    return result


def _leftovers(mode: bytes) -> list[int]:
    """Return the live processes running the stub server in ``mode`` from a sandbox's copy."""
    found = []
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if argv[1:3] == [b"server.py", mode] and "oldnew-sbx-" in cwd and _alive(pid):
            found.append(pid)
    return found


def _only(result: ValidationResult, gate: str) -> list[str]:
    return [d.message for d in result.diagnostics if d.tool == gate]


def _browser_gates_held_back(result: ValidationResult) -> None:
    for name in MILESTONE.milestone_gates[1:]:
        check = result.check(name)
        assert check is not None and check.status == "not_run", name
        assert check.summary.startswith("skipped: web-start did not pass"), check.summary


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


# -- the declared start -----------------------------------------------------------------------


def test_start_is_read_from_package_json_without_npm(tmp_path: Path) -> None:
    scripts = {
        "prestart": "node check.js",
        "start": "npm run serve -- --quiet",
        "serve": "node server.js",
        "build": "vite build",
    }
    (tmp_path / "package.json").write_text(
        json.dumps({"scripts": scripts, "oldnew": {"health": "/healthz"}})
    )
    spec = find_start(tmp_path)
    assert spec == StartSpec(
        "node",
        "node check.js && (node server.js --quiet)",
        "vite build",
        "/healthz",
        "package.json scripts.start",
    )
    # preview after build (a Vite app); an npm run of an unknown script is left alone
    assert npm_script({"preview": "npm run nope && vite preview"}, "preview") == (
        "npm run nope && vite preview"
    )
    (tmp_path / "package.json").write_text(
        json.dumps({"scripts": {"build": "vite build", "preview": "vite preview"}})
    )
    spec = find_start(tmp_path)
    assert spec is not None and (spec.start, spec.build) == ("vite preview", "vite build")
    assert spec.source == "package.json scripts.preview"


def test_start_is_read_from_pyproject_and_bad_declarations_say_what_to_write(
    tmp_path: Path,
) -> None:
    assert find_start(tmp_path) is None
    (tmp_path / "pyproject.toml").write_text(
        '[tool.oldnew]\nstart = ["python", "-m", "app"]\nhealth = "/up"\n'
    )
    spec = find_start(tmp_path)
    assert spec is not None and (spec.stack, spec.start, spec.health) == (
        "python",
        "python -m app",
        "/up",
    )
    (tmp_path / "pyproject.toml").write_text("[tool.oldnew]\nstart = 3\n")
    with pytest.raises(NoStartCommand, match=r"must be a command.*PORT"):
        find_start(tmp_path)
    (tmp_path / "pyproject.toml").unlink()
    (tmp_path / "package.json").write_text("{not json")
    with pytest.raises(NoStartCommand, match="not valid JSON"):
        find_start(tmp_path)
    (tmp_path / "package.json").write_text('{"scripts": {"test": "vitest"}}')
    assert find_start(tmp_path) is None
    assert "scripts" in str(NoStartCommand("node")) and "pyproject" in str(NoStartCommand())


def test_targets_come_from_the_scopes_routes() -> None:
    scope = {
        "pages": [{"id": "P1", "route": "/"}, {"id": "P2", "route": "/about"}, {"id": "P3"}],
        "api_endpoints": [
            {"id": "A1", "route": "GET /api/todos"},
            {"id": "A2", "route": "post /api/todos"},
            {"id": "A3", "route": "/api/health"},
            {"id": "A4", "route": "FETCH /x"},
        ],
    }
    assert from_scope(scope) == WebTargets(
        ("/", "/about"), ("GET /api/todos", "POST /api/todos", "GET /api/health")
    )
    assert from_scope({"pages": [], "api_endpoints": []}) == WebTargets(("/",), ())
    targets = from_scope(scope)
    assert WebTargets.from_dict(json.loads(json.dumps(targets.to_dict()))) == targets


# -- the app on the host: readiness and the stop of its whole tree ------------------------------


def test_wait_ready_tells_the_failures_apart_and_stop_leaves_no_process(tmp_path: Path) -> None:
    tree = _project(tmp_path, "x")
    cases = {
        "exit": (ServerExited, "config.toml is missing"),
        "wrong": (WrongPort, "serving on"),
        "never200": (ReadinessTimeout, "serving on"),
        "ipv6": (PortNeverOpened, "serving on"),
    }
    for mode, (kind, output) in cases.items():
        app = start_app(
            StartSpec("python", f"{sys.executable} server.py {mode}"),
            tree,
            port=free_port(),
            log=tmp_path / f"{mode}.log",
            env={**os.environ, "WRONG_PORT": str(free_port())},  # the host's 3000 may be taken
        )
        with pytest.raises(kind) as caught:
            wait_ready(app, timeout=2.0)
        assert output in caught.value.log_tail, mode
        pids = tree_pids(app.pid)
        stop_app(app)
        assert not any(_alive(p) for p in pids), mode
    assert "127.0.0.1:" in str(caught.value) and "::1 only?" in str(caught.value)


def test_a_server_that_double_forks_a_daemon_leaves_nothing_behind(tmp_path: Path) -> None:
    tree = _project(tmp_path, "daemon")
    (tree / "pyproject.toml").write_text(
        f'[tool.oldnew]\nstart = "{sys.executable} server.py daemon"\n'
    )
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "oldnew.web.driver", "--tree", str(tree), "--out", str(out)]
    proc = subprocess.run(
        [*argv, "--steps", "build,start"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads((out / "web.json").read_text())
    assert data["steps"]["start"]["status"] == "passed", data
    pid = int((tree / "daemon.pid").read_text())
    deadline = time.monotonic() + 3
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid), "the daemon the server forked outlived the driver"


# -- the failure routes, in the sandbox --------------------------------------------------------


def test_no_start_command_is_the_coders_finding_naming_the_stack(tmp_path: Path) -> None:
    result = _milestone(_project(tmp_path, None))
    start = result.check("web-start")
    assert start is not None and start.status == "failed"
    (message,) = _only(result, "web-start")
    assert "declares no start command" in message and "[tool.oldnew] start" in message
    assert result.diagnostics[0].file == "pyproject.toml"
    assert result.diagnostics[0].rule == "NoStartCommand"
    _browser_gates_held_back(result)
    assert not result.passed


NODE_SERVER = """
const http = require('node:http');
http.createServer((req, res) => res.end('<!doctype html><title>t</title><h1>hi</h1>'))
  .listen(Number(process.env.PORT), process.env.HOST, () => console.log('up'));
"""


@pytest.mark.skipif(toolchain.node() is None, reason="needs Node: apt-get install nodejs")
def test_a_node_app_starts_through_its_npm_scripts_without_npm(tmp_path: Path) -> None:
    tree = tmp_path / "app-node"
    tree.mkdir()
    (tree / "server.js").write_text(NODE_SERVER)
    scripts = {"start": "npm run serve", "serve": "node server.js", "build": "node -e 1"}
    (tree / "package.json").write_text(json.dumps({"name": "n", "scripts": scripts}))
    result = validate_tree(
        tree,
        timeout=60,
        profile=Profile("node", gates=("web-build",), milestone_gates=("web-start",)),
        milestone=True,
    )
    start = result.check("web-start")
    assert start is not None and start.status == "passed", result.diagnostics
    assert (start.metrics["stack"], start.metrics["start"]) == ("node", "(node server.js)")
    build = result.check("web-build")
    assert build is not None and build.status == "passed"


def test_a_start_that_exits_at_once_has_the_servers_output(tmp_path: Path) -> None:
    result = _milestone(_project(tmp_path, "exit", build="echo built"))
    build = result.check("web-build")
    assert build is not None and build.status == "passed"
    (message,) = _only(result, "web-start")
    assert "exited with code 3" in message and "config.toml is missing" in message
    _browser_gates_held_back(result)


def test_a_server_on_the_wrong_port_and_one_that_never_answers_200(tmp_path: Path) -> None:
    wrong = _milestone(_project(tmp_path, "wrong"))
    (message,) = _only(wrong, "web-start")
    assert "listens on port 3000" in message and "PORT environment variable" in message
    never = _milestone(_project(tmp_path, "never200"))
    (message,) = _only(never, "web-start")
    assert "answered HTTP 503 last" in message and "health" in message
    _browser_gates_held_back(never)


def test_a_server_that_dies_after_it_answered_is_a_finding(tmp_path: Path) -> None:
    result = _milestone(_project(tmp_path, "dies"), pages=("/",))
    (message,) = _only(result, "web-start")
    assert "exited (code 4) while the gates ran" in message and "out of memory" in message


def test_a_missing_browser_is_not_run_with_the_fix_never_a_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLDNEW_CHROMIUM", str(tmp_path / "no-chromium"))
    result = validate_tree(
        _project(tmp_path, "good"),
        timeout=60,
        profile=Profile("x", gates=(), milestone_gates=("web-start", "axe", "lighthouse")),
        toolchains=["python", "web"],
        milestone=True,
    )
    start = result.check("web-start")
    assert start is not None and start.status == "passed"
    for name in ("axe", "lighthouse"):
        check = result.check(name)
        assert check is not None and (check.status, check.required) == ("not_run", True)
        assert "OLDNEW_CHROMIUM=" in check.summary and "Chromium binary" in check.summary
    assert not result.passed


def test_a_chromium_that_cannot_start_is_not_run_with_the_fix_never_the_projects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = _tools_missing()
    if missing:
        pytest.skip(f"the web tools are not installed: {missing}")
    monkeypatch.setenv("OLDNEW_CHROMIUM", "/usr/bin/false")  # there, executable, never starts
    assert toolchain.chromium() == Path("/usr/bin/false") and toolchain.missing("axe") is None
    tree = _good_app(tmp_path)
    gates = ("web-start", "e2e", "axe", "screenshots", "lighthouse")
    started = time.monotonic()
    result = validate_tree(
        tree,
        timeout=60,
        profile=Profile("x", gates=(), milestone_gates=gates),
        toolchains=["python", "web"],
        milestone=True,
        web=WebTargets(("/",), ()),
    )
    assert time.monotonic() - started < 30
    start = result.check("web-start")
    assert start is not None and start.status == "passed"
    for name in gates[1:]:
        check = result.check(name)
        assert check is not None and (check.status, check.required) == ("not_run", True), name
        assert "Chromium could not start (/usr/bin/false)" in check.summary, check.summary
        assert "apt-get install chromium" in check.summary and "OLDNEW_CHROMIUM" in check.summary
    assert result.diagnostics == []  # nothing for the coder to fix
    assert not result.passed


def test_a_failing_build_keeps_the_app_from_starting(tmp_path: Path) -> None:
    result = _milestone(_project(tmp_path, "good", build="echo cannot compile >&2; exit 2"))
    (message,) = _only(result, "web-build")
    assert "exited with code 2" in message and "cannot compile" in message
    start = result.check("web-start")
    assert start is not None and start.status == "not_run"
    assert start.summary.startswith("skipped: web-build")


def test_a_50_mb_page_is_caught_by_the_size_cap(tmp_path: Path) -> None:
    tree = _project(tmp_path, "big")
    (tree / "index.html").write_text("<p>template</p>")
    started = time.monotonic()
    result = _milestone(tree)
    assert time.monotonic() - started < 30
    (diag,) = [d for d in result.diagnostics if d.tool == "web-start"]
    assert diag.rule == "page-size" and "over 5 MB" in diag.message
    assert diag.file == "index.html"  # the page's source, where the fixer looks
    _browser_gates_held_back(result)


@pytest.mark.skipif(not probe_host().bwrap, reason="needs bubblewrap's network namespace")
def test_a_server_that_tries_to_reach_the_internet(tmp_path: Path) -> None:
    result = _milestone(_project(tmp_path, "egress"), evidence=tmp_path / "evidence")
    (message,) = _only(result, "web-start")
    assert "tried to reach the internet" in message and "unreachable" in message
    check = result.check("web-start")
    assert check is not None and check.status == "failed"
    log = Path(check.metrics["log"])
    assert log == tmp_path / "evidence" / "server.log" and "unreachable" in log.read_text()


def test_the_egress_scan_knows_node_and_python_errors(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text(
        "listening on 3000\n"
        "Error: getaddrinfo EAI_AGAIN api.example.com\n"
        "connect ECONNREFUSED 127.0.0.1:5432\n"
        "connect ECONNREFUSED 10.1.2.3:443\n"
        "urlopen error [Errno -3] Temporary failure in name resolution\n"
        "all good\n"
    )
    found = scan_egress(log)
    assert found["status"] == "failed"
    assert found["attempts"] == [
        "Error: getaddrinfo EAI_AGAIN api.example.com",
        "connect ECONNREFUSED 10.1.2.3:443",
        "urlopen error [Errno -3] Temporary failure in name resolution",
    ]
    (tmp_path / "quiet.log").write_text("connect ECONNREFUSED 127.0.0.1:5432\n")
    assert scan_egress(tmp_path / "quiet.log")["status"] == "passed"


def test_no_e2e_tests_is_a_finding_and_a_good_start_passes(tmp_path: Path) -> None:
    tree = _project(tmp_path, "good")
    result = _milestone(tree, pages=("/", "/about"))
    start = result.check("web-start")
    assert start is not None and start.status == "passed", result.diagnostics
    assert start.metrics["ready_s"] < 3
    e2e = result.check("e2e")
    assert e2e is not None
    if toolchain.missing("e2e") is None:
        assert e2e.status == "failed"
        assert "write Playwright specs in e2e/" in _only(result, "e2e")[0]
    else:
        assert e2e.status == "not_run" and e2e.required
    load = result.check("load")
    assert load is not None and load.status == "not_run" and not load.required
    # no evidence folder asked for: the numbers, no file
    assert start.metrics["start"] == "python server.py good" and "log" not in start.metrics


# -- parsing the steps' reports (fixtures written by the web tools) ---------------------------


def test_lighthouse_under_the_minimum_gives_its_failing_audits() -> None:
    report = json.loads((FIXTURES / "lighthouse-bad.json").read_text())
    diags, scores = lighthouse_findings(report, 90, FIXTURES / "site-bad")
    assert scores["/"] == {
        "performance": 100,
        "accessibility": 45,
        "best-practices": 82,
        "seo": 64,
    }
    rules = [d.rule for d in diags if d.file == "index.html"]
    assert {"color-contrast", "document-title", "image-alt", "meta-description"} <= set(rules)
    assert len(rules) == len(set(rules)), "an audit of two failing categories is named once"
    contrast = next(d for d in diags if d.rule == "color-contrast")
    assert "accessibility 45 (minimum 90)" in contrast.message
    assert "what to change: Low-contrast text" in contrast.message
    assert any("could not score page /missing" in d.message for d in diags)
    good = json.loads((FIXTURES / "lighthouse-good.json").read_text())
    assert lighthouse_findings(good, 90, FIXTURES / "site-good")[0] == []
    # a lower minimum lets the bad page's best practices (82) pass
    lenient = lighthouse_findings(report, 80, FIXTURES / "site-bad")[0]
    assert not any("best-practices" in d.message and d.file == "index.html" for d in lenient)


def test_axe_serious_blocks_and_minor_is_reported() -> None:
    report = json.loads((FIXTURES / "pages-bad.json").read_text())
    diags, reported = axe_findings(report, ("serious", "critical"), FIXTURES / "site-bad")
    rules = {d.rule for d in diags if d.file == "index.html"}
    assert {"image-alt", "color-contrast", "html-has-lang", "document-title"} <= rules
    alt = next(d for d in diags if d.rule == "image-alt")
    assert alt.message.startswith("page /: image-alt (critical): Fix any of the following:")
    assert "element: img" in alt.message and "fix: https://dequeuniversity.com/" in alt.message
    assert reported and all("(critical)" not in r and "(serious)" not in r for r in reported)
    good = json.loads((FIXTURES / "pages-good.json").read_text())
    assert axe_findings(good, ("serious", "critical"), FIXTURES / "site-good") == ([], [])
    # only critical blocks: the serious ones become reported lines
    diags, reported = axe_findings(report, ("critical",), FIXTURES / "site-bad")
    assert {d.rule for d in diags if d.file == "index.html"} == {"image-alt"}
    assert any("color-contrast (serious)" in r for r in reported)


def test_a_page_that_throws_fails_the_screenshots_and_console_noise_is_reported() -> None:
    report = json.loads((FIXTURES / "pages-bad.json").read_text())
    routes = ("/", "/about.html", "/contact")
    diags, shots, console = screenshot_findings(report, routes, FIXTURES / "site-bad")
    assert shots == ["screenshots/index.png", "screenshots/about.html.png", None]
    threw = [d for d in diags if d.rule == "pageerror"]
    assert [(d.file, d.message[:40]) for d in threw] == [
        ("index.html", "page / threw in the browser: Error: the ")
    ]
    assert [d.rule for d in diags if d.file == "/contact"] == ["screenshot"]
    assert any("the page logs an error" in line for line in console)
    good = json.loads((FIXTURES / "pages-good.json").read_text())
    routes = tuple(p["path"] for p in good["pages"])
    assert screenshot_findings(good, routes, FIXTURES / "site-good")[0] == []


def test_load_p95_and_error_rate_against_the_profile() -> None:
    ok = json.loads((FIXTURES / "load-ok.json").read_text())
    bad = json.loads((FIXTURES / "load-500.json").read_text())
    assert load_findings("GET /api/todos", ok, 500, 0.01) == []
    (errors,) = load_findings("GET /fail", bad, 500, 0.01)
    assert errors.rule == "errors" and "100.0% of 13006 requests failed" in errors.message
    assert "'500': 13006" in errors.message
    (slow,) = load_findings("GET /api/todos", {**ok, "p95_ms": 812.4}, 500, 0.01)
    assert slow.rule == "p95" and "p95 latency 812.4 ms over 500 ms" in slow.message
    assert load_findings("GET /x", {"requests": 0}, 500, 0.01)[0].rule == "errors"


def test_playwright_failures_are_findings_with_their_spec_line() -> None:
    report = {
        "stats": {"expected": 1, "unexpected": 1, "flaky": 0},
        "suites": [
            {
                "title": "home.spec.ts",
                "file": "home.spec.ts",
                "specs": [
                    {
                        "title": "shows the list",
                        "file": "home.spec.ts",
                        "line": 7,
                        "tests": [
                            {
                                "status": "unexpected",
                                "results": [
                                    {
                                        "status": "timedOut",
                                        "error": {"message": "\x1b[31mTimeout 15000ms\x1b[39m"},
                                    }
                                ],
                            }
                        ],
                    },
                    {"title": "ok", "line": 12, "tests": [{"status": "expected"}]},
                ],
            }
        ],
    }
    (diag,) = e2e_findings(report)
    assert (diag.file, diag.line, diag.rule) == ("e2e/home.spec.ts", 7, "timedOut")
    assert diag.message == "shows the list: Timeout 15000ms"


def test_a_test_marked_to_fail_is_a_finding_and_never_counts_as_passed() -> None:
    # Playwright's own report of tests/fixtures/web/e2e-hidden/hidden.spec.mjs: one test that
    # passes, test.fail() on a failing test and on a passing one, skip, fixme, a runtime skip.
    report = json.loads((FIXTURES / "e2e-hidden.json").read_text())
    assert report["stats"]["expected"] == 2  # Playwright counts the hidden failure as expected
    diags, counts = e2e_results(report)
    assert counts == {"passed": 1, "failed": 0, "flaky": 0, "skipped": 3, "hidden": 2}
    assert [(d.file, d.line, d.rule) for d in diags] == [
        ("e2e/hidden.spec.mjs", 8, "expected-failure"),
        ("e2e/hidden.spec.mjs", 14, "expected-failure"),
    ]
    assert diags[0].message.startswith(
        "a failing test marked to fail: test.fail() hides a failing test: make it pass or delete it"
    )
    assert "it ended passed" in diags[1].message


def test_skipped_tests_are_a_finding_when_no_test_passed() -> None:
    report = json.loads((FIXTURES / "e2e-hidden.json").read_text())
    specs = report["suites"][0]["specs"]
    report["suites"][0]["specs"] = [s for s in specs if "skip" in s["title"] or "fix" in s["title"]]
    diags, counts = e2e_results(report)
    assert counts == {"passed": 0, "failed": 0, "flaky": 0, "skipped": 3, "hidden": 0}
    assert [d.rule for d in diags] == ["skipped"] * 3
    messages = [d.message for d in diags]
    assert "a test left to fix: skipped (test.fixme()): no browser test passed" in messages[1]
    assert "(test.skip(): not on this machine)" in messages[2]


def test_a_browser_that_cannot_launch_is_told_apart_from_a_failing_test() -> None:
    failed = json.loads((FIXTURES / "e2e-launch-failed.json").read_text())  # CHROME_PATH=false
    assert launch_failure(failed) == (
        "Error: browserType.launch: Target page, context or browser has been closed"
    )
    assert launch_failure(failed, "/usr/bin/false") == launch_failure(failed)
    # the project's tests launch a browser of their own, wrongly: theirs to fix
    assert launch_failure(failed, "/usr/lib/chromium/chromium") is None
    assert launch_failure(json.loads((FIXTURES / "e2e-hidden.json").read_text())) is None
    # one test of the project's own that launches a browser, beside one that passed: its bug
    one = failed["suites"][1]["specs"][0]
    one["tests"][0] |= {"status": "expected", "results": [{"status": "passed"}]}
    assert launch_failure(failed) is None


def test_a_step_that_could_not_run_here_is_not_run_whatever_its_status() -> None:
    step = {"status": "failed", "exit_code": 3, "detail": "Chromium could not start (x): y"}
    outcome = unrun_outcome("axe", step)
    assert outcome is not None
    check, diags = outcome
    assert (check.status, check.required, diags) == ("not_run", True, [])
    assert check.summary == "could not run here: Chromium could not start (x): y"
    assert unrun_outcome("axe", {**step, "exit_code": 1}) is None  # a crash of the step: failed


def test_playwrights_default_test_match_finds_every_kind_of_spec(tmp_path: Path) -> None:
    names = ["app.spec.tsx", "b/list.test.cjs", "c.spec.mts", "d.test.jsx", "e.spec.ts"]
    names += ["helpers.ts", "f.spec.md", "node_modules/x.spec.ts", "fixtures.spec.json"]
    for name in names:
        (tmp_path / "e2e" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "e2e" / name).write_text("")
    assert e2e_specs(tmp_path) == [
        "e2e/app.spec.tsx",
        "e2e/b/list.test.cjs",
        "e2e/c.spec.mts",
        "e2e/d.test.jsx",
        "e2e/e.spec.ts",
    ]
    only = tmp_path / "only"
    (only / "e2e").mkdir(parents=True)
    (only / "e2e" / "app.spec.tsx").write_text("")
    assert e2e_specs(only) == ["e2e/app.spec.tsx"]


def test_the_driver_runs_the_steps_its_gates_read_and_its_output_is_copied_safely(
    tmp_path: Path,
) -> None:
    assert driver_steps(WebSettings(False, gates=("web-build", "pytest"))) == ["build"]
    assert driver_steps(WebSettings(True, gates=("web-build", "web-start", "axe"))) == [
        "build",
        "start",
        "pages",
    ]
    everything = driver_steps(WebSettings(True))
    assert everything == ["build", "start", "e2e", "pages", "lighthouse", "load"]
    out = tmp_path / "out"
    (out / "screenshots").mkdir(parents=True)
    (out / "screenshots" / "index.png").write_bytes(b"\x89PNG")
    (out / "web.json").write_text("{}")
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret")
    (out / "pages.json").symlink_to(secret)  # the app ran as the driver's user: never followed
    os.link(secret, out / "hard.json")
    dest = tmp_path / "evidence"
    (dest / "stale").mkdir(parents=True)
    problem = copy_out(out, dest)
    kept = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert kept == ["screenshots/index.png", "web.json"]
    assert "pages.json" in problem and "hard.json" in problem


def test_page_source_and_the_web_toolchain_and_reuse_key(tmp_path: Path) -> None:
    (tmp_path / "public").mkdir()
    (tmp_path / "public" / "about.html").write_text("x")
    assert page_source(tmp_path, "/about") == "public/about.html"
    assert page_source(tmp_path, "/contact") == "/contact"
    (tmp_path / "src" / "pages").mkdir(parents=True)
    (tmp_path / "src" / "pages" / "Contact.tsx").write_text("x")
    assert page_source(tmp_path, "/contact") == "src/pages/Contact.tsx"
    assert "web" not in toolchains_of(tmp_path, None)
    assert "web" in toolchains_of(tmp_path, ["web"])
    (tmp_path / "package.json").write_text('{"scripts": {"start": "node s.js"}}')
    assert "web" in toolchains_of(tmp_path, None)
    profile = PROFILES["fast"]
    task = reuse_key(tmp_path, profile, None, 60)
    milestone = reuse_key(tmp_path, profile, None, 60, milestone=True)
    other = reuse_key(
        tmp_path, profile, None, 60, milestone=True, targets=WebTargets(("/", "/about"))
    )
    assert len({task, milestone, other}) == 3


# -- the whole milestone set with Chromium -----------------------------------------------------

GOOD_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport"
content="width=device-width, initial-scale=1"><title>Todos</title>
<meta name="description" content="A small list of things to do.">
<link rel="icon" href="data:,"></head>
<body><main><h1>Todos</h1><p>Nothing to do yet. <a href="/about">About</a></p></main></body>
</html>
"""
GOOD_SERVER = """
import json, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
PAGES = {"/": open("index.html", "rb").read(),
         "/about": open("index.html", "rb").read().replace(b"<h1>Todos", b"<h1>About")}

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path == "/api/todos":
            body, kind = json.dumps([{"id": 1, "title": "tea"}]).encode(), "application/json"
        elif self.path == "/robots.txt":
            body, kind = b"User-agent: *\\nAllow: /\\n", "text/plain"
        elif self.path in PAGES:
            body, kind = PAGES[self.path], "text/html; charset=utf-8"
        else:
            self.send_response(404); self.send_header("Content-Length", "0"); self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""
GOOD_SPEC = """import { test, expect } from '@playwright/test';

test('the home page shows its heading', async ({ page }) => {
  await page.goto('/');
  await expect(page.locator('h1')).toHaveText('Todos');
});
"""


def _good_app(tmp_path: Path) -> Path:
    tree = tmp_path / "good"
    (tree / "e2e").mkdir(parents=True)
    (tree / "index.html").write_text(GOOD_PAGE)
    (tree / "server.py").write_text(GOOD_SERVER)
    (tree / "e2e" / "home.spec.ts").write_text(GOOD_SPEC)
    (tree / "pyproject.toml").write_text(
        '[project]\nname = "good"\nversion = "0.1.0"\n\n[tool.oldnew]\nstart = "python server.py"\n'
    )
    return tree


def _tools_missing() -> str | None:
    for step in ("e2e", "axe", "lighthouse", "load"):
        why = toolchain.missing(step)
        if why:
            return why
    for name in ("pages.mjs", "lighthouse.mjs", "load.mjs", "playwright.config.mjs"):
        if not (toolchain.JS_DIR / name).is_file():
            return f"oldnew's web step {name} is missing"
    return None


HANGING_SPEC = """import { test, expect } from '@playwright/test';

test('waits for a heading that never comes', async ({ page }) => {
  await page.goto('/');
  await new Promise(() => {});
});
"""


def test_a_browser_test_that_hangs_is_stopped_and_named(tmp_path: Path) -> None:
    missing = _tools_missing()
    if missing:
        pytest.skip(f"the web tools are not installed: {missing}")
    tree = _good_app(tmp_path)
    (tree / "e2e" / "home.spec.ts").write_text(HANGING_SPEC)
    started = time.monotonic()
    result = validate_tree(
        tree,
        timeout=60,
        profile=Profile("hang", gates=(), milestone_gates=("web-start", "e2e"), e2e_test_s=2),
        toolchains=["python", "web"],
        milestone=True,
        web=WebTargets(("/",), ()),
    )
    assert time.monotonic() - started < 40
    (diag,) = [d for d in result.diagnostics if d.tool == "e2e"]
    assert (diag.file, diag.line, diag.rule) == ("e2e/home.spec.ts", 3, "timedOut")
    assert "waits for a heading that never comes" in diag.message and "2000ms" in diag.message
