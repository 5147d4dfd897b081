"""The web gates: the app's build per task, and the gates on the running app at a milestone.

``web-build`` (every task of a web project) runs the app's declared build. At a milestone
(``validate_tree(..., milestone=True, web=WebTargets(...))``) the milestone set runs on the
started app: ``web-start`` (it builds, starts on the port it is given, answers 200 on its
health path, serves each named page under the size cap, and never tries to reach the
internet), ``e2e`` (the project's Playwright tests), ``axe`` (serious and critical violations
block), ``screenshots`` (each named page renders, with no uncaught error), ``lighthouse``
(each category at least ``Profile.lighthouse_min``) and ``load`` (p95 and error rate of each
GET endpoint).

All of it is one sandboxed command, :mod:`oldnew.web.driver` (the app and the tools must share
the box's network namespace): the first web gate of a validation runs it, under a lock, and
every web gate reads its output from the box. With ``evidence_dir`` the output (screenshots,
Lighthouse reports, logs) is copied there, and the gates' ``metrics`` name those files by
absolute path; without, only the numbers are kept. A tool that is missing makes its gate not
run, with the command that installs it: never a pass.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oldnew.gates.common import GateRun, Outcome
from oldnew.gates.model import Check, CheckStatus, Diagnostic, not_run
from oldnew.sandbox import RunResult
from oldnew.sandbox.files import UnsafeOutput, read_output
from oldnew.web import toolchain
from oldnew.web.driver import CANNOT_RUN, driver_argv
from oldnew.web.start import AppFailure, find_start
from oldnew.web.targets import WebTargets

TOOLCHAIN = "web"
SETTINGS = "web_settings"
"""The key of :class:`WebSettings` in :attr:`GateRun.artifacts`."""
_RUN = "web_run"
_LOCK = threading.Lock()
MAX_COPY = 64 * 2**20
"""Bytes of the driver's output copied out of the box (screenshots, reports, logs)."""
MAX_FILES = 200
MAX_REPORT = 16 * 2**20
"""Bytes of one step's JSON report the gates read."""
MAX_NODES = 3
"""Elements shown per axe violation."""
_MARGIN = 20.0
"""Seconds the box gives the driver beyond its own budget, to stop the app and write."""
CATEGORIES = ("performance", "accessibility", "best-practices", "seo")
MANIFESTS = ("package.json", "pyproject.toml")


@dataclass(frozen=True)
class WebSettings:
    """What a validation asks of the web gates."""

    milestone: bool = False
    targets: WebTargets = field(default_factory=WebTargets)
    stack: str = ""
    """The scope's stack (``node-web``), for the message when no start is declared."""
    gates: tuple[str, ...] = ()
    """The gates of this validation: the driver runs only the steps they read."""
    evidence_dir: Path | None = None
    """Where the driver's output is kept (None: nothing is kept but the numbers)."""


@dataclass
class WebRun:
    """The driver's run: its ``web.json``, what it wrote, and where that was kept."""

    data: dict[str, Any]
    present: frozenset[str] = frozenset()
    """The regular files the driver wrote (relative to its output folder)."""
    reports: dict[str, bytes] = field(default_factory=dict)
    """The JSON reports at the top of its output folder, read before its sandbox closed."""
    kept: Path | None = None
    """The copy of its output in the validation's evidence, when one was asked for."""
    result: RunResult | None = None
    problem: str = ""
    """Why the driver's evidence could not be had (it did not run, or was stopped)."""

    def step(self, name: str) -> dict[str, Any]:
        """Return a step's record; one the driver never wrote says why."""
        found = self.data.get("steps", {}).get(name)
        if isinstance(found, dict):
            return found
        if self.problem:
            return {"status": "failed", "detail": self.problem}
        return {"status": "not_run", "detail": f"the driver recorded no {name} step"}

    def has(self, rel: str | None) -> bool:
        """Tell whether the driver wrote the regular file ``rel`` (a screenshot, say)."""
        return bool(rel) and os.path.normpath(str(rel)) in self.present

    def path(self, rel: str | None) -> str | None:
        """Return the absolute path of the kept copy of ``rel``; None when it was not kept."""
        if not rel or self.kept is None:
            return None
        path = self.kept / rel
        return str(path) if path.is_file() else None

    def report(self, step: dict[str, Any]) -> Any:
        """Return the parsed JSON report a step names (None when it is missing or unreadable)."""
        raw = self.reports.get(str(step.get("report") or ""))
        try:
            return json.loads(raw) if raw is not None else None
        except ValueError:
            return None


def web_toolchain(tree: Path) -> bool:
    """Tell whether the project declares how it starts (a declaration that does not read too)."""
    try:
        return find_start(tree) is not None
    except AppFailure:
        return True


def settings(run: GateRun) -> WebSettings:
    """Return the validation's web settings (default: a task's, no milestone)."""
    found = run.artifacts.get(SETTINGS)
    return found if isinstance(found, WebSettings) else WebSettings()


# -- running the driver -------------------------------------------------------------------------


def driver_run(run: GateRun) -> WebRun:
    """Return the driver's run of this validation: run it the first time a gate asks."""
    with _LOCK:
        lock = run.artifacts.setdefault("web_lock", threading.Lock())
    with lock:
        found = run.artifacts.get(_RUN)
        if isinstance(found, WebRun):
            return found
        web = _run_driver(run)
        run.artifacts[_RUN] = web
        return web


STEPS_OF = {
    "web-build": ("build",),
    "web-start": ("build", "start"),
    "e2e": ("build", "start", "e2e"),
    "axe": ("build", "start", "pages"),
    "screenshots": ("build", "start", "pages"),
    "lighthouse": ("build", "start", "lighthouse"),
    "load": ("build", "start", "load"),
}
"""The driver's steps each web gate reads."""


def driver_steps(web: WebSettings) -> list[str]:
    """Return the driver's steps this validation needs, in the driver's order."""
    gates = web.gates or (("web-build", *STEPS_OF) if web.milestone else ("web-build",))
    wanted = {step for gate in gates if gate in STEPS_OF for step in STEPS_OF[gate]}
    if not web.milestone:
        wanted &= {"build"}
    return [s for s in ("build", "start", "e2e", "pages", "lighthouse", "load") if s in wanted]


def _run_driver(run: GateRun) -> WebRun:
    """Run the driver in a sandbox of its own.

    The build writes into its copy (``dist/``) while the other gates read theirs, and the app
    may write anywhere it can.
    """
    web = settings(run)
    budget = run.profile.web_budget_s if web.milestone else run.timeout
    with run.new_sandbox(web_tools=True) as box:
        out = box.home / "web"
        out.mkdir(exist_ok=True)
        box.adopt(out)
        argv = driver_argv(*_driver_args(run, web, box.tree, out, budget))
        env = box.env.variables()
        if os.environ.get("OLDNEW_CHROMIUM"):  # the person's choice holds in the box too
            env["OLDNEW_CHROMIUM"] = os.environ["OLDNEW_CHROMIUM"]
        result = box.run(argv, timeout=budget + _MARGIN, env=env)
        kept, problem = None, ""
        if web.evidence_dir is not None and "start" in driver_steps(web):
            kept, problem = web.evidence_dir, copy_out(out, web.evidence_dir)
        present = frozenset(regular_files(out))
        reports: dict[str, bytes] = {}
        for rel in sorted(present):
            if "/" not in rel and rel.endswith(".json"):
                try:
                    raw = read_output(out, rel, max_bytes=MAX_REPORT)
                except UnsafeOutput as exc:
                    problem = problem or f"{rel} cannot be read: {exc}"
                    continue
                if raw is not None:
                    reports[rel] = raw
    try:
        data = json.loads(reports.get("web.json", b"{}"))
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    if result.killed:
        problem = (
            f"the milestone gate set was stopped: {result.killed} (budget {budget:g}s; a step "
            "that hangs, or an app that does not stop?)"
        )
    elif not data:
        problem = problem or (
            f"the web driver wrote no evidence (exit {result.exit_code}): "
            f"{result.output[-800:] or 'no output'}"
        )
    elif data.get("error"):
        problem = f"the web driver crashed (a bug in oldnew): {str(data['error'])[-800:]}"
    return WebRun(data, present, reports, kept, result, problem)


def _driver_args(run: GateRun, web: WebSettings, tree: Path, out: Path, budget: float) -> list[str]:
    profile = run.profile
    argv = ["--tree", str(tree), "--out", str(out), "--budget", f"{budget:g}"]
    argv += ["--steps", ",".join(driver_steps(web)), "--pages", ",".join(web.targets.pages)]
    argv += ["--load-seconds", f"{profile.load_seconds:g}", "--stack", web.stack]
    argv += ["--ready-timeout", f"{profile.web_ready_s:g}"]
    argv += ["--e2e-test-timeout", f"{profile.e2e_test_s:g}"]
    if web.milestone:
        argv += ["--tools", json.dumps(toolchain.versions())]
    if web.targets.endpoints:
        argv += ["--endpoints", ",".join(web.targets.endpoints)]
    return argv


def regular_files(out: Path) -> list[str]:
    """Return the regular files under ``out`` (relative), never following a link."""
    found = []
    for dirpath, dirnames, filenames in os.walk(out):
        dirnames[:] = sorted(d for d in dirnames if not os.path.islink(os.path.join(dirpath, d)))
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            try:
                if stat.S_ISREG(os.lstat(path).st_mode):
                    found.append(os.path.relpath(path, out))
            except OSError:
                continue
    return found


def copy_out(out: Path, dest: Path) -> str:
    """Copy the driver's output out of the box into ``dest`` (made afresh); say what was refused.

    Only regular files, read without following links (the app ran as the same user and could
    have put a link there), at most :data:`MAX_FILES` files and :data:`MAX_COPY` bytes.
    """
    if dest.is_dir() and not dest.is_symlink():
        shutil.rmtree(dest)
    dest.mkdir(parents=True, exist_ok=True)
    total = 0
    refused: list[str] = []
    count = 0
    for dirpath, dirnames, filenames in os.walk(out):
        dirnames[:] = sorted(d for d in dirnames if not os.path.islink(os.path.join(dirpath, d)))
        for name in sorted(filenames):
            rel = os.path.relpath(os.path.join(dirpath, name), out)
            if count >= MAX_FILES or name.endswith(".tmp"):
                continue
            try:
                info = os.lstat(os.path.join(out, rel))
                if not stat.S_ISREG(info.st_mode) or total + info.st_size > MAX_COPY:
                    refused.append(rel)
                    continue
                data = read_output(out, rel, max_bytes=MAX_COPY - total)
            except (OSError, UnsafeOutput):
                refused.append(rel)
                continue
            if data is None:
                continue
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            total += len(data)
            count += 1
    return f"files of the driver's output not kept: {', '.join(refused[:5])}" if refused else ""


def kept(web: WebRun, **files: str | None) -> dict[str, str]:
    """Return ``{name: absolute path}`` of those of the driver's files that were kept."""
    out = {}
    for name, rel in files.items():
        path = web.path(rel)
        if path is not None:
            out[name] = path
    return out


def web_check(
    name: str, status: CheckStatus, summary: str, step: dict[str, Any], web: WebRun, **metrics: Any
) -> Check:
    """Return a web gate's check: the driver's command, the step's time (also in ``metrics``)."""
    argv = web.result.argv if web.result is not None else []
    code = web.result.exit_code if web.result is not None else None
    versions = toolchain.versions() if web.data else {}
    shown = ", ".join(f"{k} {v}" for k, v in sorted(versions.items())) if versions else ""
    duration = float(step.get("duration_s", 0.0) or 0.0)
    return Check(
        name,
        status,
        argv,
        code,
        duration,
        summary,
        shown or "oldnew web driver",
        metrics={"duration_s": duration, **metrics},
    )


def unrun_outcome(name: str, step: dict[str, Any]) -> Outcome | None:
    """Return the outcome of a step that did not run, or None when it ran.

    A step whose tool could not run here (exit 3: Chromium does not start, a tool is missing)
    did not run, whatever status it carries: the fix is the machine's, not the project's.
    """
    if step.get("status") == "failed" and step.get("exit_code") == CANNOT_RUN:
        return not_run(name, f"could not run here: {step.get('detail', '')}"), []
    if step.get("status") != "not_run":
        return None
    detail = str(step.get("detail", ""))
    if step.get("missing"):
        return not_run(name, detail), []  # a tool to install: never a pass
    if detail.startswith("skipped:"):
        return not_run(name, detail), []
    return not_run(name, f"not run: {detail}"), []


def broken_outcome(name: str, step: dict[str, Any], web: WebRun, file: str) -> Outcome:
    """Return the failed outcome of a step that could not finish (timeout, crash, no report)."""
    detail = str(step.get("detail") or web.problem or "the step did not finish")
    check = web_check(name, "failed", detail[:300], step, web, **kept(web, log=step.get("log")))
    return check, [Diagnostic(name, file, 0, detail[:2000], "step")]


def manifest(run: GateRun) -> str:
    """Return where the app's start is declared (for findings about starting it)."""
    for name in MANIFESTS:
        if (run.tree / name).is_file():
            return name
    return "."


PAGE_FILES = (
    "{slug}.html",
    "{slug}/index.html",
    "public/{slug}.html",
    "public/{slug}/index.html",
    "static/{slug}.html",
    "templates/{slug}.html",
    "src/pages/{slug}.tsx",
    "src/pages/{slug}.ts",
    "src/pages/{slug}.jsx",
    "src/pages/{slug}.js",
    "pages/{slug}.tsx",
    "pages/{slug}.js",
    "src/{slug}.html",
    "app/templates/{slug}.html",
    "src/routes/{slug}.tsx",
    "src/views/{slug}.tsx",
    "src/{slug}.tsx",
    "src/{slug}.ts",
)


def page_source(tree: Path, route: str) -> str:
    """Return the project file a page's route most likely comes from, else the route itself."""
    slug = route.strip("/").split("?", 1)[0] or "index"
    names = dict.fromkeys([slug, slug.capitalize(), slug.replace("-", "_")])
    for pattern in PAGE_FILES:
        for name in names:
            rel = pattern.format(slug=name)
            if (tree / rel).is_file():
                return rel
    return route


# -- the gates ----------------------------------------------------------------------------------


def gate_web_build(run: GateRun) -> Outcome:
    """Run the app's declared build (every task of a web project)."""
    if not settings(run).milestone:
        try:
            spec = find_start(run.tree)
        except AppFailure:
            spec = None  # the driver says what is wrong with it
        if spec is not None and spec.build is None:
            return not_run("web-build", "the project declares no build", required=False), []
    web = driver_run(run)
    step = web.step("build")
    if step.get("status") == "not_run":
        return not_run("web-build", str(step.get("detail", "")), required=False), []
    if step.get("status") == "failed":
        failure = step.get("failure") or {}
        if failure.get("kind") == "NoStartCommand":
            # Named by web-start, which needs it; a build check has nothing to build.
            return not_run("web-build", "skipped: " + str(step.get("detail", ""))), []
        return _failure("web-build", step, web, manifest(run))
    summary = f"{step.get('command', 'the build')} passed"
    return web_check(
        "web-build", "passed", summary, step, web, **kept(web, log=step.get("log"))
    ), []


def _failure(name: str, step: dict[str, Any], web: WebRun, file: str) -> Outcome:
    """Return the failed outcome of an app that did not build or come up: its own output."""
    failure = step.get("failure") or {}
    message = str(failure.get("message") or step.get("detail") or web.problem)
    tail = str(failure.get("log_tail") or "").strip()
    text = f"{message}\nits output ends with:\n{tail[-2000:]}" if tail else message
    kind = str(failure.get("kind") or "step")
    files = kept(web, web_json="web.json", log=step.get("log"))
    check = web_check(name, "failed", message[:300], step, web, failure=kind, **files)
    return check, [Diagnostic(name, file, 0, text, kind)]


def gate_web_start(run: GateRun) -> Outcome:
    """Start the app: port, readiness, each named page under the size cap, no internet."""
    web = driver_run(run)
    step, build = web.step("start"), web.step("build")
    if step.get("status") == "not_run":
        if build.get("status") == "failed":
            check = not_run("web-start", "skipped: web-build did not pass")
        else:
            check = (unrun_outcome("web-start", step) or (not_run("web-start", "not run"), []))[0]
        check.metrics = kept(web, web_json="web.json", build_log=build.get("log"))
        return check, []
    if step.get("status") == "failed":
        return _failure("web-start", step, web, manifest(run))
    diags = _page_findings(run, web) + _egress_findings(web)
    exited = step.get("exited")
    if isinstance(exited, dict):
        tail = str(exited.get("log_tail") or "").strip()[-2000:]
        why = (
            f"the server exited (code {exited.get('code')}) while the gates ran, after it "
            f"had answered: it must keep serving; its output ends with:\n{tail}"
        )
        diags.append(Diagnostic("web-start", manifest(run), 0, why, "ServerExited"))
    files = kept(web, web_json="web.json", log=step.get("log"), build_log=build.get("log"))
    status: CheckStatus = "failed" if diags else "passed"
    summary = f"{step.get('detail', 'started')}; {len(diags)} findings"
    spec = web.data.get("spec") or {}
    check = web_check(
        "web-start",
        status,
        summary,
        step,
        web,
        port=step.get("port"),
        ready_s=step.get("ready_s"),
        stack=spec.get("stack"),
        start=spec.get("start"),
        targets=settings(run).targets.to_dict(),
        **files,
    )
    return check, diags


def _page_findings(run: GateRun, web: WebRun) -> list[Diagnostic]:
    fetch = web.step("fetch")
    cap = int(fetch.get("cap_bytes") or 0)
    diags = []
    for page in fetch.get("pages", []):
        route = str(page.get("path", "/"))
        where = page_source(run.tree, route)
        if page.get("error"):
            why = f"GET {route} did not answer: {page['error']}; the scope names this page"
            diags.append(Diagnostic("web-start", where, 0, why, "page-unreachable"))
        elif page.get("over_cap"):
            why = (
                f"page {route} is over {cap // 2**20} MB (more than {cap} bytes): no browser check "
                "ran on it; serve a smaller page (paginate, load data on demand)"
            )
            diags.append(Diagnostic("web-start", where, 0, why, "page-size"))
        elif page.get("status") != 200:
            why = (
                f"GET {route} answered HTTP {page.get('status')}: the scope names this page; "
                "serve it with HTTP 200"
            )
            diags.append(Diagnostic("web-start", where, 0, why, "page-status"))
    return diags


def _egress_findings(web: WebRun) -> list[Diagnostic]:
    egress = web.step("egress")
    return [
        Diagnostic(
            "web-start",
            ".",
            0,
            f"the app tried to reach the internet: {line}; it runs with no network (loopback "
            "only): serve its assets itself and call no outside service at run time (fake it "
            "in tests)",
            "egress",
        )
        for line in egress.get("attempts", [])
    ]
