"""Feedback during and after a run: change requests, bug reports, features, clarifications."""

from __future__ import annotations

import asyncio
import json
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLE
from typer.testing import CliRunner

from oldnew.cli import app
from oldnew.errors import UsageError, WorkspaceError
from oldnew.gates.verify import verify_workspace
from oldnew.planning.trace import run_traceability
from oldnew.runs import open_graph, resume_run, start_run, submit_feedback
from oldnew.workspace import Workspace

pytestmark = pytest.mark.usefixtures("smoke_gates")  # graph logic, not the gates

EXAMPLE_REPLIES: list[dict[str, Any]] = tomllib.loads(
    (EXAMPLE / "transcript.toml").read_text(encoding="utf-8")
)["reply"]
FIXED_STORAGE = next(r for r in EXAMPLE_REPLIES if r["role"] == "fixer")["text"].split("FILE:")[1]

SORTED = "Write the JSON file with sorted keys, so that it diffs cleanly in git."
REVISED_T2 = (
    "Storage now writes sorted keys.\n\nFILE:"
    + FIXED_STORAGE.replace("indent=2)", "indent=2, sort_keys=True)")
    + """
FILE: tests/test_storage_sorted.py
```python
from todo import storage


def test_saved_keys_are_sorted(tmp_path):
    path = tmp_path / "todo.json"
    storage.save(path, [{"title": "a", "id": 1, "done": False}])
    text = path.read_text()
    assert text.index('"done"') < text.index('"id"') < text.index('"title"')
```
"""
)

STATS = "Add a stats function that counts open and finished to-dos."
STATS_CODE = """The stats module.

FILE: todo/stats.py
```python
\"\"\"Counts of open and finished to-dos.\"\"\"

from todo.model import TodoList


def stats(todos: TodoList) -> dict[str, int]:
    \"\"\"Return how many to-dos are open and how many are done.\"\"\"
    done = sum(1 for i in todos.items if i.done)
    return {"open": len(todos.items) - done, "done": done}
```

FILE: tests/test_stats.py
```python
from todo.model import TodoList
from todo.stats import stats


def test_counts_open_and_done():
    todos = TodoList()
    todos.add("a")
    todos.add("b")
    todos.complete(2)
    assert stats(todos) == {"open": 1, "done": 1}
```
"""

MODEL = next(r["text"] for r in EXAMPLE_REPLIES if "FILE: todo/model.py" in r.get("text", ""))
MODEL = MODEL.split("FILE: todo/model.py\n```python\n", 1)[1].split("\n```", 1)[0]
# The fix adds a module and calls it where the bug is: add() in the existing todo/model.py.
LIMITED = MODEL.replace(
    "from dataclasses import asdict, dataclass\n",
    "from dataclasses import asdict, dataclass\n\nfrom todo.limits import check_title\n",
).replace(
    '            raise ValueError("a to-do needs a title")\n',
    '            raise ValueError("a to-do needs a title")\n        title = check_title(title)\n',
)
BUG = "todo add with a 300-character title is accepted; titles over 200 characters must fail."
BUG_FIX = f"""Titles are now capped at 200 characters, with a test that reproduces the report.

FILE: todo/model.py
```python
{LIMITED}
```

FILE: todo/limits.py
```python
\"\"\"Limits on what a to-do may hold.\"\"\"

MAX_TITLE = 200


def check_title(title: str) -> str:
    \"\"\"Return the title, or raise ValueError when it is longer than MAX_TITLE.\"\"\"
    if len(title) > MAX_TITLE:
        raise ValueError(f"a title has at most {{MAX_TITLE}} characters")
    return title
```

FILE: tests/test_limits.py
```python
import pytest

from todo.limits import check_title
from todo.model import TodoList


def test_long_title_is_rejected():
    with pytest.raises(ValueError):
        TodoList().add("x" * 300)


def test_short_title_is_kept():
    assert check_title("milk") == "milk"
```
"""

CLARIFY = "Dates in any future output are ISO 8601, in UTC."

CAP = "todo add keeps a 500-character title; titles must be capped at 200 characters."
CAPPED = MODEL.replace(
    '            raise ValueError("a to-do needs a title")\n',
    '            raise ValueError("a to-do needs a title")\n'
    "        if len(title) > 200:\n"
    '            raise ValueError("a title has at most 200 characters")\n',
)
# The coder's test checks what already worked: it passes before the fix, reproducing nothing.
CAP_FIX = f"""Titles are capped at 200 characters.

FILE: todo/model.py
```python
{CAPPED}
```

FILE: tests/test_title_cap.py
```python
import pytest

from todo.model import TodoList


def test_blank_title_is_rejected():
    with pytest.raises(ValueError):
        TodoList().add("   ")
```
"""
CAP_TEST = """The new test now reproduces the report.

FILE: tests/test_title_cap.py
```python
import pytest

from todo.model import TodoList


def test_long_title_is_rejected():
    with pytest.raises(ValueError):
        TodoList().add("x" * 500)
```
"""


def _triage(when: str, **structured: Any) -> dict[str, Any]:
    return {"role": "planner", "when": ["FEEDBACK fb", when], "structured": structured}


FEEDBACK_REPLIES: list[dict[str, Any]] = [
    _triage(
        SORTED,
        kind="change_request",
        summary="sorted keys in the JSON file",
        affected_tasks=["T2"],
        change="save() writes the JSON with sort_keys=True; add a test for it.",
    ),
    {"role": "coder", "when": ["TASK T2-r1:", "sort_keys=True"], "text": REVISED_T2},
    _triage(
        STATS,
        kind="feature",
        summary="counts of open and finished to-dos",
        features=[{"id": "F5", "title": "Counts of open and finished to-dos"}],
        tasks=[
            {
                "id": "T4",
                "title": "Stats",
                "description": "todo/stats.py: stats(todos) returns open and done counts.",
                "depends_on": ["T1"],
                "files": ["todo/stats.py", "tests/test_stats.py"],
                "requirement_ids": ["F5"],
            }
        ],
    ),
    {"role": "coder", "when": ["TASK T4:"], "text": STATS_CODE},
    _triage(
        BUG,
        kind="bug_report",
        summary="over-long titles are accepted",
        affected_tasks=["T1"],
        change="add() must reject titles longer than 200 characters.",
    ),
    {"role": "coder", "when": ["TASK fb1-fix1:", "FAILING EVIDENCE", BUG], "text": BUG_FIX},
    _triage(
        CAP,
        kind="bug_report",
        summary="long titles are kept",
        affected_tasks=["T1"],
        change="add() must reject titles longer than 200 characters.",
    ),
    {"role": "coder", "when": ["TASK fb1-fix1:", "FAILING EVIDENCE", CAP], "text": CAP_FIX},
    {"role": "fixer", "when": ["TASK fb1-fix1:", "does not reproduce the bug"], "text": CAP_TEST},
    _triage(CLARIFY, kind="clarification", summary="dates are ISO 8601 in UTC"),
    # Triage that never fits the schema: the run asks a person instead of crashing.
    _triage("GARBLED", kind="complaint", summary="?"),
]


def _model(tmp_path: Path) -> str:
    path = tmp_path / "transcript.json"
    path.write_text(json.dumps({"reply": FEEDBACK_REPLIES + EXAMPLE_REPLIES}))
    return f"scripted:{path}"


def _delivered(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    scope = EXAMPLE / "scope.md"
    out = asyncio.run(start_run(scope, ws, context={"model": _model(tmp_path)}))
    assert out.status == "waiting"
    out = asyncio.run(resume_run(ws, answers={"T3-q1": "2"}))
    assert out.status == "delivered"
    return ws


def _git_log(ws: Path) -> list[str]:
    out = subprocess.run(
        ["git", "log", "--format=%H %s", "main"], cwd=ws, capture_output=True, text=True, check=True
    )
    return out.stdout.splitlines()


def _events(ws: Path) -> list[dict[str, Any]]:
    lines = (ws / ".oldnew" / "events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _started(events: list[dict[str, Any]]) -> list[str]:
    return [e["task"] for e in events if e.get("event") == "task_started"]


def _values(ws: Path) -> dict[str, Any]:
    async def read() -> dict[str, Any]:
        w = Workspace.open(ws)
        run_id = str((w.run_info() or {})["run_id"])
        async with open_graph(w) as graph:
            snap = await graph.aget_state({"configurable": {"thread_id": run_id}})
            return dict(snap.values)

    return asyncio.run(read())


def _report(ws: Path) -> tuple[dict[str, Any], str]:
    meta = ws / ".oldnew"
    return json.loads((meta / "report.json").read_text()), (meta / "report.md").read_text()


def test_change_request_after_delivery_redelivers_only_the_affected_task(tmp_path: Path) -> None:
    ws = _delivered(tmp_path)
    log_before, events_before = _git_log(ws), len(_events(ws))
    t2_commit = next(line.split()[0] for line in log_before if "JSON storage" in line)

    out = asyncio.run(submit_feedback(ws, f"  {SORTED}\n"))

    assert out.status == "delivered"
    tasks = {t["id"]: t for t in out.tasks}
    assert tasks["T2"]["status"] == "done" and tasks["T2"]["superseded_by"] == "T2-r1"
    assert tasks["T2-r1"]["status"] == "done"
    log_after = _git_log(ws)
    assert log_after[1:] == log_before  # earlier commits untouched, exactly one new commit
    assert log_after[0].split()[0] == tasks["T2-r1"]["commit"]
    assert _started(_events(ws)[events_before:]) == ["T2-r1"]
    assert "sort_keys=True" in (ws / "todo" / "storage.py").read_text()
    plan = {t["id"]: t for t in _values(ws)["plan"]["tasks"]}
    assert plan["T2-r1"]["depends_on"] == ["T2", "T3"]  # after T2 and what built on it
    report, md = _report(ws)
    (entry,) = report["feedback"]
    assert entry["kind"] == "change_request" and entry["opened"] == ["T2-r1"]
    assert entry["superseded"] == {"T2": {"by": "T2-r1", "commit": t2_commit}}
    assert "## Feedback" in md and f"T2 superseded by T2-r1 (commit `{t2_commit[:12]}`" in md
    assert report["status"] == "delivered" and report["head"] == tasks["T2-r1"]["commit"]
    check = verify_workspace(ws, timeout=120)
    assert check.matches, check.differences
    assert any(line.startswith("T2: commit") for line in check.confirmed)


def test_feature_adds_tasks_and_a_requirement_and_delivers_them(tmp_path: Path) -> None:
    ws = _delivered(tmp_path)
    log_before, events_before = _git_log(ws), len(_events(ws))

    out = asyncio.run(submit_feedback(ws, STATS))

    assert out.status == "delivered"
    assert {t["id"]: t["status"] for t in out.tasks}["T4"] == "done"
    assert _started(_events(ws)[events_before:]) == ["T4"]
    assert _git_log(ws)[1:] == log_before
    values = _values(ws)
    assert run_traceability(values)["F5"]["tasks"] == ["T4"]
    assert run_traceability(values)["F5"]["tests"] == ["tests/test_stats.py"]
    assert [f["id"] for f in values["scope"]["features"]][-1] == "F5"
    report, md = _report(ws)
    assert report["feedback"][0]["kind"] == "feature"
    assert report["traceability"]["F5"]["status"] == "delivered"
    assert "opened tasks: T4" in md


def test_bug_report_adds_a_fix_task_with_the_report_as_evidence(tmp_path: Path) -> None:
    ws = _delivered(tmp_path)
    events_before = len(_events(ws))

    out = asyncio.run(submit_feedback(ws, BUG))

    assert out.status == "delivered"
    assert {t["id"]: t["status"] for t in out.tasks}["fb1-fix1"] == "done"
    assert _started(_events(ws)[events_before:]) == ["fb1-fix1"]
    fix = next(t for t in _values(ws)["plan"]["tasks"] if t["id"] == "fb1-fix1")
    assert BUG in fix["description"] and "FAILING EVIDENCE" in fix["description"]
    assert "T1" in fix["depends_on"] and fix["regression_test"]
    assert (ws / "tests" / "test_limits.py").is_file()
    # Its new tests ran on the code before the fix: they import a module the fix adds. Only
    # the one that runs the fixed add() (existing code) shows that the reported bug is fixed.
    evidence = json.loads((ws / ".oldnew" / "evidence" / "fb1-fix1-01.json").read_text())
    regression = next(c for c in evidence["checks"] if c["name"] == "regression")
    assert regression["status"] == "passed"
    assert LIMITED != MODEL
    assert {(t["id"], t["before"], t["after"]) for t in regression["metrics"]["tests"]} == {
        ("tests/test_limits.py::test_long_title_is_rejected", "import error", "passed"),
        ("tests/test_limits.py::test_short_title_is_kept", "import error", "passed"),
    }
    assert regression["metrics"]["reproduced"] == [
        "tests/test_limits.py::test_long_title_is_rejected"
    ]
    ran = {t["id"].split("::")[1]: t["ran_changed"] for t in regression["metrics"]["tests"]}
    assert ran["test_short_title_is_kept"] == [] and len(ran["test_long_title_is_rejected"]) == 1
    assert ran["test_long_title_is_rejected"][0].startswith("todo/model.py:")


def test_a_bug_fix_whose_test_passes_before_the_fix_goes_back_to_the_fixer(
    tmp_path: Path,
) -> None:
    ws = _delivered(tmp_path)

    out = asyncio.run(submit_feedback(ws, CAP))

    assert out.status == "delivered"
    evidence = ws / ".oldnew" / "evidence"
    first = json.loads((evidence / "fb1-fix1-01.json").read_text())
    regression = next(c for c in first["checks"] if c["name"] == "regression")
    assert regression["status"] == "failed" and not first["passed"]
    assert regression["metrics"]["tests"][0]["before"] == "passed"
    (finding,) = [d for d in first["diagnostics"] if d["tool"] == "regression"]
    assert finding["file"] == "tests/test_title_cap.py"
    assert "passes on the tree before your change" in finding["message"]
    second = json.loads((evidence / "fb1-fix1-02.json").read_text())
    regression = next(c for c in second["checks"] if c["name"] == "regression")
    assert regression["status"] == "passed" and second["passed"]
    assert regression["metrics"]["reproduced"] == [
        "tests/test_title_cap.py::test_long_title_is_rejected"
    ]
    report, md = _report(ws)
    fix = next(d for d in report["delivered"] if d["task"] == "fb1-fix1")
    assert fix["regression"].startswith("passed: 1 of 1 new tests fail on the tree before")
    assert "fb1-fix1-02.json" in fix["regression"] and fix["regression"] in md
    assert all(d["regression"] is None for d in report["delivered"] if d["task"] != "fb1-fix1")


def test_clarification_becomes_a_decision_and_runs_nothing(tmp_path: Path) -> None:
    ws = _delivered(tmp_path)
    log_before, events_before = _git_log(ws), len(_events(ws))

    res = CliRunner().invoke(app, ["feedback", "-w", str(ws), CLARIFY])

    assert res.exit_code == 0, res.output
    assert "run " in res.output and ": delivered" in res.output
    assert _started(_events(ws)[events_before:]) == []
    assert _git_log(ws) == log_before
    q = _values(ws)["questions"]["fb1"]
    assert (q["kind"], q["status"]) == ("clarification", "answered")
    report, md = _report(ws)
    assert {"question": q["title"], "answer": CLARIFY, "decided_by": "person"} in report[
        "decisions"
    ]
    assert "decision for the work still to do: dates are ISO 8601 in UTC" in md


def test_feedback_while_waiting_keeps_the_question_and_triage_failure_asks(
    tmp_path: Path,
) -> None:
    ws = tmp_path / "ws"
    out = asyncio.run(start_run(EXAMPLE / "scope.md", ws, context={"model": _model(tmp_path)}))
    assert out.status == "waiting"

    out = asyncio.run(submit_feedback(ws, "GARBLED remarks"))

    assert out.status == "waiting"
    assert sorted(q["id"] for q in out.questions) == ["T3-q1", "fb1-q1"]
    fb_q = next(q for q in out.questions if q["id"] == "fb1-q1")
    assert fb_q["kind"] == "model_output" and "FeedbackTriage did not parse" in fb_q["detail"]
    assert [o["key"] for o in fb_q["options"]] == ["retry", "drop"]
    assert "fb1" in _values(ws)["feedback"]  # kept until a person decides
    out = asyncio.run(resume_run(ws, answers={"T3-q1": "2", "fb1-q1": "drop"}))
    assert out.status == "delivered"
    values = _values(ws)
    assert values["feedback"] == {}
    assert [(e["id"], e["outcome"]) for e in values["feedback_log"]] == [("fb1", "dropped")]


def test_bad_feedback_is_refused_and_leaves_the_state_unchanged(tmp_path: Path) -> None:
    runner = CliRunner()
    model = _model(tmp_path)
    scope = tmp_path / "scope.md"
    scope.write_text("12 34\n")  # no words: the scope node asks, and the person stops the run
    ws = tmp_path / "ws"
    out = asyncio.run(start_run(scope, ws, context={"model": model}))
    assert out.status == "waiting"
    out = asyncio.run(resume_run(ws, answers={out.questions[0]["id"]: "abort"}))
    assert out.status == "aborted"
    before = _values(ws)

    with pytest.raises(UsageError, match="closed.*start a new run"):
        asyncio.run(submit_feedback(ws, SORTED))
    with pytest.raises(UsageError, match="feedback is empty"):
        asyncio.run(submit_feedback(ws, " \n "))
    assert _values(ws) == before
    res = runner.invoke(app, ["feedback", "-w", str(ws), SORTED])
    assert res.exit_code == 2 and "is closed" in res.output
    res = runner.invoke(app, ["feedback", "-w", str(tmp_path / "nowhere"), SORTED])
    assert res.exit_code == 2 and "does not exist" in res.output
    with pytest.raises(WorkspaceError, match="holds no oldnew run"):
        asyncio.run(submit_feedback(tmp_path, SORTED))
    # A busy run takes feedback through its inbox, but a closed one refuses it even then.
    with Workspace.open(ws).lock(), pytest.raises(UsageError, match="closed"):
        asyncio.run(submit_feedback(ws, SORTED))
    assert not list((ws / ".oldnew").glob("inbox/*.json"))
    assert _values(ws) == before


def _task(tid: str, *deps: str, files: tuple[str, ...] = (), req: str = "F1") -> dict[str, Any]:
    return {
        "id": tid,
        "title": f"task {tid}",
        "description": f"build {tid}",
        "depends_on": list(deps),
        "files": list(files) or [f"{tid.lower()}.py"],
        "requirement_ids": [req],
    }


def _unit_plan() -> tuple[Any, Any, Any]:
    from oldnew.feedback.triage import RunView
    from oldnew.schemas import Plan, Scope

    scope = Scope.model_validate(
        {"title": "p", "summary": "s", "features": [{"id": "F1", "title": "one"}]}
    )
    plan = Plan.model_validate(
        {
            "tasks": [
                _task("T1"),
                _task("T2", "T1", files=("core.py",)),
                _task("T2-r1", "T2", files=("core.py",)),
                _task("T3", "T2-r1"),
                _task("T4", "T2-r1"),
                _task("T5", "T1"),
            ]
        }
    )
    view = RunView(
        statuses={"T1": "done", "T2": "done", "T2-r1": "done", "T3": "done", "T4": "pending"}
        | {"T5": "waiting"},
        superseded_by={"T2": "T2-r1"},
        used_ids=frozenset({"T1", "T2", "T2-r1", "T3", "T4", "T5"}),
        commits={"T2-r1": "abc"},
    )
    return plan, scope, view


def test_change_request_revises_the_newest_revision_and_holds_back_unstarted_work() -> None:
    from oldnew.feedback.triage import apply_triage
    from oldnew.schemas import FeedbackTriage

    plan, scope, view = _unit_plan()
    triage = FeedbackTriage(
        kind="change_request",
        summary="rename things",
        affected_tasks=["T2", "T4", "T5"],
        change="call it Core",
    )
    out, problems = apply_triage(triage, plan, scope, "rename", "fb3", view)
    assert problems == []
    assert out.opened == ["T2-r2"] and out.superseded == {"T2-r1": "T2-r2"}
    tasks = {t.id: t for t in out.plan.tasks}
    assert tasks["T2-r2"].depends_on == ["T2-r1", "T3"]  # T3 (done) built on T2-r1
    assert "T2-r2" in tasks["T4"].depends_on  # not started: it waits for the revision
    assert out.amended == ["T4"] and "call it Core" in tasks["T4"].description
    assert "call it Core" in tasks["T2-r2"].description
    assert "build T2-r1" in tasks["T2-r2"].description
    (note,) = out.notes
    assert note.startswith("task T5 is waiting")
    assert [t.id for t in plan.tasks] == ["T1", "T2", "T2-r1", "T3", "T4", "T5"]  # not mutated


def test_feature_ids_are_made_unique_and_their_problems_go_back() -> None:
    from oldnew.feedback.triage import apply_triage
    from oldnew.schemas import FeedbackTriage

    plan, scope, view = _unit_plan()
    triage = FeedbackTriage.model_validate(
        {
            "kind": "feature",
            "summary": "export",
            "features": [{"id": "F2", "title": "export"}],
            "tasks": [
                _task("T1", "T2", files=("export.py",), req="F2"),
                _task("T9", "T1", files=("export_cli.py",), req="F2"),
            ],
        }
    )
    out, problems = apply_triage(triage, plan, scope, "export", "fb2", view)
    assert problems == []
    new = {t.id: t for t in out.plan.tasks if t.id in out.opened}
    assert list(new) == ["fb2-T1", "T9"]
    assert new["fb2-T1"].depends_on == ["T2-r1"]  # the newest revision of T2
    assert new["T9"].depends_on == ["fb2-T1"]
    assert [f.id for f in out.scope.features] == ["F1", "F2"]

    clashing = triage.model_copy(
        update={
            "tasks": [triage.tasks[0].model_copy(update={"files": ["core.py"], "depends_on": []})]
        }
    )
    _, problems = apply_triage(clashing, plan, scope, "export", "fb2", view)
    assert any("both change core.py" in p for p in problems)
    unserved = triage.model_copy(
        update={"tasks": [triage.tasks[0].model_copy(update={"requirement_ids": ["F1"]})]}
    )
    _, problems = apply_triage(unserved, plan, scope, "export", "fb2", view)
    assert "feature F2 (export) is served by no task" in problems


@pytest.mark.parametrize(
    ("triage", "problem"),
    [
        ({"kind": "change_request", "summary": "x"}, "must name the tasks"),
        ({"kind": "change_request", "summary": "x", "affected_tasks": ["T7"]}, "T7 is not in"),
        ({"kind": "feature", "summary": "x"}, "must come with the new tasks"),
        ({"kind": "clarification", "summary": "x", "tasks": [_task("T8")]}, "only a feature"),
    ],
)
def test_triage_that_does_not_fit_the_plan_is_sent_back(
    triage: dict[str, Any], problem: str
) -> None:
    from oldnew.feedback.triage import apply_triage
    from oldnew.schemas import FeedbackTriage

    plan, scope, view = _unit_plan()
    _, problems = apply_triage(FeedbackTriage.model_validate(triage), plan, scope, "t", "fb1", view)
    assert any(problem in p for p in problems), problems


def test_clarification_reaches_tasks_that_start_later() -> None:
    from oldnew.memory import decisions_from

    questions = {
        "fb1": {
            "kind": "clarification",
            "title": "Clarification (fb1): dates in UTC",
            "status": "answered",
            "answer": CLARIFY,
        }
    }
    assert decisions_from(questions) == [f"Clarification (fb1): dates in UTC -> {CLARIFY}"]


def test_routing_waits_for_a_person_then_goes_back_to_the_planner() -> None:
    from oldnew.graph.routing import after_execute

    item = {"id": "fb1", "text": "x", "received": "now", "question": "fb1-q1"}
    state: dict[str, Any] = {
        "feedback": {"fb1": item},
        "questions": {"fb1-q1": {"id": "fb1-q1", "status": "pending"}},
    }
    assert after_execute(state) == "ask"  # type: ignore[arg-type]
    state["questions"]["fb1-q1"] = {"id": "fb1-q1", "status": "answered", "answer": "retry"}
    assert after_execute(state) == "plan"  # type: ignore[arg-type]
    assert after_execute({"feedback": {}}) == "deliver"


def test_malformed_feedback_from_an_api_caller_is_dropped_with_a_notice() -> None:
    from oldnew.context import Context
    from oldnew.feedback.apply import apply_feedback
    from oldnew.memory.store import Memory
    from oldnew.models import ScriptedChatModel
    from oldnew.planning import Asker, Planner, assess
    from oldnew.planning.llm import no_emit

    plan, scope, _ = _unit_plan()
    state: dict[str, Any] = {
        "plan": plan.model_dump(),
        "scope": scope.model_dump(),
        "feedback": {"fb9": {"id": "fb9", "text": ""}},
    }
    ctx = Context()
    model = ScriptedChatModel(replies=[], role="planner")  # any model call would fail
    planner = Planner(Asker(model, ctx), scope, assess(scope, ctx), 1)
    update = asyncio.run(apply_feedback(state, planner, no_emit, Memory(None, "run")))  # type: ignore[arg-type]
    assert update["feedback"] == {"fb9": None}
    assert update["feedback_log"] == [] and "plan" not in update
    (notice,) = update["notices"]
    assert notice.startswith("feedback fb9 was not valid") and "received: Field required" in notice
