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
from oldnew.acceptance.criteria import NO_TEST, answers_for, testable, untestable_reasons
from oldnew.acceptance.store import commit_suite, suite_on_main
from oldnew.acceptance.tester import Brief, suite_tests, tester_messages, write_tests
from oldnew.budget import metered
from oldnew.context import Context
from oldnew.errors import ModelOutputError
from oldnew.graph.state import RunState
from oldnew.hitl import approvals
from oldnew.hitl.questions import question
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
        return question(
            result.kind,
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
    state: RunState, scope: Scope, plan: Plan, wanted: dict[str, Feature], ws: Workspace
) -> list[Brief]:
    ctx_words = state.get("scope_text") or ""
    listed = listing(ws.root, supporting_names(ws))
    questions = state.get("questions") or {}
    return [
        Brief(
            scope=scope,
            requirement=f,
            kind=_kind_of(scope, rid),
            plan=plan,
            answers=answers_for(scope, f),
            supporting=listed,
            words=scope_words(scope, ctx_words, 4000, wanted=[rid]),
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


async def acceptance(
    state: RunState,
    runtime: Runtime[Context],
    config: RunnableConfig,
    *,
    models: ModelOverrides = None,
) -> dict[str, Any]:
    """Have the tester write the acceptance tests of the requirements that have none yet."""
    ctx = runtime.context or Context()
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
    reqs: dict[str, dict[str, Any]] = {
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
            reqs[rid] = {"file": "", "tests": {}, "untestable": "a person chose no acceptance test"}
            continue
        wanted[rid] = f
    version = int(state.get("plan_version") or 1)
    update: dict[str, Any] = {}
    if wanted:
        await aemit(ws, node="acceptance", event="started", requirements=sorted(wanted))
        key = _key(record, version, sorted(wanted))
        done = await asyncio.to_thread(ws.find_task_commit, key)
        if done is not None:  # a resumed run: the suite is on main already
            on_main = await asyncio.to_thread(suite_on_main, ws, done)
            results: list[Any] = [{suite_file(r): on_main.get(suite_file(r), "")} for r in wanted]
        else:
            results = await _from_tester(ws, ctx, models, _briefs(state, scope, plan, wanted, ws))
        files: dict[str, str] = {}
        asked_now: dict[str, Any] = {}
        for (rid, f), result in zip(wanted.items(), results, strict=True):
            if isinstance(result, dict):
                files |= result
                tests = suite_tests(result, f)
                reqs[rid] = {"file": suite_file(rid), "tests": tests, "untestable": ""}
                await aemit(ws, node="acceptance", event="written", requirement=rid, tests=tests)
                continue
            q = _question(f"{_prefix(rid)}{len(_asked(questions, rid)) + 1}", rid, result)
            asked_now[q.id] = q.model_dump()
            await aemit(ws, node="acceptance", event="escalated", requirement=rid, question=q.id)
        if files:
            written = ", ".join(r for r in reqs if reqs[r]["file"])
            title = f"Acceptance suite written by the tester ({written})"
            commit = done or await asyncio.to_thread(commit_suite, ws, files, key, title)
            record |= {"commit": commit, "plan_version": version}
            await aemit(ws, node="acceptance", event="done", commit=commit, files=sorted(files))
        if asked_now:
            update["questions"] = asked_now
    all_reqs = {**known, **reqs}
    status = "written" if any(r["file"] for r in all_reqs.values()) else "none"
    record |= {"status": status, "requirements": all_reqs}
    update["acceptance"] = record
    if update.get("questions"):
        return update
    gate = _design_gate(state, ctx, plan, scope, record)
    return {**update, **gate}


def _design_gate(
    state: RunState, ctx: Context, plan: Plan, scope: Scope, record: dict[str, Any]
) -> dict[str, Any]:
    """Ask the design approval (when on), showing the criteria and the tests' names."""
    artifact = design_review_artifact(plan, scope, record)
    return approvals.ask("design", ctx.approvals, ctx.yes, dict(state), artifact)
