"""Escalation: a task asks a person, and the answer decides where it goes next.

``skip`` on a task that is not critical makes it a known limitation (``record_limitation``
keeps its partial work on a branch and the run delivers the rest); on a critical task it ends
the task blocked, as the option's label says.

A contested acceptance test (``test_contradiction``, reviewed by the tester already: the
question holds the review) goes back to the one who contested it with the person's ruling;
``revise`` first commits the tester's revision to main, as the tester's.

``interrupt()`` is the first thing this node does: a resumed node re-runs from its top, so
nothing before it may have side effects.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from langgraph.types import Command, interrupt

from oldnew.acceptance.review import commit_revision
from oldnew.deps.ledger import Decision, Ledger
from oldnew.deps.manifest import Dependency, package_names
from oldnew.graph.state import TaskState
from oldnew.hitl.questions import (
    APPROVE,
    BUILD,
    INSTEAD,
    KEEP,
    MOCK,
    REJECT,
    RETRY,
    REVISE,
    SKIP,
    WITHOUT,
    limitation_of,
)
from oldnew.nodes.common import aemit, aopen_workspace
from oldnew.recovery import policy

Way = Literal["code", "fix", "dependencies", "record_limitation", "__end__"]


async def escalate(state: TaskState) -> Command[Way]:
    """Wait for a person's answer to the task's question; the answer says where to go.

    Code again with the answer, fix with it as guidance (its kind's row in the policy says
    which), record a known limitation, or end a skipped critical task blocked.
    """
    question = state["question"] or {}
    answer = str(interrupt(question))
    ws = await aopen_workspace(state["workspace"])
    task_id = state["task"]["id"]
    await aemit(
        ws,
        task=task_id,
        node="escalate",
        event="answered",
        question=question.get("id"),
        answer=answer,
    )
    offered = question.get("options") or []
    answered: dict[str, Any] = {
        "question": None,
        # What the coder is told on its next attempt: the answer, and what it answers.
        "answer": {
            "question": question.get("title", ""),
            "answer": answer,
            "kind": question.get("kind"),
            "asked": question.get("asked_by") in ("coder", "fixer"),
            "detail": str(question.get("detail", ""))[:2000],
            "choice": next((o.get("label", "") for o in offered if o.get("key") == answer), ""),
        },
    }
    if answer == SKIP:
        reason = f"skipped by a person: {question.get('title', '')}"
        if not state.get("critical", True):
            limitation = limitation_of(question, reason)
            update = {**answered, "status": "limiting", "limitation": limitation}
            return Command(update=update, goto="record_limitation")
        return Command(update={**answered, "status": "blocked", "blocker": reason}, goto="__end__")
    if answer == MOCK:
        # Built against a stand-in: delivered, but never reported as if the real thing ran.
        answered["stand_in"] = {
            "kind": "stand_in",
            "reason": f"built against a stand-in (mock), chosen by a person: "
            f"{question.get('title', '')}",
            "detail": str(question.get("detail", ""))[:1500],
            "options": [
                "Give the real service or package, then re-run the task (oldnew "
                "feedback) to build and test against it"
            ],
        }
    if question.get("kind") == "test_contradiction":
        return await _contested_answer(state, question, answer, answered)
    if policy.resume(question.get("kind")) == "dependencies":
        return await _dependencies_answer(state, question, answer, answered)
    if policy.resume(question.get("kind")) == "fix":
        guidance = None if answer == RETRY else answer
        update = {**answered, "status": "fixing", "fix_round": 0, "guidance": guidance}
        return Command(update=update, goto="fix")
    return Command(update={**answered, "status": "coding"}, goto="code")


async def _contested_answer(
    state: TaskState, question: dict[str, Any], answer: str, answered: dict[str, Any]
) -> Command[Way]:
    """Go on after a person ruled on a contested acceptance test: kept, revised, or in words.

    ``revise`` commits the tester's revision (kept in the question) to main, under a key
    that names the task and the question, so a resumed run does not commit it twice. The
    coder (or fixer) that contested the test is told what was decided, and goes on.
    """
    ws = await aopen_workspace(state["workspace"])
    review, task_id = question.get("review") or {}, state["task"]["id"]
    where = review.get("file") or "the acceptance suite"
    if answer == REVISE and review.get("revision"):
        n = str(question.get("id", "")).rsplit("-q", 1)[-1]
        commit = await asyncio.to_thread(commit_revision, ws, task_id, n, review)
        await aemit(
            ws,
            task=task_id,
            node="escalate",
            event="suite_revised",
            file=where,
            commit=commit,
            question=question.get("id"),
        )
        told = (
            f"The test was revised: the tester's revision of {where}, approved by a person, is "
            f"on main (the suite shown is it). {review.get('reason', '')} Make the code pass it."
        )
    elif answer == KEEP:
        told = (
            f"A person kept the acceptance test in {where}: it stands, and the code must pass "
            f"it. The tester's review: {review.get('reason', '(none)')}"
        )
    else:
        told = (
            "A person ruled on your claim that an acceptance test contradicts the requirement "
            f"(the test itself stays as it is): {answer.strip()}"
        )
    update = {**answered, "answer": {**answered["answer"], "answer": told, "asked": True}}
    if question.get("asked_by") == "coder":
        return Command(update={**update, "status": "coding"}, goto="code")
    update |= {"status": "fixing", "fix_round": 0, "guidance": told}
    return Command(update=update, goto="fix")


def _packages(question: dict[str, Any]) -> list[Dependency]:
    out = []
    for key in question.get("packages") or []:
        ecosystem, _, name = str(key).partition(":")
        if ecosystem in ("python", "node") and name:
            out.append(Dependency(ecosystem, name, ""))  # type: ignore[arg-type]
    return out


async def _dependencies_answer(
    state: TaskState, question: dict[str, Any], answer: str, answered: dict[str, Any]
) -> Command[Way]:
    """Go on after a dependency question: install, or code again without the packages.

    ``approve`` records a person's approval and runs the dependencies step again; so does
    ``retry`` (a cause fixed outside, the index back), and ``build`` where it was offered (a
    source build allowed: the step builds the packages' wheels in the sandbox). ``without``
    (or ``reject``) records the rejection: the coder does without the packages. Any other
    answer names packages to use instead, which the person thereby approves.
    """
    ws = await aopen_workspace(state["workspace"])
    ledger, task_id = Ledger(ws.meta), state["task"]["id"]
    deps, qid = _packages(question), question.get("id")
    names = ", ".join(d.name for d in deps) or "the packages asked about"
    offered = [o.get("key") for o in question.get("options") or []]
    build = answer == BUILD and BUILD in offered  # elsewhere "build" names a package
    if answer in (APPROVE, RETRY) or build:
        if answer in (APPROVE, BUILD):
            decision: Decision = "person" if answer == APPROVE else "source_build"
            await asyncio.to_thread(ledger.decide, deps, decision, task=task_id, question=qid)
        return Command(update={**answered, "status": "validating"}, goto="dependencies")
    if answer in (WITHOUT, REJECT):
        await asyncio.to_thread(ledger.decide, deps, "rejected", task=task_id, question=qid)
        told = (
            f"A person rejected {names}: do the task without them and remove them from "
            "the manifest."
        )
    elif answer == INSTEAD:
        await asyncio.to_thread(ledger.decide, deps, "rejected", task=task_id, question=qid)
        told = (
            f"Do not use {names}: use another package that provides the same (one that "
            "publishes wheels), or the standard library."
        )
    else:
        await asyncio.to_thread(ledger.decide, deps, "rejected", task=task_id, question=qid)
        chosen = package_names(answer, deps[0].ecosystem if deps else "python")
        if chosen:
            await asyncio.to_thread(ledger.decide, chosen, "person", task=task_id, question=qid)
            named = ", ".join(d.name for d in chosen)
            told = f"A person chose {named} instead of {names}: declare and use that."
        else:
            told = f"A person rejected {names} and said: {answer.strip()}"
    reply = {**answered["answer"], "answer": told}
    return Command(update={**answered, "answer": reply, "status": "coding"}, goto="code")
