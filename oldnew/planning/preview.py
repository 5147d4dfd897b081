"""Plan preview: scope and plan a text without a workspace, a checkpointer or any code."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from rich.console import Console
from rich.table import Table

from oldnew.context import Context
from oldnew.errors import ModelOutputError
from oldnew.models import aclose_http_clients, aresolve_model
from oldnew.planning.clarify import clarification_questions, settle
from oldnew.planning.complexity import assess
from oldnew.planning.extract import ScopeProblem, extract_scope
from oldnew.planning.llm import Asker, Emit, no_emit
from oldnew.planning.planner import Planner, PlanningFailed
from oldnew.planning.revise import split_long_tasks
from oldnew.planning.roles import agent_roles
from oldnew.planning.trace import traceability
from oldnew.schemas import Plan, Scope


@dataclass
class Preview:
    """What ``oldnew plan`` shows: the scope's class and score, and the plan it would run."""

    scope: Scope | None = None
    complexity: dict[str, Any] = field(default_factory=dict)
    agents: int = 0
    plan: Plan | None = None
    problems: list[str] = field(default_factory=list)
    """Why no plan could be made (empty when there is one)."""
    notes: list[str] = field(default_factory=list)
    calls: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (what ``oldnew plan --json`` prints)."""
        plan = self.plan
        return {
            "ok": plan is not None and not self.problems,
            "project": self.scope.title if self.scope else None,
            "complexity": self.complexity,
            "agents": self.agents,
            "roles": agent_roles(plan) if plan else {},
            "phases": [p.model_dump() for p in plan.phases] if plan else [],
            "epics": [e.model_dump() for e in plan.epics] if plan else [],
            "tasks": [t.model_dump() for t in plan.tasks] if plan else [],
            "interface": list(plan.interface) if plan else [],
            "traceability": traceability(self.scope, plan) if plan and self.scope else {},
            "clarifications": [
                c.model_dump(exclude={"answer", "decided_by"}) for c in self.scope.clarifications
            ]
            if self.scope
            else [],
            "criteria": {
                f.id: [c.sentence() for c in f.criteria] for _, f in self.scope.requirements()
            }
            if self.scope
            else {},
            "untestable": {f.id: f.untestable for _, f in self.scope.requirements() if f.untestable}
            if self.scope
            else {},
            "problems": self.problems,
            "notes": self.notes,
            "model_calls": self.calls,
            "seconds": round(self.seconds, 3),
        }


async def preview_plan(
    text: str, model: BaseChatModel, ctx: Context, *, emit: Emit = no_emit
) -> Preview:
    """Scope ``text`` and plan it, repairing a rejected plan as a run would; write nothing."""
    start = time.perf_counter()
    ask = Asker(model, ctx, emit)
    out = Preview()
    await emit(node="scope", event="started", chars=len(text))
    try:
        out.scope = await extract_scope(ask, text)
    except (ScopeProblem, ModelOutputError) as exc:
        out.problems = [f"scope: {exc}"]
        out.calls, out.seconds = ask.calls, time.perf_counter() - start
        return out
    if out.scope.clarifications:
        # A preview asks nobody: it plans on every proposed default, as '--defaults auto' would.
        taken = clarification_questions(out.scope, "auto")
        out.scope = settle(out.scope, {q.id: q.model_dump() for q in taken})
        out.notes.append(
            f"planned on the proposed defaults of {len(taken)} clarifications; a run asks "
            "them as its --defaults setting says"
        )
    size = assess(out.scope, ctx)
    out.complexity = size.to_dict()
    out.agents = ctx.max_agents or size.agents
    requirements = len(out.scope.requirements())
    await emit(node="scope", event="done", requirements=requirements, complexity=size.cls)
    await emit(node="plan", event="started", phased=size.phased, agents=out.agents)
    planner = Planner(ask, out.scope, size, out.agents, text=text)
    problems: list[str] = []
    for _ in range(ctx.max_plan_repairs + 1):
        try:
            plan = await planner.propose(problems)
        except PlanningFailed as exc:
            problems = exc.problems
            continue
        except ModelOutputError as exc:
            problems = [f"plan: {exc}"]
            break
        problems = planner.check(plan)
        if not problems:
            shortened = await split_long_tasks(planner, plan)
            out.plan = shortened.plan
            out.notes += [f"split {k} into {', '.join(v)}" for k, v in shortened.split.items()]
            out.notes += [f"kept {k} whole: {v}" for k, v in shortened.kept.items()]
            await emit(node="plan", event="done", tasks=[t.id for t in out.plan.tasks])
            break
        await emit(event="rejected", problems=problems)
    out.problems = problems
    out.calls, out.seconds = ask.calls, time.perf_counter() - start
    return out


async def run_preview(
    scope_file: Path | str, context: dict[str, Any], *, emit: Emit = no_emit
) -> Preview:
    """Read SCOPE_FILE and preview its plan with the run settings in ``context``.

    ``emit`` receives its progress events as they happen (scoping, sections, epics, plan).
    """
    from oldnew.runs import read_scope

    text = read_scope(scope_file)
    ctx = Context(**{k: v for k, v in context.items() if v is not None})
    try:
        model = await aresolve_model("planner", ctx)
        return await preview_plan(text, model, ctx, emit=emit)
    finally:
        await aclose_http_clients()


def _score_line(c: dict[str, Any]) -> str:
    parts = ", ".join(
        f"{k} {c['counts'][k]} x {v / c['counts'][k]:g} = {v:g}"
        for k, v in c["parts"].items()
        if c["counts"][k]
    )
    return f"{c['cls']} (score {c['score']:g}: {parts or 'no requirement'})"


def _show_criteria(data: dict[str, Any], console: Console) -> None:
    """Print the plan's interface and each requirement's criteria (tests come with the run).

    A preview writes no code and has no workspace, so the tester (whose replies are checked
    against the project's files) does not run here.
    """
    if data["interface"]:
        console.print("\n[bold]interface[/bold] (what the acceptance tests are written against)")
        for item in data["interface"]:
            console.print(f"  - {item}")
    if not any(data["criteria"].values()) and not data["untestable"]:
        return
    console.print("\n[bold]acceptance criteria[/bold] (tests: written when the run starts)")
    for rid, sentences in data["criteria"].items():
        for s in sentences:
            console.print(f"  - {s}")
        if rid in data["untestable"]:
            console.print(f"  - {rid}: no acceptance test ({data['untestable'][rid]})")
        elif not sentences:
            console.print(f"  - {rid}: no criteria (a run asks how to test it)")


def show_preview(preview: Preview, console: Console) -> None:
    """Print a preview for a person: class and score, phases, tasks with roles, agents."""
    data = preview.to_dict()
    if data["project"]:
        console.print(f"[bold]{data['project']}[/bold]")
    if data["complexity"]:
        c = data["complexity"]
        console.print(f"complexity: {_score_line(c)}")
        console.print(
            f"plan size: {len(data['tasks'])} tasks (asked for {c['tasks'][0]} to "
            f"{c['tasks'][1]}; accepted {c['accepted'][0]} to {c['accepted'][1]})"
        )
        roles = ", ".join(f"{r} {n}" for r, n in data["roles"].items())
        console.print(f"agents: {data['agents']} at once ({roles or 'no tasks'})")
    for phase in data["phases"]:
        console.print(f"\n[bold]{phase['name'].upper()}[/bold]: {phase['milestone']}")
        for crit in phase["acceptance_criteria"]:
            console.print(f"  - {crit}")
        epics = [e for e in data["epics"] if e["phase"] == phase["name"]]
        for e in epics:
            console.print(f"  epic {e['id']}: {e['title']} ({len(e['requirement_ids'])} reqs)")
    if data["tasks"]:
        table = Table(title="tasks")
        for col in ("task", "phase", "role", "title", "depends on", "files", "serves"):
            table.add_column(col)
        for t in data["tasks"]:
            table.add_row(
                t["id"],
                t.get("phase") or "-",
                t["role"],
                t["title"],
                ", ".join(t["depends_on"]) or "-",
                ", ".join(t["files"]) or "-",
                ", ".join(t["requirement_ids"]) or "-",
            )
        console.print(table)
    _show_criteria(data, console)
    for c in data["clarifications"]:
        console.print(
            f"[bold]clarify[/bold] ({c['priority']}): {c['question']} "
            f"default: {c['default']}; options: {', '.join(c['options']) or '-'}"
        )
    for note in data["notes"]:
        console.print(f"[yellow]note:[/yellow] {note}")
    for problem in data["problems"]:
        console.print(f"[red]problem:[/red] {problem}")
    console.print(f"model calls: {data['model_calls']} in {data['seconds']:.2f} s; no code written")
