"""Planning units: complexity classes, long scopes, plan checks, splits, re-plans, the preview."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from synthetic import (
    CountingModel,
    flat_plan,
    monster,
    scope_dict,
    scope_text,
    write_transcript,
)
from typer.testing import CliRunner

from oldnew.cli import app
from oldnew.context import Context
from oldnew.errors import ConfigurationError
from oldnew.planning import Asker, Planner, ScopeProblem, assess, extract_scope, plan_problems
from oldnew.planning.graphops import replace_tasks, serialize_shared_files
from oldnew.planning.hierarchy import epic_problems
from oldnew.planning.preview import preview_plan
from oldnew.planning.revise import replan, split_task
from oldnew.planning.sections import split_sections
from oldnew.planning.trace import traceability
from oldnew.schemas import EpicPlan, Plan, PlannedTask, Scope


def _task(tid: str, deps: list[str] | None = None, **kw: Any) -> PlannedTask:
    return PlannedTask(
        id=tid,
        title=kw.pop("title", f"task {tid}"),
        description=kw.pop("description", "d"),
        depends_on=deps or [],
        requirement_ids=kw.pop("reqs", ["F1"]),
        **kw,
    )


# -- complexity -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "cls", "score", "tasks", "agents"),
    [
        ({"n_features": 4}, "simple", 8, (6, 8), 2),
        ({"n_features": 5, "integrations": 2, "pages": 3, "apis": 4}, "medium", 25, (12, 15), 3),
        ({"n_features": 20, "models": 6, "apis": 10}, "complex", 67, (25, 30), 5),
        ({"n_features": 60, "integrations": 10}, "monster", 150, (50, 100), 9),
        (
            {"n_features": 120, "integrations": 4, "pages": 10, "models": 12, "apis": 20},
            "monster",
            316,
            (50, 166),
            10,
        ),
    ],
)
def test_complexity_class_sets_plan_size_and_agents(
    counts: dict[str, int], cls: str, score: float, tasks: tuple[int, int], agents: int
) -> None:
    c = assess(Scope.model_validate(scope_dict(**counts)), Context())
    assert (c.cls, c.score, c.tasks, c.agents) == (cls, score, tasks, agents)
    assert c.phased == (cls == "monster")


def test_complexity_settings_come_from_the_context() -> None:
    scope = Scope.model_validate(scope_dict(4))
    ctx = Context(complexity_weights="features=10,integrations=3,pages=1,models=2,apis=1.5")
    assert assess(scope, ctx).cls == "medium"  # 40 points
    ctx = Context(complexity_thresholds="simple=5,medium=6,complex=7", phased_classes="")
    c = assess(scope, ctx)
    assert c.cls == "monster" and not c.phased
    with pytest.raises(ConfigurationError, match="complexity_weights must name exactly"):
        assess(scope, Context(complexity_weights="features=2"))
    with pytest.raises(ConfigurationError, match="'x' is not a number"):
        assess(scope, Context(complexity_thresholds="simple=x,medium=50,complex=100"))


def test_size_check_rejects_only_gross_mismatches() -> None:
    one_liner = assess(Scope.model_validate(scope_dict(1)), Context())
    assert one_liner.size_problem(1) is None  # one feature, one task: fine
    assert one_liner.size_problem(3) is None  # the example: 3 tasks for 4 features
    problem = one_liner.size_problem(200)
    assert problem and "200 tasks" in problem and "simple scope (score 2" in problem
    big = assess(Scope.model_validate(scope_dict(120, integrations=4)), Context())
    assert big.size_problem(5) and "about 50 to 124 tasks" in str(big.size_problem(5))
    assert big.size_problem(124) is None


# -- scope extraction -------------------------------------------------------------------------


def _doc(sections: int, lines: int = 30) -> str:
    parts = ["# Shop", "", "An online shop.", ""]
    for s in range(1, sections + 1):
        parts += [f"## Area {s}", ""]
        parts += [f"- requirement {s}.{i}: " + "words " * 8 for i in range(lines)]
        parts.append("")
    return "\n".join(parts)


def test_long_scope_is_split_on_headings_without_losing_text() -> None:
    text = _doc(5)
    sections = split_sections(text, 2000)
    assert len(sections) > 1 and all(len(s.text) <= 2000 for s in sections)
    assert "".join(s.text for s in sections) == text
    assert sections[1].heading.startswith("Shop > Area")
    one = "x" * 5000  # no heading, no paragraph, no line break: cut by characters
    assert "".join(s.text for s in split_sections(one, 1000)) == one


def _section_reply(section: int, titles: list[tuple[str, str]]) -> dict[str, Any]:
    feats = [{"id": f"F{i}", "title": t, "priority": p} for i, (t, p) in enumerate(titles, 1)]
    return {
        "role": "planner",
        "when": [f"SECTION {section} OF 3"],
        "structured": {"title": "shop", "summary": f"part {section}", "features": feats},
    }


def test_sections_are_read_separately_and_merged_with_stable_ids(tmp_path: Path) -> None:
    text = "# Shop\n\n" + "\n\n".join(f"## Part {i}\n\n" + "lorem ipsum " * 30 for i in (1, 2, 3))
    replies = [
        _section_reply(1, [("Cart", "must"), ("Checkout", "should")]),
        _section_reply(2, [("Search", "could")]),
        _section_reply(3, [("checkout!", "must"), ("Reviews", "could")]),
    ]
    model = CountingModel.from_replies(replies, tmp_path)
    ctx = Context(scope_chunk_chars=450)
    scope = asyncio.run(extract_scope(Asker(model, ctx), text))
    assert model.stats["calls"] == 3
    assert [(f.id, f.title, f.priority) for f in scope.features] == [
        ("F1", "Cart", "must"),
        ("F2", "Checkout", "must"),  # repeated in part 3 as a must: folded, priority raised
        ("F3", "Search", "could"),
        ("F4", "Reviews", "could"),
    ]
    assert scope.features[2].source == "Shop > Part 2"
    again = asyncio.run(extract_scope(Asker(model, ctx), text))
    assert again == scope  # the same document gets the same ids


def test_scope_of_several_megabytes_is_refused_without_a_model_call(tmp_path: Path) -> None:
    model = CountingModel.from_replies([{"when": ["never"], "text": ""}], tmp_path)
    text = _doc(3000, lines=14)
    assert len(text) > 3_000_000
    start = time.perf_counter()
    with pytest.raises(ScopeProblem, match=r"sections of up to 24,000 characters") as err:
        asyncio.run(extract_scope(Asker(model, Context()), text))
    assert err.value.kind == "too_large" and "max_scope_sections=40" in str(err.value)
    assert model.stats["calls"] == 0 and time.perf_counter() - start < 10


def test_scope_without_requirements_is_named(tmp_path: Path) -> None:
    nothing = {"title": "hello", "summary": "a greeting", "unknowns": ["no software is asked"]}
    model = CountingModel.from_replies(
        [{"role": "planner", "when": ["SCOPE DOCUMENT"], "structured": nothing}], tmp_path
    )
    with pytest.raises(ScopeProblem, match="nothing to build.*no software is asked"):
        asyncio.run(extract_scope(Asker(model, Context()), "hello there, how are you"))
    with pytest.raises(ScopeProblem, match="no words to read"):
        asyncio.run(extract_scope(Asker(model, Context()), "!!! ??? 42"))
    assert model.stats["calls"] == 1


# -- plan checks ------------------------------------------------------------------------------


def test_bad_plans_are_named_precisely() -> None:
    scope = Scope.model_validate(scope_dict(2, integrations=1))
    plan = Plan(
        tasks=[
            _task("T1", reqs=["F1", "F9"]),
            _task("T1", title=" "),
            _task("a/b", reqs=["F2"]),
        ]
    )
    found = plan_problems(plan, scope)
    assert "task id T1 is used by more than one task" in found
    assert "task 'T1' has an empty id or title" in found
    assert any("task id 'a/b' may hold only" in p for p in found)
    assert "task T1 serves F9, which is not a requirement of the scope" in found
    assert "integration I1 (integrations item 1) is served by no task" in found
    huge = Plan(tasks=[_task(f"T{i}", reqs=["F1", "F2", "I1"]) for i in range(300)])
    size = assess(scope, Context())
    (problem,) = plan_problems(huge, scope, complexity=size)
    assert problem.startswith("the plan has 300 tasks, but a simple scope")


def test_phase_rules_are_checked() -> None:
    scope = Scope.model_validate(scope_dict(5))  # F1, F2 must; F3 should; F4, F5 could
    plan = Plan(
        tasks=[
            _task("T1", ["T2"], reqs=["F1"], phase="mvp"),
            _task("T2", reqs=["F2", "F3", "F4", "F5"], phase="polish"),
        ],
        phases=[{"name": "mvp", "milestone": "m", "acceptance_criteria": ["a"]}],
    )
    found = plan_problems(plan, scope)
    assert "task T1 (mvp) depends on T2 (polish): a phase must not wait for a later one" in found
    assert "must-have feature F2 (features item 2) is served by no MVP task" in found


def test_epic_plan_checks() -> None:
    scope = Scope.model_validate(scope_dict(5))
    bad = EpicPlan.model_validate(
        {
            "phases": [{"name": "mvp", "milestone": "m", "acceptance_criteria": []}],
            "epics": [
                {"id": "E1", "title": "a", "requirement_ids": ["F1", "F9"], "depends_on": ["E2"]},
                {"id": "E2", "title": "b", "phase": "polish", "requirement_ids": ["F1", "F2"]},
            ],
        }
    )
    found = epic_problems(bad, scope)
    assert "epic E1 (mvp) depends on E2 (polish): an epic must not wait for a later phase" in found
    assert "phase polish holds epics but is not described" in found
    assert "phase mvp has no acceptance criteria" in found
    assert "epic E1 holds F9, which is not a requirement of the scope" in found
    assert "requirement F1 is in epics E1, E2; give it to one epic" in found
    assert "feature F3 (features item 3) is in no epic" in found
    assert any(p.startswith("must-have feature F2") for p in found)


def test_shared_files_are_serialized_without_cycles() -> None:
    plan = Plan(
        tasks=[
            _task("A", files=["x.py"]),
            _task("B", files=["x.py", "y.py"]),
            _task("C", ["A"], files=["y.py"]),
            _task("D", files=["x.py"]),
        ]
    )
    out, added = serialize_shared_files(plan)
    assert len(added) == 3 and all("now waits for" in a for a in added)
    assert plan_problems(out, Scope.model_validate(scope_dict(1))) == []


def test_replacing_a_task_rewires_its_dependents() -> None:
    plan = Plan(tasks=[_task("T0"), _task("T1", ["T0"]), _task("T2", ["T1"]), _task("T3")])
    pieces = [_task("T1.1"), _task("T1.2", ["T1.1"]), _task("T1.3", ["T1.1"])]
    out = replace_tasks(plan, {"T1"}, pieces, inherit_deps=True)
    by_id = {t.id: t for t in out.tasks}
    assert [t.id for t in out.tasks] == ["T0", "T1.1", "T1.2", "T1.3", "T2", "T3"]
    assert by_id["T1.1"].depends_on == ["T0"]  # the first piece inherits T1's prerequisites
    assert by_id["T2"].depends_on == ["T1.2", "T1.3"]  # the dependent waits for the last pieces


def test_traceability_links_requirements_to_tasks_and_tests() -> None:
    scope = Scope.model_validate(scope_dict(3))
    plan = Plan(
        tasks=[
            _task("T1", reqs=["F1", "F2"], files=["a.py", "tests/test_a.py"]),
            _task("T2", reqs=["F2"], files=["b.py"]),
        ]
    )
    trace = traceability(scope, plan, {"T1": "done"}, {"T2": ["b.py", "tests/test_b.py"]})
    assert trace["F1"] == {
        "kind": "feature",
        "title": "features item 1",
        "priority": "must",
        "tasks": ["T1"],
        "tests": ["tests/test_a.py"],
        "status": "delivered",
    }
    assert trace["F2"]["status"] == "partial" and trace["F2"]["tests"] == [
        "tests/test_a.py",
        "tests/test_b.py",
    ]
    assert trace["F3"]["status"] == "uncovered"


# -- planning with scripted models --------------------------------------------------------------


def _planner(model: CountingModel, scope: dict[str, Any], **ctx: Any) -> Planner:
    s = Scope.model_validate(scope)
    context = Context(**ctx)
    size = assess(s, context)
    return Planner(Asker(model, context), s, size, size.agents)


@pytest.mark.parametrize(
    ("counts", "n_tasks", "cls"),
    [
        ({"n_features": 3}, 7, "simple"),
        ({"n_features": 15}, 13, "medium"),
        ({"n_features": 35}, 27, "complex"),
    ],
)
def test_each_class_gets_a_plan_of_its_size(
    tmp_path: Path, counts: dict[str, int], n_tasks: int, cls: str
) -> None:
    scope = scope_dict(**counts)
    replies = [
        {"role": "planner", "when": ["return a Scope"], "structured": scope},
        {
            "role": "planner",
            "when": ["Turn the scope into a Plan"],
            "structured": flat_plan(scope, n_tasks),
        },
    ]
    model = CountingModel.from_replies(replies, tmp_path)
    out = asyncio.run(preview_plan(scope_text(scope), model, Context()))
    assert out.problems == [] and out.plan is not None
    lo, hi = out.complexity["tasks"]
    assert out.complexity["cls"] == cls and lo <= len(out.plan.tasks) <= hi
    assert not out.plan.phases and model.stats["calls"] == 2
    assert out.agents == {"simple": 2, "medium": 3, "complex": 5}[cls]


def test_hundreds_of_tasks_for_a_one_liner_are_sent_back(tmp_path: Path) -> None:
    scope = scope_dict(1)
    replies = [
        {"role": "planner", "when": ["return a Scope"], "structured": scope},
        {
            "role": "planner",
            "when": ["PREVIOUS PLAN WAS REJECTED", "the plan has 200 tasks"],
            "structured": flat_plan(scope, 1),
        },
        {"role": "planner", "when": ["into a Plan"], "structured": flat_plan(scope, 200)},
    ]
    model = CountingModel.from_replies(replies, tmp_path)
    out = asyncio.run(preview_plan("Build calc: add two numbers.", model, Context()))
    assert out.problems == [] and out.plan and len(out.plan.tasks) == 1
    assert model.stats["calls"] == 3


def test_monster_scope_is_planned_in_phases_through_per_epic_calls(tmp_path: Path) -> None:
    scope, replies = monster(120)
    model = CountingModel.from_replies(replies, tmp_path, delay=0.02)
    out = asyncio.run(preview_plan(scope_text(scope), model, Context()))
    assert out.problems == [] and out.plan is not None
    plan = out.plan
    s = Scope.model_validate(scope)
    assert out.complexity["cls"] == "monster" and out.agents == 10
    assert len(plan.tasks) >= 100
    assert plan_problems(plan, s, complexity=assess(s, Context())) == []
    assert [p.name for p in plan.phases] == ["mvp", "enhanced", "polish"]
    covered = {r for t in plan.tasks for r in t.requirement_ids}
    assert covered == {r.id for _, r in s.requirements()}
    # MVP first in plan order (the scheduler's priority); no MVP task waits on a later phase.
    phases = [t.phase for t in plan.tasks]
    assert phases == sorted(phases, key=["mvp", "enhanced", "polish"].index)
    n_epics = len(plan.epics)
    assert model.stats["calls"] == 1 + 1 + n_epics + 1  # scope, epics, one per epic, wiring
    assert model.stats["max_in_flight"] >= 4  # the epics were planned in parallel
    assert model.stats["largest_tasks"] <= 11  # no single answer held the whole plan
    by_id = {t.id: t for t in plan.tasks}
    assert "E2-T1" in by_id["E10-T2"].depends_on  # from the wiring call
    assert set(by_id["E10-T1"].depends_on) >= {"E1-T2", "E1-T11"}  # E10 after E1 (its epic)
    registry = [t.id for t in plan.tasks if "pkg/registry.py" in t.files]
    assert len(registry) == n_epics  # one shared file, ordered across epics
    trace = out.to_dict()["traceability"]
    assert trace["F120"]["tasks"] == ["E16-T8"] and trace["F120"]["tests"] == ["tests/test_f120.py"]


def test_broken_epic_answers_are_repaired_epic_by_epic(tmp_path: Path) -> None:
    scope, replies = monster(60)
    # Epic E3's first answer has a cycle and misses a requirement; its repair is fine.
    e3 = next(r for r in replies if r["when"] == ["EPIC E3:"])
    good = e3["structured"]
    broken = json.loads(json.dumps(good))
    broken["tasks"][0]["depends_on"] = [broken["tasks"][1]["id"]]
    broken["tasks"].pop()
    e3["when"] = ["EPIC E3:", "YOUR PREVIOUS ANSWER WAS REJECTED"]
    replies.insert(replies.index(e3) + 1, {**e3, "when": ["EPIC E3:"], "structured": broken})
    # The wiring's first answer names a task that does not exist.
    wiring = replies[-1]
    replies.insert(
        len(replies) - 1,
        {
            "role": "planner",
            "when": ["Wire the cross-epic", "E1-T1 depends on E9-T99"],
            "structured": wiring["structured"],
        },
    )
    wiring["structured"] = {"dependencies": [{"task": "E1-T1", "depends_on": ["E9-T99"]}]}
    model = CountingModel.from_replies(replies, tmp_path)
    out = asyncio.run(preview_plan(scope_text(scope), model, Context()))
    assert out.problems == [], out.problems
    n_epics = len(out.plan.epics) if out.plan else 0
    assert model.stats["calls"] == 1 + 1 + n_epics + 1 + 2  # one repair for E3, one for wiring


def test_cli_plan_preview_prints_class_phases_tasks_and_agents(tmp_path: Path) -> None:
    scope, replies = monster(120)
    model = write_transcript(tmp_path / "t.json", replies)
    scope_file = tmp_path / "scope.md"
    scope_file.write_text(scope_text(scope))
    runner = CliRunner()
    res = runner.invoke(app, ["plan", str(scope_file), "-m", model, "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["ok"] and data["complexity"]["cls"] == "monster"
    assert data["complexity"]["parts"] == {
        "features": 240,
        "integrations": 12,
        "pages": 10,
        "models": 24,
        "apis": 30,
    }
    assert data["agents"] == 10 and len(data["tasks"]) == 166
    assert {t["role"] for t in data["tasks"]} == {"backend", "frontend"}
    res = runner.invoke(app, ["plan", str(scope_file), "-m", model, "--max-agents", "4"])
    assert res.exit_code == 0, res.output
    assert "monster (score 316" in res.output and "agents: 4 at once" in res.output
    assert "MVP: The core works" in res.output and "no code written" in res.output
    assert not list(tmp_path.glob("**/.oldnew"))
    empty = tmp_path / "hello.md"
    empty.write_text("?? !!")
    res = runner.invoke(app, ["plan", str(empty), "-m", model])
    assert res.exit_code == 4 and "no words to read" in res.output


# -- revising a plan ----------------------------------------------------------------------------


def _split_reply(tid: str, n: int, **extra: Any) -> dict[str, Any]:
    subs = [
        {
            "id": str(i),
            "title": f"piece {i}",
            "description": "d",
            "requirement_ids": ["F1"],
            "files": [f"p{i}.py"],
            **extra,
        }
        for i in range(1, n + 1)
    ]
    return {"role": "planner", "when": [f"SPLIT TASK {tid}:"], "structured": {"subtasks": subs}}


def test_split_needs_three_to_five_pieces(tmp_path: Path) -> None:
    plan = Plan(tasks=[_task("T1"), _task("T2", ["T1"])])
    fixed = _split_reply("T1", 3)
    fixed["when"] = [*fixed["when"], "the split has 2 subtasks; give 3 to 5"]
    model = CountingModel.from_replies([fixed, _split_reply("T1", 2)], tmp_path)
    out = asyncio.run(split_task(_planner(model, scope_dict(1)), plan, plan.tasks[0], "slow"))
    assert [t.id for t in out.tasks] == ["T1.1", "T1.2", "T1.3", "T2"]
    assert out.tasks[-1].depends_on == ["T1.1", "T1.2", "T1.3"]
    assert model.stats["calls"] == 2


def test_replan_keeps_finished_tasks_and_renames_started_ones(tmp_path: Path) -> None:
    plan = Plan(tasks=[_task("T1"), _task("T2", ["T1"]), _task("T3", ["T1"]), _task("T4", ["T2"])])
    new = {
        "tasks": [
            {"id": "T1", "title": "restated", "description": "d", "requirement_ids": ["F1"]},
            {
                "id": "T2",
                "title": "x",
                "description": "d",
                "depends_on": ["T1", "T5"],
                "requirement_ids": ["F1"],
            },
            {"id": "T5", "title": "y", "description": "d", "depends_on": ["T1"]},
        ]
    }
    model = CountingModel.from_replies(
        [{"role": "planner", "when": ["A DESIGN FLAW WAS FOUND"], "structured": new}], tmp_path
    )
    statuses = {"T1": "done", "T2": "waiting", "T3": "running", "T4": "pending"}
    out = asyncio.run(
        replan(
            _planner(model, scope_dict(1)),
            plan,
            [{"task": "T2", "reason": "T2 needs T5's parser first"}],
            statuses,
            {"T4"},
            1,
        )
    )
    assert out.removed == {"T2", "T4"} and out.renamed == {"T2": "T2-r1"}
    by_id = {t.id: t for t in out.plan.tasks}
    assert list(by_id) == ["T1", "T2-r1", "T5", "T3"]
    assert by_id["T1"].title == "task T1"  # the finished task is not redefined
    assert by_id["T2-r1"].depends_on == ["T1", "T5"]


def test_long_task_descriptions_are_split_at_plan_time(tmp_path: Path) -> None:
    scope = scope_dict(2)
    plan = flat_plan(scope, 2)
    plan["tasks"][0]["description"] = "Build the core carefully. " * 30  # 780 characters
    pieces = {
        "subtasks": [
            {
                "id": f"S{i}",
                "title": f"piece {i}",
                "description": "d",
                "requirement_ids": ["F1"],
                "depends_on": [] if i == 1 else ["S1"],
                "files": [f"core{i}.py"],
            }
            for i in (1, 2, 3)
        ]
    }
    replies = [
        {"role": "planner", "when": ["return a Scope"], "structured": scope},
        {
            "role": "planner",
            "when": ["SPLIT TASK T1:", "longer than 500 characters"],
            "structured": pieces,
        },
        {"role": "planner", "when": ["into a Plan"], "structured": plan},
    ]
    model = CountingModel.from_replies(replies, tmp_path)
    out = asyncio.run(preview_plan(scope_text(scope), model, Context()))
    assert out.plan is not None and out.problems == []
    by_id = {t.id: t for t in out.plan.tasks}
    assert list(by_id) == ["T1.1", "T1.2", "T1.3", "T2"]
    assert by_id["T1.2"].depends_on == ["T1.1"]  # the pieces' own order is kept
    assert by_id["T2"].depends_on == ["T1.2", "T1.3"]  # T2 waited for T1: now for its last pieces
    assert out.notes == ["split T1 into T1.1, T1.2, T1.3"]


def test_replan_of_a_phased_plan_stays_inside_the_flawed_epic() -> None:
    from oldnew.planning.revise import replan_scope

    plan = Plan(
        tasks=[
            _task("E1-T1", epic="E1"),
            _task("E1-T2", ["E1-T1"], epic="E1"),
            _task("E2-T1", epic="E2"),
            _task("E2-T2", ["E2-T1"], epic="E2"),
            _task("E2-T3", ["E2-T1"], epic="E2"),
        ]
    )
    removed = replan_scope(plan, {"E2-T1"}, {"E1-T2", "E2-T2", "E2-T3"}, {"E1-T1"})
    assert removed == {"E2-T1", "E2-T2", "E2-T3"}
