"""The gates on the started app's pages and endpoints, from the web driver's evidence.

``e2e`` (the project's Playwright tests), ``axe`` (serious and critical violations block, the
others are reported), ``screenshots`` (each named page captured, with no uncaught error in
the browser), ``lighthouse`` (each category at least ``Profile.lighthouse_min``; one finding
per failing audit) and ``load`` (p95 and error rate of each GET endpoint against the
profile). The driver's run and its files are :mod:`oldnew.gates.web`'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from oldnew.gates.common import GateRun, Outcome
from oldnew.gates.model import CheckStatus, Diagnostic, not_run
from oldnew.gates.web import (
    CATEGORIES,
    MAX_NODES,
    WebRun,
    broken_outcome,
    driver_run,
    kept,
    page_source,
    settings,
    unrun_outcome,
    web_check,
)
from oldnew.web.driver import chromium_cannot_start, launch_failure

INTERNET_ERRORS = ("ERR_NAME_NOT_RESOLVED", "ERR_INTERNET_DISCONNECTED", "ERR_ADDRESS_UNREACHABLE")
"""Chromium's console errors of a page that loads something from outside the box."""


def gate_e2e(run: GateRun) -> Outcome:
    """Run the project's Playwright tests (``e2e/``) against the started app."""
    web = driver_run(run)
    step = web.step("e2e")
    unrun = unrun_outcome("e2e", step)
    if unrun is not None:
        return unrun
    if step.get("status") == "failed":
        return broken_outcome("e2e", step, web, "e2e")
    report = web.report(step)
    if not isinstance(report, dict):
        return broken_outcome(
            "e2e", {**step, "detail": "Playwright's JSON report does not read"}, web, "e2e"
        )
    binary = str(step.get("chromium") or "")
    launch = launch_failure(report, binary)
    if launch is not None:  # an old driver's run: the browser, not the project, is at fault
        return not_run("e2e", chromium_cannot_start(binary or "Chromium", launch)), []
    diags, counts = e2e_results(report)
    if not any(counts.values()) and not diags:
        why = "no browser test ran: write Playwright specs in e2e/ that visit the named pages"
        diags.append(Diagnostic("e2e", "e2e", 0, why, "no-tests"))
    status: CheckStatus = "failed" if diags or counts["failed"] else "passed"
    summary = f"{counts['passed']} passed, {counts['failed']} failed, {counts['flaky']} flaky"
    if counts["skipped"]:
        summary += f", {counts['skipped']} skipped"
    if counts["hidden"]:
        summary += f", {counts['hidden']} marked to fail"
    files = kept(web, report=step.get("report"), log=step.get("log"))
    return web_check("e2e", status, summary, step, web, **counts, **files), diags


def e2e_findings(report: dict[str, Any]) -> list[Diagnostic]:
    """Return the findings of a Playwright JSON report (see :func:`e2e_results`)."""
    return e2e_results(report)[0]


def e2e_results(report: dict[str, Any]) -> tuple[list[Diagnostic], dict[str, int]]:
    """Return the findings of a Playwright JSON report and its counts.

    A test passes only when it was expected to pass and did (``expectedStatus`` "passed",
    ``status`` "expected"): Playwright also counts as "expected" a ``test.fail()`` that failed.
    Each failed test is a finding (file, line, title, the error); so is each test whose
    expected status is not "passed" (``test.fail()`` hides a failing test); skipped tests
    (``test.skip``, ``test.fixme``) are counted, and are a finding when no test passed.
    Counts: ``passed``, ``failed``, ``flaky``, ``skipped``, ``hidden`` (marked to fail).
    """
    diags: list[Diagnostic] = []
    counts = {"passed": 0, "failed": 0, "flaky": 0, "skipped": 0, "hidden": 0}
    skipped: list[Diagnostic] = []

    def walk(suite: dict[str, Any], titles: list[str]) -> None:
        here = [*titles, suite["title"]] if suite.get("title") else titles
        for spec in suite.get("specs", []):
            file = str(spec.get("file") or suite.get("file") or "e2e")
            file = file if file.startswith("e2e/") else f"e2e/{file}"
            title = " > ".join([*here[1:], str(spec.get("title", "?"))])
            line = int(spec.get("line") or 0)
            for test in spec.get("tests", []):
                expected = str(test.get("expectedStatus") or "passed")
                status = str(test.get("status") or "")
                results = test.get("results") or [{}]
                last = results[-1] if isinstance(results[-1], dict) else {}
                if expected == "skipped" or status == "skipped":
                    counts["skipped"] += 1
                    why = _annotation(test, ("skip", "fixme")) or "test.skip() or test.fixme()"
                    text = f"{title}: skipped ({why}): no browser test passed; make it run"
                    skipped.append(Diagnostic("e2e", file, line, text, "skipped"))
                elif expected != "passed":
                    counts["hidden"] += 1
                    text = (
                        f"{title}: test.fail() hides a failing test: make it pass or delete it "
                        f"(expected to end {expected}, it ended {last.get('status', '?')})"
                    )
                    diags.append(Diagnostic("e2e", file, line, text, "expected-failure"))
                elif status == "expected":
                    counts["passed"] += 1
                elif status == "flaky":
                    counts["flaky"] += 1
                else:
                    counts["failed"] += 1
                    error = (last.get("error") or {}).get("message") or last.get("status", "failed")
                    text = _strip_ansi(str(error)).strip()
                    rule = str(last.get("status") or "failed")
                    diags.append(Diagnostic("e2e", file, line, f"{title}: {text[:1200]}", rule))
        for child in suite.get("suites", []):
            walk(child, here)

    for suite in report.get("suites", []):
        walk(suite, [])
    if counts["passed"] == 0:
        diags += skipped
    for error in report.get("errors", []):
        message = _strip_ansi(str(error.get("message", error)))[:1200]
        diags.append(
            Diagnostic("e2e", "e2e", 0, f"the browser tests could not run: {message}", "error")
        )
    return diags, counts


def _annotation(test: dict[str, Any], kinds: tuple[str, ...]) -> str:
    for note in test.get("annotations") or []:
        if isinstance(note, dict) and note.get("type") in kinds:
            told = str(note.get("description") or "").strip()
            return f"test.{note['type']}()" + (f": {told}" if told else "")
    return ""


def _strip_ansi(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] == "\x1b" and i + 1 < len(text) and text[i + 1] == "[":
            j = i + 2
            while j < len(text) and not text[j].isalpha():
                j += 1
            i = j + 1
            continue
        out.append(text[i])
        i += 1
    return "".join(out)


def _pages_report(run: GateRun, name: str) -> tuple[WebRun, dict[str, Any], Outcome | None]:
    """Return the driver's run, the pages step, and the outcome when it has no usable report."""
    web = driver_run(run)
    step = web.step("pages")
    unrun = unrun_outcome(name, step)
    if unrun is not None:
        return web, step, unrun
    if step.get("status") == "failed":
        return web, step, broken_outcome(name, step, web, ".")
    report = web.report(step)
    if not isinstance(report, dict) or not isinstance(report.get("pages"), list):
        return (
            web,
            step,
            broken_outcome(name, {**step, "detail": "pages.json does not read"}, web, "."),
        )
    return web, report, None


def gate_axe(run: GateRun) -> Outcome:
    """Check each named page with axe-core: serious and critical violations block."""
    web, report, outcome = _pages_report(run, "axe")
    if outcome is not None:
        return outcome
    step = web.step("pages")
    diags, reported = axe_findings(report, run.profile.axe_block, run.tree)
    status: CheckStatus = "failed" if diags else "passed"
    summary = f"{len(diags)} blocking violations ({'/'.join(run.profile.axe_block)}), "
    summary += f"{len(reported)} others reported"
    pages = {
        str(p.get("path")): sum(1 for d in diags if d.message.startswith(f"page {p.get('path')}:"))
        for p in report.get("pages", [])
        if isinstance(p, dict)
    }
    check = web_check(
        "axe",
        status,
        summary,
        step,
        web,
        blocking=len(diags),
        other=len(reported),
        pages=pages,
        reported=reported[:50],
        **kept(web, report=step.get("report")),
    )
    return check, diags


def axe_findings(
    report: dict[str, Any], block: tuple[str, ...], tree: Path
) -> tuple[list[Diagnostic], list[str]]:
    """Return the blocking axe findings and the others (as lines) of a pages.json report."""
    diags: list[Diagnostic] = []
    reported: list[str] = []
    for page in report.get("pages", []):
        route = str(page.get("path", "/"))
        where = page_source(tree, route)
        if page.get("error") and not page.get("axe"):
            why = f"page {route}: it could not be checked with axe: {page['error']}"
            diags.append(Diagnostic("axe", where, 0, why, "page"))
        for violation in page.get("axe") or []:
            impact = str(violation.get("impact") or "minor")
            nodes = violation.get("nodes") or [{}]
            for node in nodes[:MAX_NODES]:
                target = node.get("target")
                selector = ", ".join(map(str, target)) if isinstance(target, list) else str(target)
                summary = " ".join(
                    str(node.get("failureSummary") or violation.get("help", "")).split()
                )
                text = (
                    f"{violation.get('id', '?')} ({impact}): {summary}; element: {selector}; "
                    f"fix: {violation.get('helpUrl', '')}"
                )
                if impact in block:
                    diags.append(
                        Diagnostic(
                            "axe", where, 0, f"page {route}: {text}", str(violation.get("id", ""))
                        )
                    )
                else:
                    reported.append(f"{route}: {text}")
    return diags, reported


def gate_screenshots(run: GateRun) -> Outcome:
    """Keep a screenshot of each named page; a page that throws in the browser fails."""
    web, report, outcome = _pages_report(run, "screenshots")
    if outcome is not None:
        return outcome
    routes = settings(run).targets.pages
    diags, shots, console = screenshot_findings(report, routes, run.tree)
    files: dict[str, str] = {}
    for route, rel in zip(routes, shots, strict=True):
        if rel is None:
            continue
        if not web.has(rel):
            why = f"no screenshot of page {route}: the page step wrote no {rel}"
            diags.append(
                Diagnostic("screenshots", page_source(run.tree, route), 0, why, "screenshot")
            )
        elif (path := web.path(rel)) is not None:
            files[route] = path
    status: CheckStatus = "failed" if diags else "passed"
    captured = sum(1 for rel in shots if web.has(rel))
    summary = f"{captured} of {len(routes)} pages captured, {len(diags)} findings"
    check = web_check(
        "screenshots",
        status,
        summary,
        web.step("pages"),
        web,
        captured=captured,
        files=files,
        console_errors=console[:20],
    )
    return check, diags


def screenshot_findings(
    report: dict[str, Any], routes: tuple[str, ...], tree: Path
) -> tuple[list[Diagnostic], list[str | None], list[str]]:
    """Return the findings of a pages.json report, each route's screenshot, console errors.

    A page with no screenshot, one that threw (``pageerror``) and one that loads something
    from the internet are findings; the other console errors are reported lines.
    """
    pages = {str(p.get("path")): p for p in report.get("pages", []) if isinstance(p, dict)}
    diags: list[Diagnostic] = []
    shots: list[str | None] = []
    console: list[str] = []
    for route in routes:
        page = pages.get(route, {})
        where = page_source(tree, route)
        shot = page.get("screenshot")
        shots.append(str(shot) if shot else None)
        if not shot:
            why = f"no screenshot of page {route}: {page.get('error') or 'the page step missed it'}"
            diags.append(Diagnostic("screenshots", where, 0, why, "screenshot"))
        for error in page.get("page_errors") or []:
            text = " ".join(str(error).split())[:800]
            why = f"page {route} threw in the browser: {text}"
            diags.append(Diagnostic("screenshots", where, 0, why, "pageerror"))
        for error in page.get("console_errors") or []:
            text = " ".join(str(error).split())[:300]
            if any(code in text for code in INTERNET_ERRORS):
                why = f"page {route} loads something from the internet: {text}; serve it itself"
                diags.append(Diagnostic("screenshots", where, 0, why, "egress"))
            else:
                console.append(f"{route}: {text}")
    return diags, shots, console


def gate_lighthouse(run: GateRun) -> Outcome:
    """Score each named page with Lighthouse; a category under the minimum fails, by audit."""
    web = driver_run(run)
    step = web.step("lighthouse")
    unrun = unrun_outcome("lighthouse", step)
    if unrun is not None:
        return unrun
    if step.get("status") == "failed":
        return broken_outcome("lighthouse", step, web, ".")
    report = web.report(step)
    if not isinstance(report, dict) or not isinstance(report.get("pages"), list):
        return broken_outcome(
            "lighthouse", {**step, "detail": "lighthouse.json does not read"}, web, "."
        )
    diags, scores = lighthouse_findings(report, run.profile.lighthouse_min, run.tree)
    reports = {
        str(p.get("path")): path
        for p in report["pages"]
        if isinstance(p, dict) and (path := web.path(p.get("report"))) is not None
    }
    status: CheckStatus = "failed" if diags else "passed"
    shown = "; ".join(
        f"{route} " + " ".join(f"{c} {s if s is not None else '-'}" for c, s in cats.items())
        for route, cats in scores.items()
    )
    summary = f"{shown} (minimum {run.profile.lighthouse_min:g})"
    check = web_check(
        "lighthouse",
        status,
        summary[:600],
        step,
        web,
        scores=scores,
        minimum=run.profile.lighthouse_min,
        reports=reports,
        **kept(web, summary_json=step.get("report")),
    )
    return check, diags


def lighthouse_findings(
    report: dict[str, Any], minimum: float, tree: Path
) -> tuple[list[Diagnostic], dict[str, dict[str, float | None]]]:
    """Return one finding per failing audit of each category under ``minimum`` (0-100)."""
    diags: list[Diagnostic] = []
    scores: dict[str, dict[str, float | None]] = {}
    for page in report.get("pages", []):
        route = str(page.get("path", "/"))
        where = page_source(tree, route)
        raw = page.get("scores") or {}
        cats = {
            c: (round(raw[c] * 100) if isinstance(raw.get(c), int | float) else None)
            for c in CATEGORIES
        }
        scores[route] = cats
        if page.get("error") or not raw:
            why = f"Lighthouse could not score page {route}: {page.get('error') or 'no scores'}"
            diags.append(Diagnostic("lighthouse", where, 0, why, "run"))
            continue
        seen: set[str] = set()
        for category, score in cats.items():
            if score is not None and score >= minimum:
                continue
            audits = [a for a in page.get("audits", []) if category in (a.get("categories") or [])]
            if not audits:
                got = score if score is not None else "nothing"
                why = f"page {route}: {category} scored {got} (minimum {minimum:g})"
                diags.append(Diagnostic("lighthouse", where, 0, why, category))
            for audit in audits:
                audit_id = str(audit.get("id", "?"))
                if audit_id in seen:
                    continue
                seen.add(audit_id)
                description = " ".join(str(audit.get("description", "")).split())[:500]
                text = (
                    f"page {route}, {category} {score} (minimum {minimum:g}): {audit_id}: "
                    f"{audit.get('title', '')}; what to change: {description}"
                )
                diags.append(Diagnostic("lighthouse", where, 0, text, audit_id))
    return diags, scores


def gate_load(run: GateRun) -> Outcome:
    """Load each GET endpoint the scope names for a few seconds: p95 and error rate."""
    web = driver_run(run)
    step = web.step("load")
    if step.get("status") == "not_run" and not step.get("missing") and not step.get("endpoints"):
        detail = str(step.get("detail", ""))
        if not detail.startswith("skipped:"):
            return not_run("load", detail, required=False), []
    unrun = unrun_outcome("load", step)
    if unrun is not None:
        return unrun
    if step.get("status") == "failed" and not step.get("endpoints"):
        return broken_outcome("load", step, web, ".")
    p95_max, rate_max = run.profile.load_p95_ms, run.profile.load_error_rate
    diags: list[Diagnostic] = []
    measured: dict[str, dict[str, Any]] = {}
    skipped: list[str] = []
    for record in step.get("endpoints", []):
        endpoint = str(record.get("endpoint", "?"))
        if record.get("status") == "not_run":
            skipped.append(str(record.get("detail", endpoint)))
            continue
        data = web.report(record)
        if record.get("status") != "passed" or not isinstance(data, dict):
            why = str(record.get("detail") or "its load report does not read")
            diags.append(
                Diagnostic("load", endpoint, 0, f"{endpoint}: the load run failed: {why}", "run")
            )
            continue
        keys = ("requests", "p50_ms", "p95_ms", "p99_ms", "error_rate", "rps")
        measured[endpoint] = {"endpoint": endpoint, **{k: data.get(k) for k in keys}}
        report = web.path(record.get("report"))
        if report is not None:
            measured[endpoint]["report"] = report
        diags += load_findings(endpoint, data, p95_max, rate_max)
    if not measured and not diags:
        return not_run(
            "load", "no endpoint could be loaded: " + "; ".join(skipped), required=False
        ), []
    status: CheckStatus = "failed" if diags else "passed"
    shown = ", ".join(
        f"{e} p95 {m.get('p95_ms')} ms, errors {m.get('error_rate')}" for e, m in measured.items()
    )
    summary = f"{shown} (p95 at most {p95_max:g} ms, errors at most {rate_max:g})"
    endpoints = list(measured.values())
    check = web_check(
        "load", status, summary[:600], step, web, endpoints=endpoints, skipped=skipped
    )
    return check, diags


def load_findings(
    endpoint: str, data: dict[str, Any], p95_max: float, rate_max: float
) -> list[Diagnostic]:
    """Return the findings of one endpoint's load report: p95 and error rate over the limits."""
    diags = []
    p95, rate = float(data.get("p95_ms") or 0), float(data.get("error_rate") or 0)
    requests = int(data.get("requests") or 0)
    if requests == 0:
        why = f"{endpoint}: no request was answered during the load run: it must answer under load"
        return [Diagnostic("load", endpoint, 0, why, "errors")]
    if p95 > p95_max:
        why = (
            f"{endpoint}: p95 latency {p95:.1f} ms over {p95_max:g} ms under {requests} "
            "requests: make the handler faster (no work per request that could be done once, "
            "no blocking call)"
        )
        diags.append(Diagnostic("load", endpoint, 0, why, "p95"))
    if rate > rate_max:
        codes = data.get("status_codes") or {}
        shown = f", status codes {codes}" if codes else ""
        why = (
            f"{endpoint}: {rate:.1%} of {requests} requests failed (errors {data.get('errors')}, "
            f"timeouts {data.get('timeouts')}, non-2xx {data.get('non2xx')}{shown}; at most "
            f"{rate_max:.1%}): it must answer 2xx under load"
        )
        diags.append(Diagnostic("load", endpoint, 0, why, "errors"))
    return diags
