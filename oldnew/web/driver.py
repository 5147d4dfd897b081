"""The milestone gate set in one sandboxed command: build, start, probe, browse, load, stop.

Run inside the sandbox with oldnew's interpreter (``python -I -m oldnew.web.driver``), so the
app, the probes and every tool share the box's network namespace (loopback only)::

    python -m oldnew.web.driver --tree T --out DIR --pages /,/about
        --endpoints "GET /api/todos" --steps build,start,e2e,pages,lighthouse,load --budget 240

It builds the app (when it declares a build), starts it on a free port, waits for its health
path, fetches each named page with a size cap (a page over the cap is a finding and no browser
opens it), then runs the project's Playwright tests in ``e2e/``, oldnew's page step
(screenshots, axe, page errors), Lighthouse, and a bounded load run per GET endpoint; last it
scans the server's output for attempts to reach the internet. Each step has its own timeout
inside one overall budget; whatever happens, the app's whole process tree is stopped at the
end. ``DIR/web.json`` (rewritten after every step) says what each step did; findings are
data, parsed by :mod:`oldnew.gates.web`. The driver exits 0 when it ran.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import subprocess  # nosec B404 - oldnew's own tools and the project's declared commands
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oldnew.web import toolchain
from oldnew.web.app import (
    RunningApp,
    become_subreaper,
    build_app,
    free_port,
    log_tail,
    start_app,
    stop_app,
    stop_descendants,
    stop_tree,
    wait_ready,
)
from oldnew.web.launch import launch_argv
from oldnew.web.start import AppFailure, NoStartCommand, StartSpec, declared_stack, find_start

STEPS = ("build", "start", "e2e", "pages", "lighthouse", "load")
PAGE_CAP = 5 * 2**20
"""Bytes a named page may have; a larger one is a finding and no browser opens it."""
STEP_TIMEOUTS = {"build": 180.0, "start": 30.0, "e2e": 120.0}
PAGE_FETCH_TIMEOUT = 10.0
E2E_TEST_TIMEOUT_S = 15.0
LOAD_CONNECTIONS = 10
EXIT_GRACE_S = 0.2
STOP_RESERVE = 4.0
"""Seconds of the budget kept for stopping the app and writing the evidence."""
SPEC_NAME = re.compile(r"\.(spec|test)\.[cm]?[jt]sx?$")
"""The spec files Playwright runs by default (its ``testMatch``): ``app.spec.tsx``,
``list.test.mjs``, ``home.spec.cts``..."""
CANNOT_RUN = 3
"""The exit code of a JS step that could not run here (its browser or tools are missing or do
not start, ``common.mjs``): the step is not run, with the fix, never a finding."""
CHROMIUM_FIX = (
    "make it start (apt-get install chromium), or set OLDNEW_CHROMIUM to a Chromium binary "
    "that starts"
)
_LAUNCH = re.compile(r"browserType\.launch(?:PersistentContext)?:")
EGRESS_PATTERNS = (
    re.compile(r"ENETUNREACH|Network is unreachable|EHOSTUNREACH|No route to host", re.I),
    re.compile(
        r"getaddrinfo|EAI_AGAIN|ENOTFOUND|Temporary failure in name resolution"
        r"|Name or service not known|nodename nor servname",
        re.I,
    ),
)
_REFUSED = re.compile(r"ECONNREFUSED\s+\[?([0-9A-Fa-f.:]+?)\]?:(\d+)")
MAX_EGRESS = 10


def driver_argv(*args: str) -> list[str]:
    """Return the argv that runs the driver with oldnew's interpreter (``web.launch``)."""
    return launch_argv("oldnew.web.driver", *args)


@dataclass
class Evidence:
    """What the driver found so far; written to ``web.json`` after every step."""

    out: Path
    targets: dict[str, list[str]]
    budget_s: float
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    spec: dict[str, Any] | None = None
    started: float = field(default_factory=time.monotonic)
    error: str = ""
    tools: dict[str, str] = field(default_factory=dict)
    """The web tools' versions, as the host found them (asking Chromium takes seconds)."""

    def step(self, name: str, status: str, detail: str = "", **extra: Any) -> dict[str, Any]:
        """Record one step's outcome (``passed``: it ran, ``failed``, ``not_run``)."""
        record = {"status": status, "detail": detail, **extra}
        self.steps[name] = record
        self.write()
        return record

    def left(self) -> float:
        """Return the seconds of the budget still free for steps."""
        return self.budget_s - (time.monotonic() - self.started) - STOP_RESERVE

    def write(self) -> None:
        """Write ``web.json`` (atomically: a reader never sees half a file)."""
        data = {
            "steps": self.steps,
            "spec": self.spec,
            "targets": self.targets,
            "tools": self.tools,
            "budget_s": self.budget_s,
            "duration_s": round(time.monotonic() - self.started, 3),
            "error": self.error,
        }
        tmp = self.out / "web.json.tmp"
        tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
        tmp.replace(self.out / "web.json")


def _csv(values: list[str] | None) -> list[str]:
    out: list[str] = []
    for value in values or []:
        out += [v.strip() for v in value.split(",") if v.strip()]
    return out


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m oldnew.web.driver", description=__doc__)
    parser.add_argument("--tree", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--pages", action="append", help="URL paths, comma-separated: /,/about")
    parser.add_argument("--endpoints", action="append", help='"GET /api/todos", comma-separated')
    parser.add_argument("--steps", default=",".join(STEPS))
    parser.add_argument("--budget", type=float, default=240.0)
    parser.add_argument("--ready-timeout", type=float, default=STEP_TIMEOUTS["start"])
    parser.add_argument("--load-seconds", type=float, default=5.0)
    parser.add_argument("--e2e-test-timeout", type=float, default=E2E_TEST_TIMEOUT_S)
    parser.add_argument("--page-cap", type=int, default=PAGE_CAP, help="bytes")
    parser.add_argument("--stack", default="", help="the scope's stack, for messages")
    parser.add_argument("--tools", default="{}", help="the web tools' versions (JSON), kept")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the steps asked for; write ``web.json``; return 0 when the driver itself ran."""
    args = _args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    pages = _csv(args.pages) or ["/"]
    endpoints = _csv(args.endpoints)
    steps = [s for s in _csv([args.steps]) if s in STEPS]
    ev = Evidence(args.out, {"pages": pages, "endpoints": endpoints}, args.budget)
    try:
        tools = json.loads(args.tools)
    except ValueError:
        tools = {}
    ev.tools = tools if isinstance(tools, dict) else {}
    become_subreaper()
    app: RunningApp | None = None
    try:
        app = _run(args, ev, steps, pages, endpoints)
    except Exception:  # noqa: BLE001 - the evidence says what broke; the app is still stopped
        ev.error = traceback.format_exc()[-2000:]
    finally:
        if app is not None:
            try:  # a moment for an exit under way (the shell reaps the server first)
                code: int | None = app.proc.wait(timeout=EXIT_GRACE_S)
            except subprocess.TimeoutExpired:
                code = None
            if code is not None and "start" in ev.steps:  # it died while the steps ran
                ev.steps["start"]["exited"] = {"code": code, "log_tail": app.log_tail()}
            stop_app(app)
        stop_descendants()
        if "start" in steps:
            started = time.monotonic()
            egress = scan_egress(args.out / "server.log", args.out / "build.log")
            ev.steps["egress"] = {**egress, "duration_s": round(time.monotonic() - started, 3)}
        ev.write()
    return 0


def _run(
    args: argparse.Namespace,
    ev: Evidence,
    steps: list[str],
    pages: list[str],
    endpoints: list[str],
) -> RunningApp | None:
    tree: Path = args.tree.resolve()
    spec = _spec(ev, tree, steps, args.stack)
    if spec is None:
        return None
    ev.spec = spec.to_dict()
    if "build" in steps and not _build(ev, spec, tree, args.out):
        for name in steps[steps.index("build") + 1 :]:
            ev.step(name, "not_run", "skipped: the build failed")
        return None
    if "start" not in steps:
        return None
    app = _start(ev, spec, tree, args)
    if app is None:
        for name in steps[steps.index("start") + 1 :]:
            ev.step(name, "not_run", "skipped: the app did not start")
        return None
    base = f"http://127.0.0.1:{app.port}"
    good = _fetch_pages(ev, base, pages, args.page_cap)
    env = _tool_env(tree, base, ev.tools)
    tools: dict[str, Callable[[], None]] = {
        "e2e": lambda: _e2e(ev, tree, args.out, env, args.e2e_test_timeout),
        "pages": lambda: _node_step(ev, "pages", "axe", "pages.mjs", good, base, args.out, env),
        "lighthouse": lambda: _node_step(
            ev, "lighthouse", "lighthouse", "lighthouse.mjs", good, base, args.out, env
        ),
        "load": lambda: _load(ev, base, endpoints, args, env),
    }
    for name, step in tools.items():
        if name not in steps:
            continue
        try:
            step()
        except FileNotFoundError as exc:  # one of oldnew's scripts is not there
            ev.step(name, "not_run", str(exc), missing=True)
        except Exception:  # noqa: BLE001 - one step's crash (oldnew's bug) spares the others
            ev.step(name, "failed", f"the step crashed: {traceback.format_exc()[-1500:]}")
    return app


def _spec(ev: Evidence, tree: Path, steps: list[str], stack: str) -> StartSpec | None:
    """Return the app's declared start; None (each step recorded) when it has none."""
    try:
        spec = find_start(tree)
        if spec is None:
            named = {"node-web": "node", "python-web": "python"}.get(stack)
            raise NoStartCommand(named or declared_stack(tree))
    except AppFailure as exc:
        if "start" not in steps:  # a task's build check: the milestone asks for the start
            ev.step("build", "not_run", exc.message, declared=False)
            return None
        for name in steps:
            if name in ("build", "start"):
                ev.step(name, "failed", exc.message, failure=exc.to_dict())
            else:
                ev.step(name, "not_run", "skipped: the app declares no start command")
        return None
    return spec


def _build(ev: Evidence, spec: StartSpec, tree: Path, out: Path) -> bool:
    if spec.build is None:
        ev.step("build", "not_run", "the project declares no build", declared=False)
        return True
    start = time.monotonic()
    log = out / "build.log"
    timeout = max(1.0, min(STEP_TIMEOUTS["build"], ev.left()))
    try:
        build_app(spec, tree, log=log, timeout=timeout)
    except AppFailure as exc:
        ev.step(
            "build",
            "failed",
            exc.message,
            duration_s=round(time.monotonic() - start, 3),
            log=log.name,
            failure=exc.to_dict(),
            command=spec.build,
        )
        return False
    duration = round(time.monotonic() - start, 3)
    ev.step("build", "passed", spec.build, duration_s=duration, log=log.name, command=spec.build)
    return True


def _start(
    ev: Evidence, spec: StartSpec, tree: Path, args: argparse.Namespace
) -> RunningApp | None:
    start = time.monotonic()
    port = free_port()
    log = args.out / "server.log"
    timeout = max(1.0, min(args.ready_timeout, ev.left()))
    app: RunningApp | None = None
    try:
        app = start_app(spec, tree, port=port, log=log)  # CannotStart: it could not be run
        ready = wait_ready(app, timeout=timeout)
    except AppFailure as exc:
        if app is not None:
            stop_app(app)
        ev.step(
            "start",
            "failed",
            exc.message,
            duration_s=round(time.monotonic() - start, 3),
            port=port,
            log=log.name,
            failure=exc.to_dict(),
            command=spec.start,
        )
        return None
    ev.step(
        "start",
        "passed",
        f"GET {spec.health} answered 200 after {ready:.2f}s",
        duration_s=round(time.monotonic() - start, 3),
        ready_s=round(ready, 3),
        port=port,
        log=log.name,
        failure=None,
        command=spec.start,
    )
    return app


def fetch_capped(base: str, path: str, cap: int, timeout: float) -> dict[str, Any]:
    """GET ``base + path``, reading at most ``cap + 1`` bytes; say what came back.

    ``timeout`` is the whole request's (a server that drips its answer is cut off).
    """
    from oldnew.web.app import TooSlow, http_get  # here: the rest of this file is another's

    host_port = base.split("//", 1)[1]
    host, _, port = host_port.partition(":")
    record: dict[str, Any] = {"path": path, "status": None, "bytes": 0, "over_cap": False}
    try:
        answer = http_get(
            int(port or 80),
            path,
            timeout=timeout,
            host=host,
            body_cap=cap,
            accept="text/html,*/*",
        )
    except TooSlow as exc:
        record["error"] = f"answered too slowly: {exc} (serve the page at once)"
        return record
    except (OSError, http.client.HTTPException) as exc:
        record["error"] = f"{type(exc).__name__}: {exc}"
        return record
    record["status"] = answer.status
    record["content_type"] = answer.headers.get("content-type", "")
    record["bytes"] = answer.body_bytes
    record["over_cap"] = answer.over_cap
    return record


def _fetch_pages(ev: Evidence, base: str, pages: list[str], cap: int) -> list[str]:
    """Fetch each page with the cap; return the pages a browser may open."""
    start = time.monotonic()
    found = [
        fetch_capped(base, p, cap, min(PAGE_FETCH_TIMEOUT, max(1.0, ev.left()))) for p in pages
    ]
    good = [r["path"] for r in found if r["status"] == 200 and not r["over_cap"]]
    bad = len(found) - len(good)
    ev.step(
        "fetch",
        "passed",
        f"{len(good)} of {len(found)} pages answered 200 under {cap} bytes",
        duration_s=round(time.monotonic() - start, 3),
        cap_bytes=cap,
        pages=found,
        bad=bad,
    )
    return good


def _tool_env(tree: Path, base: str, tools: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    chromium = toolchain.chromium()
    if chromium is not None:
        env["CHROME_PATH"] = str(chromium)
    version = (tools or {}).get("chromium")
    if version:  # the browser's user agent shows its real version (no need to ask it again)
        env["CHROME_VERSION"] = str(version)
    env["BASE_URL"] = base
    env["NODE_ENV"] = env.get("NODE_ENV", "production")
    return env


def playwright_cli(tree: Path) -> Path:
    """Return the Playwright runner the project's specs will import ``@playwright/test`` from.

    Node resolves a spec's imports from the copy's ``node_modules``, then from the one beside
    the copy (oldnew's tools, as the sandbox shows them); the runner must be that same copy
    of the package, or Playwright refuses to load it twice.
    """
    for modules in (tree / "node_modules", tree.parent / "node_modules"):
        cli = modules / "@playwright" / "test" / "cli.js"
        if cli.is_file():
            return cli
    return toolchain.node_modules() / "@playwright" / "test" / "cli.js"


def _run_tool(
    argv: list[str], *, cwd: Path, env: dict[str, str], log: Path, timeout: float
) -> tuple[int | None, float]:
    """Run one tool with its own timeout; return (exit code or None when stopped, seconds)."""
    start = time.monotonic()
    with open(log, "ab") as out:
        proc = subprocess.Popen(  # nosec B603 - oldnew's own tool, fixed argv
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        code: int | None = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        code = None
    stop_tree(proc.pid)
    proc.wait()
    return code, round(time.monotonic() - start, 3)


def e2e_specs(tree: Path) -> list[str]:
    """Return the spec files of ``tree/e2e`` Playwright runs (relative to ``tree``)."""
    folder = tree / "e2e"
    if not folder.is_dir():
        return []
    return sorted(
        str(p.relative_to(tree))
        for p in folder.rglob("*")
        if p.is_file() and SPEC_NAME.search(p.name) and "node_modules" not in p.parts
    )


def chromium_cannot_start(binary: str, why: str) -> str:
    """Return the reason a browser step did not run: the binary, what it said, the fix."""
    said = why.strip().removeprefix("Error: ").strip()
    return f"Chromium could not start ({binary}): {said[:300]}: {CHROMIUM_FIX}"


def launch_failure(report: dict[str, Any], binary: str = "") -> str | None:
    """Return the first line of a report's ``browserType.launch`` error: Chromium never started.

    That is: no test passed, and every error and failed test is that launch (of ``binary``,
    when given: Playwright names what it launched). A project's own test that launches a
    browser of its own fails with the same words, but then the fixtures' browser started and
    some test passed, another error is in the list, or another binary is named.
    """
    errors: list[str] = [str(e.get("message", e)) for e in report.get("errors") or []]
    passed = False

    def walk(suite: dict[str, Any]) -> None:
        nonlocal passed
        for spec in suite.get("specs") or []:
            for test in spec.get("tests") or []:
                if test.get("status") == "expected":
                    passed = True
                for result in test.get("results") or []:
                    if result.get("status") not in ("passed", "skipped"):
                        errors.append(str((result.get("error") or {}).get("message", "")))
        for child in suite.get("suites") or []:
            walk(child)

    for suite in report.get("suites") or []:
        walk(suite)
    if passed or not errors or not all(_LAUNCH.search(e) and binary in e for e in errors):
        return None
    first = next((line for line in errors[0].splitlines() if _LAUNCH.search(line)), errors[0])
    return _strip_ansi(first).strip()


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)


def _e2e(ev: Evidence, tree: Path, out: Path, env: dict[str, str], test_s: float) -> None:
    missing = toolchain.missing("e2e")
    if missing:
        ev.step("e2e", "not_run", missing, missing=True)
        return
    specs = e2e_specs(tree)
    if not specs:
        ev.step(
            "e2e",
            "failed",
            "the project has no browser tests: write Playwright specs in e2e/ (e2e/*.spec.ts, "
            "importing test and expect from '@playwright/test'; page.goto('/') uses the "
            "started app)",
            no_tests=True,
        )
        return
    report = out / "e2e.json"
    node = str(toolchain.node())
    cli = playwright_cli(tree)
    argv = [node, str(cli), "test", "--config", str(toolchain.script("playwright.config.mjs"))]
    step_env = {
        **env,
        "E2E_DIR": str(tree / "e2e"),
        "PLAYWRIGHT_JSON_OUTPUT_NAME": str(report),
        "E2E_TIMEOUT_MS": str(int(test_s * 1000)),
        "E2E_OUTPUT_DIR": str(out / "e2e-results"),
    }
    timeout = max(1.0, min(STEP_TIMEOUTS["e2e"], ev.left()))
    # Playwright's own overall limit comes first, so its report is still written.
    step_env["E2E_GLOBAL_TIMEOUT_MS"] = str(int(max(1.0, timeout - 10) * 1000))
    code, seconds = _run_tool(argv, cwd=tree, env=step_env, log=out / "e2e.log", timeout=timeout)
    common = {"duration_s": seconds, "exit_code": code, "log": "e2e.log", "specs": specs}
    common["chromium"] = env.get("CHROME_PATH", "")
    if code is None:
        detail = (
            f"the browser tests did not finish within {timeout:g}s and were stopped (a test "
            "that hangs the browser?)"
        )
        ev.step("e2e", "failed", detail, timed_out=True, **common)
    elif not report.is_file():
        ev.step(
            "e2e", "failed", _tail_detail(out / "e2e.log", "Playwright wrote no report"), **common
        )
    elif (launch := _launch_failure(report, env.get("CHROME_PATH", ""))) is not None:
        reason = chromium_cannot_start(env.get("CHROME_PATH", "Chromium"), launch)
        ev.step("e2e", "not_run", reason, missing=True, cannot_start=True, **common)
    else:
        ev.step("e2e", "passed", "the browser tests ran", report=report.name, **common)


def _launch_failure(report: Path, binary: str) -> str | None:
    try:
        data = json.loads(report.read_text(encoding="utf-8", errors="replace"))
    except (OSError, ValueError):
        return None  # the gate says the report does not read
    return launch_failure(data, binary) if isinstance(data, dict) else None


def _cannot_run_reason(log: Path, script: str, binary: str) -> str:
    """Return why a JS step could not run here (exit 3), with the fix, from its one line."""
    lines = [line.strip() for line in log_tail(log, 4000).splitlines() if line.strip()]
    said = next((line for line in reversed(lines) if "could not start" in line), "")
    if said:
        _, _, why = said.partition("): ")
        return chromium_cannot_start(binary, why or said)
    last = lines[-1] if lines else "no output"
    return f"{script} could not run here: {last[:500]}"


def _tail_detail(log: Path, what: str) -> str:
    tail = log_tail(log, 1500).strip()
    return f"{what}: {tail}" if tail else what


def _node_step(
    ev: Evidence,
    name: str,
    tool_step: str,
    script: str,
    pages: list[str],
    base: str,
    out: Path,
    env: dict[str, str],
) -> None:
    missing = toolchain.missing(tool_step)
    if missing:
        ev.step(name, "not_run", missing, missing=True)
        return
    if not pages:
        ev.step(name, "not_run", "skipped: no named page answered 200 under the size cap")
        return
    timeout = max(1.0, min(30.0 + 25.0 * len(pages), ev.left()))
    argv = [str(toolchain.node()), str(toolchain.script(script)), "--base", base]
    argv += ["--pages", ",".join(pages), "--out", str(out)]
    if name == "pages":
        argv += ["--timeout-ms", "15000"]
    log = out / f"{name}.log"
    code, seconds = _run_tool(argv, cwd=out, env=env, log=log, timeout=timeout)
    report = out / f"{name}.json"
    common = {"duration_s": seconds, "exit_code": code, "log": log.name, "pages": pages}
    if code is None:
        detail = f"{script} did not finish within {timeout:g}s and was stopped"
        ev.step(name, "failed", detail, timed_out=True, **common)
    elif code == CANNOT_RUN:
        reason = _cannot_run_reason(log, script, env.get("CHROME_PATH", "Chromium"))
        ev.step(name, "not_run", reason, missing=True, cannot_start=True, **common)
    elif code != 0 or not report.is_file():
        ev.step(
            name, "failed", _tail_detail(log, f"{script} could not run (exit {code})"), **common
        )
    else:
        ev.step(name, "passed", f"{script} ran", report=report.name, **common)


def _load(
    ev: Evidence, base: str, endpoints: list[str], args: argparse.Namespace, env: dict[str, str]
) -> None:
    missing = toolchain.missing("load")
    if missing:
        ev.step("load", "not_run", missing, missing=True)
        return
    if not endpoints:
        ev.step("load", "not_run", "the scope names no API endpoint", endpoints=[])
        return
    start = time.monotonic()
    runs: list[dict[str, Any]] = []
    reports: list[str] = []
    for endpoint in endpoints:
        method, _, path = endpoint.partition(" ")
        record: dict[str, Any] = {"endpoint": endpoint}
        runs.append(record)
        if method not in ("GET", "HEAD") or re.search(r"[:{}<>*]", path):
            why = (
                "needs a request body or parameters oldnew cannot guess"
                if method not in ("GET", "HEAD")
                else "its path has parameters; name a concrete path to load it"
            )
            record |= {"status": "not_run", "detail": f"{endpoint} not loaded: it {why}"}
            continue
        if ev.left() < args.load_seconds + 5:
            record |= {"status": "not_run", "detail": "skipped: the budget ran out"}
            continue
        n = len(reports) + 1
        report = args.out / f"load-{n}.json"
        argv = [str(toolchain.node()), str(toolchain.script("load.mjs")), "--url", base + path]
        argv += ["--method", method, "--duration", f"{args.load_seconds:g}"]
        argv += ["--connections", str(LOAD_CONNECTIONS), "--out", str(report)]
        log = args.out / f"load-{n}.log"
        timeout = min(args.load_seconds + 20, ev.left())
        code, seconds = _run_tool(argv, cwd=args.out, env=env, log=log, timeout=timeout)
        record |= {"duration_s": seconds, "exit_code": code, "log": log.name}
        if code == 0 and report.is_file():
            record |= {"status": "passed", "report": report.name}
            reports.append(report.name)
        else:
            what = "was stopped at its timeout" if code is None else f"could not run (exit {code})"
            record |= {"status": "failed", "detail": _tail_detail(log, f"load.mjs {what}")}
    ran = [r for r in runs if r["status"] == "passed"]
    failed = [r for r in runs if r["status"] == "failed"]
    status = "failed" if failed else "passed" if ran else "not_run"
    detail = f"{len(ran)} of {len(runs)} endpoints loaded"
    duration = round(time.monotonic() - start, 3)
    ev.step("load", status, detail, duration_s=duration, reports=reports, endpoints=runs)


def scan_egress(*logs: Path) -> dict[str, Any]:
    """Return the lines of the logs where the app tried to reach another host than itself."""
    attempts: list[str] = []
    for log in logs:
        text = log_tail(log, 200_000)
        for line in text.splitlines():
            if len(attempts) >= MAX_EGRESS:
                break
            shown = line.strip()[:300]
            if shown in attempts:
                continue
            if any(p.search(line) for p in EGRESS_PATTERNS) or _refused_elsewhere(line):
                attempts.append(shown)
    status = "failed" if attempts else "passed"
    return {"status": status, "detail": f"{len(attempts)} attempts", "attempts": attempts}


def _refused_elsewhere(line: str) -> bool:
    for address, _ in _REFUSED.findall(line):
        if not (address.startswith("127.") or address in ("::1", "localhost", "0.0.0.0")):
            return True
    return False


if __name__ == "__main__":
    sys.exit(main())
