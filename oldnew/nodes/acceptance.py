"""Acceptance: the tester writes each requirement's tests from its criteria, before any code.

Runs after a valid plan, before the baseline. Each requirement with criteria and no file in
the run's record yet (a re-plan or feedback can add some) gets one tester call, in parallel;
the files are checked (``acceptance.tester``), committed to main in one step whose key makes
a resumed run find it instead of asking again, and recorded in ``RunState.acceptance``. A
tester's question, or replies that stayed unusable, go to a person; the design gate (when on)
is asked here, with the criteria and the tests' names, once the suite is written.
"""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime

from oldnew.acceptance import slug, suite_file
from oldnew.acceptance.checks import tests_by_criterion
from oldnew.acceptance.criteria import NO_TEST, answers_for, testable, untestable_reasons
from oldnew.acceptance.store import commit_suite, suite_on_main
from oldnew.acceptance.tester import Brief, tester_messages, write_tests
from oldnew.budget import metered
from oldnew.context import Context
from oldnew.errors import ModelOutputError
from oldnew.graph.state import RunState
from oldnew.hitl import approvals
from oldnew.hitl.questions import question
from oldnew.host import context_of
from oldnew.models import ModelOverrides, aresolve_model
from oldnew.nodes.common import aemit, arun_workspace
from oldnew.nodes.plan import design_review_artifact
from oldnew.planning.clarify import settle
from oldnew.planning.words import scope_words
from oldnew.recovery.retry import ClassifiedFailure
from oldnew.schemas import AskHuman, Feature, Plan, Question, Scope
from oldnew.supporting import listing, supporting_names
from oldnew.workspace import Workspace

AGAIN = "Ask the tester again"
"""The answer that has the tester write a requirement's tests once more."""
QUESTION_PREFIX = "acceptance-"


def _prefix(rid: str) -> str:
    return f"{QUESTION_PREFIX}{rid}-"


def _asked(questions: dict[str, dict[str, Any]], rid: str) -> list[dict[str, Any]]:
    return [q for qid, q in questions.items() if qid.startswith(_prefix(rid))]


def _kind_of(scope: Scope, rid: str) -> str:
    return next((kind for kind, f in scope.requirements() if f.id == rid), "feature")


def _known_paths(ws: Workspace, plan: Plan) -> set[str]:
    """Return the paths a test may open: main's files, the supporting files, the plan's."""
    return {*ws.tracked_files(), *supporting_names(ws), *(p for t in plan.tasks for p in t.files)}


def _question(qid: str, rid: str, result: AskHuman | Exception) -> Question:
    """Return the question a tester's request (or its unusable replies) puts to a person."""
    no_test = NO_TEST.format(rid=rid)
    if isinstance(result, AskHuman):
        kind = (
            result.kind if result.kind in ("configuration", "design_decision") else "configuration"
        )
        return question(
            kind,
            qid,
            result.question,
            f"Asked by the tester writing the acceptance tests of {rid}.",
            choices=[*result.options, no_test],
            recommended=result.recommended or "",
            free_text=True,
        )
    return question(
        "model_output",
        qid,
        f"The tester's acceptance tests for {rid} could not be used",
        str(result)[:2000],
        choices=[AGAIN, no_test],
        recommended=AGAIN,
        free_text=True,
    )


async def _write_one(
    model: BaseChatModel, brief: Brief, ctx: Context, ws: Workspace, known: set[str]
) -> dict[str, str] | AskHuman | Exception:
    """Have the tester write one requirement's files; a failure is returned, not raised."""
    try:
        return await write_tests(
            model,
            tester_messages(brief),
            brief.requirement,
            known=known,
            root=ws.root,
            retries=ctx.max_output_retries,
            policy=ctx.retry_policy(),
        )
    except (ModelOutputError, ClassifiedFailure) as exc:
        return exc


def _briefs(
    state: RunState, ctx: Context, plan: Plan, wanted: dict[str, Feature], ws: Workspace
) -> list[Brief]:
    """Return what the tester is shown for each wanted requirement (never a task's code)."""
    questions = state.get("questions") or {}
    scope = settle(Scope.model_validate(state["scope"]), questions)
    text = state.get("scope_text") or ""
    listed = listing(ws.root, supporting_names(ws))
    return [
        Brief(
            scope=scope,
            requirement=f,
            kind=_kind_of(scope, rid),
            plan=plan,
            answers=answers_for(scope, f),
            supporting=listed,
            words=scope_words(scope, text, ctx.scope_words_tokens(), wanted=[rid]),
            asked=[
                f"{q['title']} -> {q['answer']}"
                for q in _asked(questions, rid)
                if q["status"] == "answered" and q["answer"] != AGAIN
            ],
        )
        for rid, f in wanted.items()
    ]


def _key(record: dict[str, Any], version: int, rids: list[str]) -> str:
    """Return the commit step's key: the plan version's first suite, or its additions."""
    first = record.get("plan_version") != version or not record.get("commit")
    return f"acceptance-{version}" if first else f"acceptance-{version}-{slug(rids[0])}"


async def _from_tester(
    ws: Workspace, ctx: Context, models: ModelOverrides, briefs: list[Brief]
) -> list[dict[str, str] | AskHuman | Exception]:
    tester = await aresolve_model("tester", ctx, models)
    model = metered(tester, ctx, ws.root, role="tester", activity="acceptance")
    bound = model.bind_tools([AskHuman])
    limit = asyncio.Semaphore(ctx.planner_concurrency)
    known = await asyncio.to_thread(_known_paths, ws, briefs[0].plan)

    async def one(brief: Brief) -> dict[str, str] | AskHuman | Exception:
        async with limit:
            return await _write_one(bound, brief, ctx, ws, known)  # type: ignore[arg-type]

    return list(await asyncio.gather(*(one(b) for b in briefs)))


def _work(
    scope: Scope, questions: dict[str, dict[str, Any]], known: dict[str, Any]
) -> tuple[dict[str, dict[str, Any]], dict[str, Feature]]:
    """Return the record's entries of requirements left without tests, and those due.

    A requirement already in the record, or whose tester question waits for a person, is
    neither; one a person chose no test for (answering the tester) is left without.
    """
    left = {
        rid: {"file": "", "tests": {}, "untestable": why}
        for rid, why in untestable_reasons(scope, questions).items()
        if rid not in known
    }
    wanted: dict[str, Feature] = {}
    for rid, f in testable(scope, questions).items():
        asked = _asked(questions, rid)
        if rid in known or any(q["status"] == "pending" for q in asked):
            continue
        if any(q.get("answer") == NO_TEST.format(rid=rid) for q in asked):
            left[rid] = {"file": "", "tests": {}, "untestable": "a person chose no acceptance test"}
        else:
            wanted[rid] = f
    return left, wanted


async def _results(
    ws: Workspace,
    ctx: Context,
    models: ModelOverrides,
    state: RunState,
    wanted: dict[str, Feature],
    done: str | None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Return requirement id -> its files (or what stopped the tester), and the new files.

    The files of a suite step already on main (``done``: a resumed run) are read from it;
    the tester is asked only for the rest.
    """
    on_main = await asyncio.to_thread(suite_on_main, ws, done) if done else {}
    out: dict[str, Any] = {
        rid: {suite_file(rid): on_main[suite_file(rid)]}
        for rid in wanted
        if suite_file(rid) in on_main
    }
    rest = {rid: f for rid, f in wanted.items() if rid not in out}
    if rest:
        plan = Plan.model_validate(state["plan"])
        briefs = await asyncio.to_thread(_briefs, state, ctx, plan, rest, ws)
        out |= zip(rest, await _from_tester(ws, ctx, models, briefs), strict=True)
    new = {p: t for rid in rest if isinstance(out[rid], dict) for p, t in out[rid].items()}
    return out, new


async def acceptance(
    state: RunState,
    runtime: Runtime[Context],
    config: RunnableConfig,
    *,
    models: ModelOverrides = None,
) -> dict[str, Any]:
    """Have the tester write the acceptance tests of the requirements that have none yet."""
    ctx = context_of(runtime.context)
    ws = await arun_workspace(ctx, config)
    questions = state.get("questions") or {}
    scope = settle(Scope.model_validate(state["scope"]), questions)
    plan = Plan.model_validate(state["plan"])
    record: dict[str, Any] = dict(state.get("acceptance") or {})
    if not ctx.acceptance:
        await aemit(ws, node="acceptance", event="off")
        off = {"status": "off"}
        return {"acceptance": off, **_design_gate(state, ctx, plan, scope, {**record, **off})}
    known = dict(record.get("requirements") or {})
    reqs, wanted = _work(scope, questions, known)
    version = int(state.get("plan_version") or 1)
    asked: dict[str, Any] = {}
    if wanted:
        await aemit(ws, node="acceptance", event="started", requirements=sorted(wanted))
        key = _key(record, version, sorted(wanted))
        done = await asyncio.to_thread(ws.find_task_commit, key)
        results, new = await _results(ws, ctx, models, state, wanted, done)
        for rid, result in results.items():
            if isinstance(result, dict):
                tests = tests_by_criterion(result, wanted[rid])
                reqs[rid] = {"file": suite_file(rid), "tests": tests, "untestable": ""}
                await aemit(ws, node="acceptance", event="written", requirement=rid, tests=tests)
                continue
            q = _question(f"{_prefix(rid)}{len(_asked(questions, rid)) + 1}", rid, result)
            asked[q.id] = q.model_dump()
            await aemit(ws, node="acceptance", event="escalated", requirement=rid, question=q.id)
        commit = done
        if new:
            step = key if done is None else f"{key}-more"
            ids = ", ".join(r for r in results if isinstance(results[r], dict))
            title = f"Acceptance suite written by the tester ({ids})"
            commit = await asyncio.to_thread(commit_suite, ws, new, step, title)
        if commit:
            record |= {"commit": commit, "plan_version": version}
            await aemit(ws, node="acceptance", event="done", commit=commit, files=sorted(new))
    every = {**known, **reqs}
    status = "written" if any(r["file"] for r in every.values()) else "none"
    record |= {"status": status, "requirements": every}
    if asked:
        return {"acceptance": record, "questions": asked}
    return {"acceptance": record, **_design_gate(state, ctx, plan, scope, record)}


def _design_gate(
    state: RunState, ctx: Context, plan: Plan, scope: Scope, record: dict[str, Any]
) -> dict[str, Any]:
    """Ask the design approval (when on), showing the criteria and the tests' names."""
    artifact = design_review_artifact(plan, scope, record)
    return approvals.ask("design", ctx.approvals, ctx.yes, dict(state), artifact)
