"""Milestones in the run's graph: main checked when a phase is done, tagged, previewed, or fixed.

Graph logic with fast doubles: the milestone gate set (the app started, axe, Lighthouse, ...) is
a stand-in that reads the delivered page, so that these tests show the routing (a failing
milestone becomes a fix task validated with the same gates, its fixer gets the findings, the
preview starts before the later phase runs) without a browser. The web gates themselves run
for real in tests/test_web_gates.py and the web example's end-to-end test.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from oldnew import milestones
from oldnew import report as report_module
from oldnew.gates.browser import axe_findings, lighthouse_findings
from oldnew.gates.model import Check, Diagnostic, ValidationResult
from oldnew.nodes import checks, common, deliver, milestone
from oldnew.runs import start_run
from oldnew.safegit import run_git
from oldnew.schemas import Plan

pytestmark = pytest.mark.usefixtures("smoke_gates")  # graph logic, not the gates

PAGE = "app/index.html"


def _page(alt: bool, description: bool = False) -> str:
    img = '<img src="data:," alt="logo">' if alt else '<img src="data:,">'
    meta = '<meta name="description" content="notes">' if description else ""
    html = f"<!doctype html><html lang=en>{meta}<main>{img}</main></html>"
    return f"FILE: {PAGE}\n```html\n{html}\n```\n"


def _module(name: str) -> str:
    return (
        f"FILE: {name}.py\n```python\ndef {name}() -> str:\n    return {name!r}\n```\n"
        f"FILE: tests/test_{name}.py\n```python\nfrom {name} import {name}\n\n\n"
        f"def test_{name}() -> None:\n    assert {name}() == {name!r}\n```\n"
    )


def _task(tid: str, phase: str, files: list[str], deps: list[str] | None = None) -> dict[str, Any]:
    return {
        "id": tid,
        "title": f"part {tid}",
        "description": f"part {tid}",
        "depends_on": deps or [],
        "files": files,
        "requirement_ids": ["F1", "P1"] if phase == "mvp" else ["F1"],
        "phase": phase,
    }


SCOPE = {
    "title": "site",
    "summary": "a page",
    "stack": "python-web",
    "features": [{"id": "F1", "title": "a page"}],
    "pages": [{"id": "P1", "title": "home", "route": "/"}],
}
PHASES = [
    {"name": "mvp", "milestone": "the home page is served"},
    {"name": "enhanced", "milestone": "e() works"},
]


def _model(tmp_path: Path, replies: list[dict[str, Any]], phases: bool = True) -> str:
    tasks = [
        _task("M", "mvp", [PAGE, "m.py", "tests/test_m.py"]),
        _task("E", "enhanced", ["e.py", "tests/test_e.py"], ["M"]),
    ]
    if not phases:
        tasks = [{k: v for k, v in t.items() if k != "phase"} for t in tasks]
    plan: dict[str, Any] = {"tasks": tasks, **({"phases": PHASES} if phases else {})}
    head = [
        {"role": "planner", "when": ["return a Scope"], "structured": SCOPE},
        {"role": "planner", "when": ["into a Plan"], "structured": plan},
        {"role": "coder", "when": ["TASK E:"], "text": _module("e")},
    ]
    path = tmp_path / "transcript.json"
    path.write_text(json.dumps({"reply": head + replies}))
    return f"scripted:{path}"


FIXTURES = Path(__file__).parent / "fixtures" / "web"


def _report(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


class Gates:
    """The milestone gate set as a double that parses real reports with the gates' parsers.

    axe: the bad pages report (image-alt, critical, among others) while the page has an image
    without alt, the good one after. With ``lighthouse``: the bad Lighthouse report (seo 64,
    meta-description among its failing audits) while the page has no meta description.
    Every other validation runs the real (smoke) gates. It records what each call asked for.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, lighthouse: bool = False) -> None:
        self.real = checks.run_gates
        self.calls: list[dict[str, Any]] = []
        self.lighthouse = lighthouse
        for module in (checks, milestone, deliver):
            monkeypatch.setattr(module, "run_gates", self)

    def __call__(self, ctx: Any, tree: Path, *args: Any, **kw: Any) -> ValidationResult:
        web = kw.pop("web", None)
        on = kw.pop("milestone", False)
        result = self.real(ctx, tree, *args, **kw)
        self.calls.append({"tree": str(tree), "milestone": on, "web": web})
        if not on:
            return result
        page = (tree / PAGE).read_text() if (tree / PAGE).is_file() else ""
        pages = _report("pages-good.json" if 'alt="' in page else "pages-bad.json")
        found, _ = axe_findings(pages, ("serious", "critical"), tree)
        self._add(result, "axe", found)
        if self.lighthouse:
            good = 'name="description"' in page
            report = _report("lighthouse-good.json" if good else "lighthouse-bad.json")
            report["pages"] = report["pages"][:1]  # the home page only
            found, _ = lighthouse_findings(report, 90, tree)
            self._add(result, "lighthouse", found)
        return result

    @staticmethod
    def _add(result: ValidationResult, gate: str, found: list[Diagnostic]) -> None:
        status = "failed" if found else "passed"
        result.checks.append(Check(gate, status, [], 0, 0.1, f"{len(found)} findings"))
        result.diagnostics += found


class Previews:
    """The preview as a double: records each start, serves the last one started (the real
    one: tests/test_preview.py)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.started: list[str] = []
        self.serving: Any = None
        monkeypatch.setattr(common, "start_preview", self.start)
        for module in (common, report_module):
            monkeypatch.setattr(module, "preview_status", lambda root: self.serving)

    def start(self, root: Path, *, tree: Path, commit: str, port: int, env: Any) -> Any:
        self.started.append(commit)
        self.serving = type("P", (), {"url": f"http://localhost:{port}", "commit": commit})()
        return self.serving


def _events(ws: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (ws / ".oldnew" / "events.jsonl").read_text().splitlines()]


def _scope(tmp_path: Path) -> Path:
    path = tmp_path / "scope.md"
    path.write_text("A home page, and more later.\n")
    return path


def test_a_failing_mvp_milestone_becomes_a_fix_task_the_fixer_repairs_then_previewed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gates, previews = Gates(monkeypatch), Previews(monkeypatch)
    replies = [
        {"role": "coder", "when": ["TASK M:"], "text": _page(alt=False) + _module("m")},
        # The fix task's coder misses it; its validation (the milestone's gates) catches it
        # and the fixer, given the axe finding, repairs it.
        {"role": "coder", "when": ["TASK mvp-fix1:", "image-alt"], "text": _module("m")},
        {"role": "fixer", "when": ["TASK mvp-fix1:", "image-alt"], "text": _page(alt=True)},
    ]
    ws = tmp_path / "ws"
    out = asyncio.run(start_run(_scope(tmp_path), ws, context={"model": _model(tmp_path, replies)}))
    assert out.status == "delivered", out
    statuses = {t["id"]: t["status"] for t in out.tasks}
    assert statuses == {"M": "done", "E": "done", "mvp-fix1": "done"}
    fix = next(t for t in out.tasks if t["id"] == "mvp-fix1")
    assert fix["fix_rounds"] == 1  # the fixer, not the coder, repaired it
    # The fix task was validated with the milestone's gate set, on the scope's pages.
    in_fix = [c for c in gates.calls if "mvp-fix1" in c["tree"]]
    assert in_fix and all(c["milestone"] for c in in_fix)
    assert in_fix[0]["web"].pages == ("/",)
    # M's own validation ran the cheap gates only.
    assert not any(c["milestone"] for c in gates.calls if c["tree"].endswith("/M"))
    events = _events(ws)
    order = [(e.get("event"), e.get("task")) for e in events]
    fixing = order.index(("milestone_fixing", None))
    reached = order.index(("milestone_reached", None))
    e_started = order.index(("task_started", "E"))
    assert fixing < reached < e_started  # the later phase waited for the MVP
    reached_event = events[reached]
    assert reached_event["tag"] == "mvp" and reached_event["preview"] == "http://localhost:3000"
    tag = run_git("rev-parse", "mvp^{commit}", cwd=ws).stdout.strip()
    assert tag == reached_event["commit"]
    assert previews.started[0] == reached_event["commit"]
    assert out.milestones["mvp"]["status"] == "reached"
    assert out.milestones["enhanced"]["status"] == "reached"
    assert run_git("rev-parse", "enhanced^{commit}", cwd=ws).returncode == 0
    report = json.loads((ws / ".oldnew" / "report.json").read_text())
    assert report["web"]["preview"] == "http://localhost:3000"
    assert report["web"]["milestones"]["mvp"]["fix_rounds"] == 1
    assert "Preview: http://localhost:3000" in (ws / ".oldnew" / "report.md").read_text()


def test_lighthouse_under_the_threshold_opens_a_fix_task_with_the_failing_audits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Gates(monkeypatch, lighthouse=True), Previews(monkeypatch)
    replies = [
        {"role": "coder", "when": ["TASK M:"], "text": _page(alt=True) + _module("m")},
        # Matched only when the fix task's prompt names the failing audit and its score.
        {
            "role": "coder",
            "when": ["TASK mvp-fix1:", "meta-description", "seo 64 (minimum 90)", "MVP milestone"],
            "text": _page(alt=True, description=True),
        },
    ]
    ws = tmp_path / "ws"
    model = _model(tmp_path, replies, phases=False)
    out = asyncio.run(start_run(_scope(tmp_path), ws, context={"model": model}))
    assert out.status == "delivered", out
    fixing = [e for e in _events(ws) if e.get("event") == "milestone_fixing"]
    assert [e["fix_task"] for e in fixing] == ["mvp-fix1"]
    assert out.milestones["mvp"]["status"] == "reached"
    assert out.milestones["mvp"]["fix_rounds"] == 1


def test_a_milestone_that_stays_failing_is_reported_after_its_fix_tasks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Gates(monkeypatch), Previews(monkeypatch)
    replies = [
        {"role": "coder", "when": ["TASK M:"], "text": _page(alt=False) + _module("m")},
        {"role": "coder", "when": ["Fix what the MVP"], "text": _module("m")},
        {"role": "fixer", "when": ["Fix what the MVP"], "text": _module("m")},
    ]
    ws = tmp_path / "ws"
    context = {"model": _model(tmp_path, replies, phases=False), "milestone_fixes": 1}
    context["max_fix_rounds"] = 1
    out = asyncio.run(start_run(_scope(tmp_path), ws, context=context))
    # The fix task could not pass its gates: a person is asked (an MVP task is critical);
    # nothing is delivered as passing, and no mvp tag was made.
    assert out.status in ("waiting", "blocked")
    assert run_git("rev-parse", "-q", "--verify", "mvp", cwd=ws).returncode != 0


def test_due_and_hold_follow_the_phases() -> None:
    plan = {
        "tasks": [
            _task("M", "mvp", ["m.py"]),
            _task("E", "enhanced", ["e.py"], ["M"]),
        ],
        "phases": PHASES,
    }
    state: dict[str, Any] = {"plan": plan, "scope": SCOPE, "tasks": {"M": {"status": "running"}}}
    parsed = Plan.model_validate(plan)
    assert milestones.milestones_of(parsed, state) == [("mvp", ["M"]), ("enhanced", ["M", "E"])]
    assert milestones.due(state) is None
    assert milestones.holds_later_phases(state, parsed)
    state["tasks"] = {"M": {"status": "done"}, "E": {"status": "pending"}}
    assert milestones.due(state) == "mvp"
    state["milestones"] = {"mvp": {"status": "reached", "tasks": ["M"], "done": ["M"]}}
    assert milestones.due(state) is None
    assert not milestones.holds_later_phases(state, parsed)
    state["tasks"]["E"] = {"status": "done"}
    assert milestones.due(state) == "enhanced"
    # A task that ended without being done settles its milestone (failed): nothing waits.
    state = {**state, "milestones": {}, "tasks": {"M": {"status": "blocked"}}}
    assert milestones.due(state) == "mvp"
    assert milestones.ended(state, ["M"]) == ([], ["M"])
    state["milestones"] = {"mvp": {"status": "failed", "tasks": ["M"], "done": []}}
    assert milestones.due(state) is None and not milestones.holds_later_phases(state, parsed)
    # ...and is checked again once that task is done after all (a person answered).
    state["tasks"] = {"M": {"status": "done"}, "E": {"status": "pending"}}
    assert milestones.due(state) == "mvp"
    # A task without a phase (feedback added it) counts in the last phase, not the MVP.
    late = {**plan, "tasks": [*plan["tasks"], {**_task("F", "mvp", ["f.py"]), "phase": None}]}
    assert milestones.milestones_of(Plan.model_validate(late), state)[0] == ("mvp", ["M"])
    # Not a web app: no milestone, and its later phases run beside the MVP.
    lib = {**state, "scope": {**SCOPE, "stack": "python"}}
    assert milestones.due(lib) is None and not milestones.holds_later_phases(lib, parsed)
    # A web app's unphased plan is its MVP; its fix task gets no phase (the plan stays flat)
    # but serves the same requirements (as critical as they are).
    flat = Plan.model_validate({"tasks": [{**_task("M", "mvp", ["m.py"]), "phase": None}]})
    assert milestones.milestones_of(flat, state) == [("mvp", ["M"])]
    fix = milestones.fix_task(flat, "mvp", ["M"], 1, ["x"], ["m.py"])
    assert fix.phase is None and fix.milestone == "mvp" and fix.requirement_ids == ["F1", "P1"]
