"""Stuck tasks, failures routed by class, known limitations and the end states, in whole runs."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import BaseMessage
from synthetic import planned_run

from oldnew.cli import EXIT
from oldnew.hitl.questions import SKIP_BLOCKS, SKIP_TO_LIMITATION
from oldnew.recovery.degrade import critical_tasks, dependent_record
from oldnew.recovery.stall import Round, error_fingerprint, stuck_reason
from oldnew.runs import resume_run, start_run
from oldnew.schemas import Plan, Scope
from oldnew.testing import CallInfo, prompt_text

pytestmark = pytest.mark.usefixtures("smoke_gates")  # graph logic, not the gates

SCOPE = {
    "title": "calc",
    "summary": "Arithmetic helpers.",
    "features": [
        {"id": "F1", "title": "add", "priority": "must"},
        {"id": "F2", "title": "power", "priority": "could"},
    ],
}


def _task(tid: str, files: list[str], deps: list[str] | None = None, req: str = "F1") -> Any:
    return {
        "id": tid,
        "title": f"task {tid}",
        "description": f"Build {tid}.",
        "files": files,
        "depends_on": deps or [],
        "requirement_ids": [req],
    }


ONE_TASK = {  # T1 and its docs (a plan needs two tasks at least)
    "tasks": [
        {**_task("T1", ["calc.py", "tests/test_calc.py"]), "requirement_ids": ["F1", "F2"]},
        _task("T2", ["README.md"], ["T1"]),
    ]
}
README = "FILE: README.md\n```\n# calc\n```\n"


def blocks(files: dict[str, str]) -> str:
    """Return a coder reply that writes ``files``."""
    return "".join(f"FILE: {p}\n```python\n{text}```\n" for p, text in files.items())


CALC_TEST = "from calc import add\n\n\ndef test_add():\n    assert add(2, 2) == 4\n"
FAILING = blocks({"calc.py": "def add(a, b):\n    return a - b\n", "tests/test_calc.py": CALC_TEST})
PASSING = blocks({"calc.py": "def add(a, b):\n    return a + b\n", "tests/test_calc.py": CALC_TEST})


def _model(tmp_path: Path, plan: dict[str, Any], replies: list[dict[str, Any]]) -> str:
    path = tmp_path / "transcript.json"
    head = [
        {"role": "planner", "when": ["return a Scope"], "structured": SCOPE},
        {"role": "planner", "when": ["into a Plan"], "structured": plan},
    ]
    docs = {"role": "coder", "when": ["TASK T2:"], "text": README}
    path.write_text(json.dumps({"reply": [*head, *replies, docs]}))
    return f"scripted:{path}"


def _scope_file(tmp_path: Path) -> Path:
    path = tmp_path / "scope.md"
    path.write_text("Build calc: add(a, b), and power if there is time.\n")
    return path


def _events(ws: Path, **match: str) -> list[dict[str, Any]]:
    lines = (ws / ".oldnew" / "events.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]
    return [e for e in events if all(e.get(k) == v for k, v in match.items())]


def _git(ws: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ws, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_fingerprints_ignore_line_numbers_and_addresses_and_spot_a_repeat() -> None:
    a = error_fingerprint(["calc.py:3: [pytest failure] assert 0 == 4 at 0x7f01"], ["pytest"])
    b = error_fingerprint(["calc.py:7: [pytest failure] assert 0 == 4 at 0x7f99"], ["pytest"])
    moved = error_fingerprint(["calc.py:3: [pytest failure] assert 1 == 4 at 0x7f01"], ["pytest"])
    other = error_fingerprint(["calc.py:3: [ruff F821] Undefined name `c`"], ["ruff"])
    assert a == b and len({a, moved, other}) == 3
    assert stuck_reason(None, Round(a, "f1")) is None
    assert stuck_reason({"errors": a, "files": "f1"}, Round(b, "f2")) == (
        "the same errors as the round before"
    )
    assert stuck_reason({"errors": other, "files": "f1"}, Round(a, "f1")) == (
        "the fix changed no file that is validated"
    )
    assert stuck_reason({"errors": other, "files": "f1"}, Round(a, "f2")) is None


def test_critical_tasks_are_the_longest_chain_must_work_and_their_prerequisites() -> None:
    scope = Scope.model_validate(SCOPE)
    plan = Plan.model_validate(
        {
            "tasks": [
                _task("T1", [], req="F2"),
                _task("T2", [], ["T1"], req="F2"),
                _task("T3", [], ["T2"], req="F2"),  # T1 -> T2 -> T3: the critical path
                _task("T4", [], req="F2"),  # could, off the path
                _task("T5", [], req="F2"),
                _task("T6", [], ["T5"], req="F1"),  # must: T5 is its prerequisite
                {**_task("T7", [], req="F2"), "phase": "mvp"},
            ]
        }
    )
    assert critical_tasks(plan, scope) == {"T1", "T2", "T3", "T5", "T6", "T7"}
    # All must, no phases (the plans of today): everything is critical, nothing changes.
    assert critical_tasks(plan, None) == {f"T{i}" for i in range(1, 8)}
    features = [{"id": "F1", "title": "a"}, {"id": "F2", "title": "p"}]
    musts = Scope.model_validate({**SCOPE, "features": features})
    assert critical_tasks(plan, musts) == {f"T{i}" for i in range(1, 8)}
    limited = {"status": "blocked", "limitation": {"reason": "r", "options": ["mock it"]}}
    rec = dependent_record("T4", limited)  # type: ignore[arg-type]
    assert rec["limitation"]["options"] == ["mock it"]
    assert "known limitation" in rec["blocker"]
    assert "limitation" not in dependent_record("T4", {"status": "blocked"})


def test_same_error_in_two_rounds_gets_one_fresh_start_then_escalates(tmp_path: Path) -> None:
    first = FAILING + blocks({"scratch.py": "VALUE = 1\n"})
    model = _model(
        tmp_path,
        ONE_TASK,
        [
            # Were the discarded code shown to the fresh start, this reply would pass.
            {"role": "coder", "when": ["TASK T1:", "START OVER", "return a - b"], "text": PASSING},
            {
                "role": "coder",
                "when": ["TASK T1:", "START OVER", "The last approach failed: the same errors"],
                "text": FAILING,
            },
            {"role": "coder", "when": ["TASK T1:"], "text": first},
            {"role": "fixer", "when": ["TASK T1:"], "text": FAILING},
        ],
    )
    ws = tmp_path / "ws"
    out = asyncio.run(start_run(_scope_file(tmp_path), ws, context={"model": model}))
    assert out.status == "waiting"
    (q,) = out.questions
    assert q["kind"] == "fix_limit"
    assert "after 2 fix rounds and a fresh start: the same errors" in q["title"]
    assert "assert 0 == 4" in q["detail"]
    # Two fix rounds repeating the failure before them, then the fresh start's own two.
    assert len(_events(ws, node="fix", event="started")) == 4
    assert len(_events(ws, node="code", event="started")) == 2
    (regen,) = _events(ws, node="validate", event="regenerate")
    assert regen["stuck"] is True
    assert len(_events(ws, node="code", event="fresh_start")) == 1
    assert not (ws / ".oldnew" / "worktrees" / "T1" / "scratch.py").exists()  # reset to main
    (esc,) = _events(ws, node="validate", event="escalated")
    assert esc["question"] == "T1-q1" and esc["failure"] == "recoverable"
    # Another set of rounds that changes nothing is stuck at once: no loop.
    out = asyncio.run(resume_run(ws, answers={"T1-q1": "retry"}))
    assert out.status == "waiting" and out.questions[0]["id"] == "T1-q2"
    assert len(_events(ws, node="fix", event="started")) == 5
    assert len(_events(ws, node="code", event="started")) == 2


def test_missing_third_party_module_goes_to_the_fixer_to_declare_or_drop(
    tmp_path: Path,
) -> None:
    # The project's environment holds what it declares: an undeclared module is the coder's.
    code = blocks(
        {
            "calc.py": "import stripe_payments_sdk\n\n\ndef add(a, b):\n"
            "    return stripe_payments_sdk.add(a, b)\n",
            "tests/test_calc.py": CALC_TEST,
        }
    )
    fixed = blocks({"calc.py": "def add(a, b):\n    return a + b\n"})
    models = planned_run(SCOPE, ONE_TASK, code={"T1": code, "T2": README}, fix={"T1": fixed})
    ws = tmp_path / "ws"
    out = asyncio.run(start_run(_scope_file(tmp_path), ws, models=models))
    assert out.status == "delivered", out
    (fix_call,) = models["fixer"].log.of(role="fixer", task="T1")
    text = prompt_text(fix_call.messages)
    assert "module 'stripe_payments_sdk' cannot be imported" in text
    assert _events(ws, node="validate", event="escalated") == []  # no person asked


def test_missing_environment_variable_asks_for_configuration(tmp_path: Path) -> None:
    code = blocks(
        {
            "calc.py": "import os\n\nRATE = os.environ['CALC_SERVICE_TOKEN']\n\n\n"
            "def add(a, b):\n    return a + b\n",
            "tests/test_calc.py": CALC_TEST,
        }
    )
    models = planned_run(SCOPE, ONE_TASK, code={"T1": code, "T2": README})
    ws = tmp_path / "ws"
    out = asyncio.run(start_run(_scope_file(tmp_path), ws, models=models))
    assert out.status == "waiting"
    (q,) = out.questions
    assert q["kind"] == "configuration"
    assert "the environment variable CALC_SERVICE_TOKEN is not set" in q["title"]
    assert "Variable: CALC_SERVICE_TOKEN. Read at: " in q["detail"]
    assert "sandbox" in q["detail"]
    assert _events(ws, node="fix") == []


def test_non_critical_failure_is_a_known_limitation_and_the_rest_delivers(
    tmp_path: Path,
) -> None:
    plan = {
        "tasks": [
            _task("T1", ["calc.py", "tests/test_calc.py"]),
            _task("T2", ["calc2.py", "tests/test_calc2.py"], ["T1"]),
            _task("T3", ["power.py", "tests/test_power.py"], req="F2"),
        ]
    }
    calc2 = blocks(
        {
            "calc2.py": "from calc import add\n\n\ndef double(a):\n    return add(a, a)\n",
            "tests/test_calc2.py": "from calc2 import double\n\n\n"
            "def test_double():\n    assert double(2) == 4\n",
        }
    )
    power = blocks(
        {
            "power.py": "def power(a, b):\n    return a * b\n",
            "tests/test_power.py": "from power import power\n\n\n"
            "def test_power():\n    assert power(2, 3) == 8\n",
        }
    )
    models = planned_run(
        SCOPE, plan, code={"T1": PASSING, "T2": calc2, "T3": power}, fix={"T3": power}
    )
    ws = tmp_path / "ws"
    out = asyncio.run(start_run(_scope_file(tmp_path), ws, models=models))
    assert out.status == "delivered_with_limitations", out
    assert EXIT[out.status] == 0
    status = {t["id"]: t["status"] for t in out.tasks}
    assert status == {"T1": "done", "T2": "done", "T3": "blocked"}
    t3 = next(t for t in out.tasks if t["id"] == "T3")
    assert t3["limitation"]["branch"] == "oldnew/partial/T3"
    assert "fresh start" in t3["limitation"]["reason"]
    assert out.questions == []
    report = json.loads((ws / ".oldnew" / "report.json").read_text())
    assert report["status"] == "delivered_with_limitations" and report["blocked"] == []
    (lim,) = report["limitations"]
    assert lim["task"] == "T3" and lim["branch"] == "oldnew/partial/T3"
    assert lim["options"] and "still fails" in lim["reason"]
    assert report["final_validation"]["passed"] is True
    md = (ws / ".oldnew" / "report.md").read_text()
    assert "## Known limitations" in md and "`oldnew/partial/T3`" in md
    # The partial work is kept on its branch; main has none of it.
    assert "return a * b" in _git(ws, "show", "oldnew/partial/T3:power.py")
    assert not (ws / "power.py").exists() and (ws / "calc2.py").exists()
    (event,) = _events(ws, node="record_limitation")
    assert event["branch"] == "oldnew/partial/T3"


SLOW_TESTS = blocks(  # the task's own work is slow: its tests take far too long
    {
        "calc.py": "def add(a, b):\n    return a + b\n",
        "tests/test_calc.py": "import time\n\nfrom calc import add\n\n\n"
        "def test_add():\n    time.sleep(14)\n    assert add(2, 2) == 4\n",
    }
)


def test_a_slow_model_is_not_mistaken_for_a_stuck_task(tmp_path: Path) -> None:
    async def slow_coder(messages: list[BaseMessage], info: CallInfo) -> str:
        await asyncio.sleep(8)  # a large model on a busy provider: past the limit, waiting
        return PASSING

    models = planned_run(SCOPE, ONE_TASK, code={"T1": slow_coder, "T2": README})
    ws = tmp_path / "ws"
    context = {"task_time_limit": 6.0, "max_split_depth": 0}
    out = asyncio.run(start_run(_scope_file(tmp_path), ws, context=context, models=models))
    assert out.status == "delivered", out
    assert not _events(ws, node="execute", event="stopped")
    assert not _events(ws, node="execute", event="request_split")


def test_a_rate_limited_model_is_not_mistaken_for_a_stuck_task(tmp_path: Path) -> None:
    import httpx
    import openai

    refusals = {"n": 0}

    def rate_limited_coder(messages: list[BaseMessage], info: CallInfo) -> str:
        if refusals["n"] < 2:  # a busy provider: twice "429, retry after 3 s"
            refusals["n"] += 1
            request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
            response = httpx.Response(429, headers={"retry-after": "3"}, request=request)
            raise openai.RateLimitError("rate limited", response=response, body=None)
        return PASSING

    models = planned_run(SCOPE, ONE_TASK, code={"T1": rate_limited_coder, "T2": README})
    ws = tmp_path / "ws"
    context = {"task_time_limit": 5.0, "max_split_depth": 0}
    out = asyncio.run(start_run(_scope_file(tmp_path), ws, context=context, models=models))
    assert refusals["n"] == 2
    assert out.status == "delivered", out  # 6 s of backoff, past the limit, were model wait
    assert not _events(ws, node="execute", event="stopped")


def test_a_model_slow_for_ever_ends_in_the_tasks_stop_path(tmp_path: Path) -> None:
    async def stuck_provider(messages: list[BaseMessage], info: CallInfo) -> str:
        await asyncio.sleep(3600)  # never answers; the run's model_timeout is longer
        return PASSING

    models = planned_run(SCOPE, ONE_TASK, code={"T1": stuck_provider, "T2": README})
    ws = tmp_path / "ws"
    context = {"task_wait_limit": 2.0, "model_timeout": 3600.0}
    out = asyncio.run(start_run(_scope_file(tmp_path), ws, context=context, models=models))
    assert out.status == "waiting", out
    (q,) = out.questions
    assert q["kind"] == "timeout" and "past the 2 s limit on model wait" in q["title"]
    (stopped,) = _events(ws, node="execute", event="stopped")
    assert stopped["task"] == "T1" and "OLDNEW_TASK_WAIT_LIMIT" in stopped["reason"]
    assert not _events(ws, node="execute", event="request_split")  # a split waits as long


def test_unsplittable_task_past_the_time_limit_is_stopped_and_escalated(tmp_path: Path) -> None:
    models = planned_run(SCOPE, ONE_TASK, code={"T1": SLOW_TESTS, "T2": README})
    ws = tmp_path / "ws"
    context = {"task_time_limit": 8.0, "max_split_depth": 0}
    out = asyncio.run(start_run(_scope_file(tmp_path), ws, context=context, models=models))
    assert out.status == "waiting", out
    (q,) = out.questions
    assert q["kind"] == "timeout" and "past the 8 s limit" in q["title"]
    assert "oldnew/partial/T1" in q["detail"]
    assert [o["key"] for o in q["options"]] == ["retry", "skip"]
    (stopped,) = _events(ws, node="execute", event="stopped")
    assert stopped["task"] == "T1"
    assert "time.sleep(14)" in _git(ws, "show", "oldnew/partial/T1:tests/test_calc.py")
    assert "past the 8 s limit (not counting" in stopped["reason"]
    out = asyncio.run(resume_run(ws, answers={q["id"]: "skip"}, models=models))
    assert out.status == "blocked"
    t1, t2 = out.tasks
    assert t1["status"] == "blocked" and "skipped by a person" in t1["blocker"]
    assert t2["blocker"] == "depends on T1, which is blocked"


UNUSABLE = "I would rather explain the fix than write it."  # no file blocks: the output is unusable


def test_skip_on_a_task_that_is_not_critical_records_a_known_limitation(tmp_path: Path) -> None:
    plan = {
        "tasks": [
            _task("T1", ["calc.py", "tests/test_calc.py"]),
            _task("T2", ["README.md"], ["T1"]),
            _task("T3", ["power.py", "tests/test_power.py"], req="F2"),  # could, off the path
        ]
    }
    power = blocks(
        {
            "power.py": "def power(a, b):\n    return a * b\n",
            "tests/test_power.py": "from power import power\n\n\n"
            "def test_power():\n    assert power(2, 3) == 8\n",
        }
    )
    model = _model(
        tmp_path,
        plan,
        [
            {"role": "coder", "when": ["TASK T1:"], "text": PASSING},
            {"role": "coder", "when": ["TASK T3:"], "text": power},
            {"role": "fixer", "when": ["TASK T3:"], "text": UNUSABLE},
        ],
    )
    ws = tmp_path / "ws"
    out = asyncio.run(start_run(_scope_file(tmp_path), ws, context={"model": model}))
    assert out.status == "waiting", out
    (q,) = out.questions
    assert q["id"] == "T3-q1" and q["kind"] == "model_output"
    skip = next(o for o in q["options"] if o["key"] == "skip")
    assert skip["label"] == SKIP_TO_LIMITATION and "known limitation" in skip["label"]
    out = asyncio.run(resume_run(ws, answers={"T3-q1": "skip"}))
    assert out.status == "delivered_with_limitations", out
    status = {t["id"]: t["status"] for t in out.tasks}
    assert status == {"T1": "done", "T2": "done", "T3": "blocked"}
    t3 = next(t for t in out.tasks if t["id"] == "T3")
    assert t3["limitation"]["branch"] == "oldnew/partial/T3"
    assert t3["limitation"]["reason"].startswith("skipped by a person: ")
    assert t3["limitation"]["options"] == ["Ask the model again"]  # skipping is what was done
    report = json.loads((ws / ".oldnew" / "report.json").read_text())
    assert report["blocked"] == [] and [lim["task"] for lim in report["limitations"]] == ["T3"]
    assert "return a * b" in _git(ws, "show", "oldnew/partial/T3:power.py")
    assert not (ws / "power.py").exists()
    (event,) = _events(ws, node="record_limitation")
    assert event["branch"] == "oldnew/partial/T3"


def test_skip_on_a_critical_task_says_it_blocks_the_run_and_does(tmp_path: Path) -> None:
    model = _model(
        tmp_path,
        ONE_TASK,
        [
            {"role": "coder", "when": ["TASK T1:"], "text": FAILING},
            {"role": "fixer", "when": ["TASK T1:"], "text": UNUSABLE},
        ],
    )
    ws = tmp_path / "ws"
    out = asyncio.run(start_run(_scope_file(tmp_path), ws, context={"model": model}))
    assert out.status == "waiting", out
    (q,) = out.questions
    skip = next(o for o in q["options"] if o["key"] == "skip")
    assert skip["label"] == SKIP_BLOCKS and "blocked" in skip["label"]
    out = asyncio.run(resume_run(ws, answers={q["id"]: "skip"}))
    assert out.status == "blocked"
    t1, t2 = out.tasks
    assert t1["status"] == "blocked" and t1["limitation"] is None
    assert t1["blocker"].startswith("skipped by a person: ")
    assert t2["blocker"] == "depends on T1, which is blocked"
    assert _events(ws, node="record_limitation") == []
