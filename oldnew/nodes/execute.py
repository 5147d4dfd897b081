"""Execution: an event-driven scheduler over per-task graphs, each on its own thread.

LangGraph's supersteps are a barrier: with ``Send``, a task's successor waits for the slowest
sibling. Here each task is its own compiled graph, run on its own checkpointed thread, and a
task starts the moment its own dependencies are done (at most ``max_agents`` at once).

The node is idempotent: on every entry it rebuilds its view from the task threads (no
checkpoint: not started; interrupted: waiting for a person; no next tasks: finished; else:
resume where it stopped), so a run killed at any point resumes without redoing finished work.

Some waits are for the planner, not a person: a task whose fix rounds ran out after failing
``split_after_failures`` times, or that ran past ``task_time_limit``, is to be split; a task
whose coder reports a design flaw is to be re-planned. The scheduler then starts no new task,
lets the running ones finish, and hands the requests to ``plan`` (``replan`` in state).

Budgets: once a run cap is reached no new task starts; a task whose next model call would pass
a cap stops where it is (its thread stays resumable) and is reported in ``budget_stops``.
"""

from __future__ import annotations

import asyncio
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.runnables import RunnableConfig
from langgraph.config import get_stream_writer
from langgraph.pregel import Pregel
from langgraph.runtime import Runtime
from langgraph.types import Command

from oldnew.budget import Caps, ledger_of, run_cap_reached
from oldnew.context import Context
from oldnew.errors import BudgetExceeded, ConfigurationError, UsageError
from oldnew.feedback import new_item
from oldnew.graph.state import RunState, TaskRecord, TaskState
from oldnew.hitl import gates, inbox, records
from oldnew.memory import decisions_from
from oldnew.nodes.common import aemit, arun_workspace
from oldnew.nodes.human import remember_answers
from oldnew.planning.trace import traceability
from oldnew.recovery import policy
from oldnew.recovery.degrade import critical_tasks, dependent_record, stop_for_good
from oldnew.schemas import Plan, Question, Scope
from oldnew.workspace import Workspace

_NAMESPACE = uuid.UUID("5b0c1b56-6a43-4c5e-9d0b-0e1d6f0a7c11")
CHECKPOINTER_KEY = "__pregel_checkpointer"
TaskGraph = Pregel[Any, Any, Any, Any]

Phase = Literal["new", "incomplete", "waiting", "finished"]


def task_thread_id(run_thread: str, plan_version: int, task_id: str) -> str:
    """Return the thread id of a task's own graph (stable across restarts)."""
    return str(uuid.uuid5(_NAMESPACE, f"{run_thread}/plan-{plan_version}/{task_id}"))


def task_config(saver: Any, run_thread: str, plan_version: int, task_id: str) -> RunnableConfig:
    """Return the config that runs (or inspects) one task's thread on the run's saver."""
    return {
        "configurable": {
            "thread_id": task_thread_id(run_thread, plan_version, task_id),
            CHECKPOINTER_KEY: saver,
        },
        "recursion_limit": 200,
    }


@dataclass
class TaskView:
    """What a task's thread says about it."""

    phase: Phase
    values: dict[str, Any] = field(default_factory=dict)
    question: dict[str, Any] | None = None


async def inspect_task(task_graph: TaskGraph, config: RunnableConfig) -> TaskView:
    """Read a task's thread: not started, incomplete, waiting on a question, or finished."""
    snap = await task_graph.aget_state(config)
    if not snap.values:
        return TaskView("new")
    if snap.interrupts:
        question = snap.interrupts[0].value
        return TaskView(
            "waiting",
            dict(snap.values),
            question if isinstance(question, dict) else {"title": str(question)},
        )
    if not snap.tasks:
        return TaskView("finished", dict(snap.values))
    return TaskView("incomplete", dict(snap.values))


def record_of(task_id: str, title: str, view: TaskView) -> TaskRecord:
    """Summarise a task's thread as the run's record of it."""
    v = view.values
    status = {"new": "pending", "incomplete": "running", "waiting": "waiting"}.get(view.phase)
    if status is None:
        status = "done" if v.get("status") == "done" else "blocked"
    evidence = v.get("evidence") or [None]
    return {
        "id": task_id,
        "title": title,
        "status": status,  # type: ignore[typeddict-item]
        "commit": v.get("commit"),
        "fix_rounds": v.get("fix_rounds_total", 0),
        "evidence": evidence[-1],
        "blocker": v.get("blocker"),
        "question": (view.question or {}).get("id") if view.phase == "waiting" else None,
        "limitation": v.get("limitation"),
    }


class Scheduler:
    """Start each task as soon as its dependencies are done; at most ``max_agents`` at once."""

    def __init__(
        self,
        state: RunState,
        ctx: Context,
        ws: Workspace,
        task_graph: TaskGraph,
        saver: Any,
        run_thread: str,
    ) -> None:
        """Prepare to schedule the plan in ``state`` on the task threads of ``run_thread``."""
        self.state, self.ctx, self.ws, self.task_graph = state, ctx, ws, task_graph
        self.plan = Plan.model_validate(state["plan"])
        self.questions = dict(state.get("questions") or {})
        self.answered_now: dict[str, dict[str, Any]] = {}
        """Questions answered through the inbox while this scheduler ran."""
        on = gates.enabled(ctx.gates)
        phases = {t.phase for t in self.plan.tasks}
        self.hold_for_mvp = (
            "mvp" in on
            and not (state.get("approvals") or {}).get("mvp")
            and "mvp" in phases
            and len(phases) > 1
        )
        """Whether later phases wait for the MVP preview gate."""
        version = state.get("plan_version", 1)
        self.titles = {t.id: t.title for t in self.plan.tasks}
        self.phase_of = {t.id: t.phase for t in self.plan.tasks}
        self.deps = {t.id: set(t.depends_on) for t in self.plan.tasks}
        self.cfgs = {t.id: task_config(saver, run_thread, version, t.id) for t in self.plan.tasks}
        self.views: dict[str, TaskView] = {}
        self.records: dict[str, TaskRecord] = {}
        self.writer = get_stream_writer()
        complexity = state.get("complexity") or {}
        self.agents = ctx.max_agents or int(complexity.get("agents") or 3)
        self.requests: dict[str, dict[str, Any]] = {}
        """Task id -> what the planner is asked to do with it (split, re-plan)."""
        self.refused = set(state.get("revision_refused") or [])
        self.split_from = state.get("split_from") or {}
        self.started_at: dict[str, float] = {}
        self.notices: list[str] = []
        self.feedback: dict[str, dict[str, Any]] = {}
        """Feedback given through the inbox while this scheduler ran, for the planner."""
        self.stops: dict[str, dict[str, Any]] = {}
        """"run" or a task id -> the budget cap that stopped it."""
        scope = state.get("scope")
        self.critical = critical_tasks(self.plan, Scope.model_validate(scope) if scope else None)

    def _depth(self, tid: str) -> int:
        depth = 0
        while tid in self.split_from and depth < 100:
            tid, depth = self.split_from[tid], depth + 1
        return depth

    def splittable(self, tid: str) -> bool:
        """Say whether ``tid`` may still be split (not refused, not split too deep)."""
        return tid not in self.refused and self._depth(tid) < self.ctx.max_split_depth

    async def request(
        self, tid: str, kind: str, reason: str, question: dict[str, Any] | None
    ) -> None:
        """Ask the planner to split or re-plan ``tid``; start no new task meanwhile."""
        self.requests[tid] = {"kind": kind, "task": tid, "reason": reason, "question": question}
        await aemit(self.ws, task=tid, node="execute", event=f"request_{kind}", reason=reason)

    async def review(self, tid: str) -> None:
        """Turn a task's wait into a request to the planner when the planner can help."""
        view = self.views[tid]
        if view.phase != "waiting" or tid in self.requests or tid in self.refused:
            return
        q = view.question or {}
        if (self.questions.get(q.get("id", "")) or {}).get("status") == "answered":
            return  # a person decided; the task resumes with the answer
        handoff = policy.handoff(q.get("kind"))  # what its question's kind asks of the planner
        if handoff == "design_flaw" and self.state.get("replans", 0) < self.ctx.max_replans:
            reason = f"{q.get('title', '')} {q.get('detail', '')}".strip()
            await self.request(tid, "design_flaw", reason, q)
        elif handoff == "split" and self.splittable(tid):
            values = view.values
            failures = int(values.get("fix_rounds_total", 0)) + values.get("regenerations", 0) + 1
            if 0 < self.ctx.split_after_failures <= failures:
                await self.request(tid, "split", f"its validation failed {failures} times", q)

    async def load(self) -> None:
        """Rebuild the view of every task from its thread (the node's idempotence)."""
        for tid, title in self.titles.items():
            self.views[tid] = await inspect_task(self.task_graph, self.cfgs[tid])
            self.records[tid] = record_of(tid, title, self.views[tid])
        for tid in self.titles:
            await self.review(tid)

    def start_input(self, tid: str) -> Any:
        """Return what to run ``tid`` with now, or False when it cannot run yet."""
        view = self.views[tid]
        if view.phase == "incomplete":
            return None
        if view.phase == "waiting":
            q = self.questions.get((view.question or {}).get("id", ""))
            return Command(resume=q["answer"]) if q and q["status"] == "answered" else False
        if view.phase == "new" and all(self.records[d]["status"] == "done" for d in self.deps[tid]):
            task = next(t for t in self.plan.tasks if t.id == tid)
            initial: TaskState = {
                "task": task.model_dump(),
                "workspace": str(self.ws.root),
                "project": (self.state.get("scope") or {}).get("title", ""),
                "decisions": decisions_from(self.questions),
                "status": "coding",
                "fix_round": 0,
                "questions_asked": 0,
                "critical": tid in self.critical,
            }
            return initial
        return False

    async def drive(self, tid: str, inp: Any) -> TaskView:
        """Run one task's thread until it finishes or waits; forward its progress events."""
        await aemit(self.ws, task=tid, node="execute", event="task_started")
        stream = self.task_graph.astream(
            inp,
            self.cfgs[tid],
            stream_mode="custom",
            context=self.ctx,
        )
        async for chunk in stream:
            self.writer(chunk)
        return await inspect_task(self.task_graph, self.cfgs[tid])

    def _launch(self, running: dict[asyncio.Task[TaskView], str], started: set[str]) -> None:
        for tid in self.titles:
            if self.requests or self.feedback or "run" in self.stops:
                return  # the planner changes the plan first, or the budget is spent
            if tid in started or len(running) >= self.agents:
                continue
            if self.hold_for_mvp and self.phase_of[tid] != "mvp":
                continue
            blocked = next(
                (d for d in self.deps[tid] if self.records[d]["status"] == "blocked"), None
            )
            if blocked and self.views[tid].phase == "new":
                self.records[tid] |= dependent_record(blocked, self.records[blocked])  # type: ignore[typeddict-item]
                started.add(tid)
                continue
            inp = self.start_input(tid)
            if inp is False:
                continue
            started.add(tid)
            self.records[tid]["status"] = "running"
            self.started_at[tid] = asyncio.get_running_loop().time()
            running[asyncio.create_task(self.drive(tid, inp))] = tid

    async def _settle(self, tid: str, fut: asyncio.Task[TaskView]) -> None:
        try:
            self.views[tid] = fut.result()
        except BudgetExceeded as exc:
            await self._budget_stopped(tid, exc)
            return
        except Exception as exc:  # noqa: BLE001 - one task's failure must not end the run
            error = f"{type(exc).__name__}: {exc}"
            self.records[tid] |= {"status": "blocked", "blocker": error[:2000], "question": None}
            await aemit(
                self.ws,
                task=tid,
                node="execute",
                event="task_failed",
                error=error,
                traceback=traceback.format_exc()[-4000:],
            )
            return
        self.records[tid] = record_of(tid, self.titles[tid], self.views[tid])
        await aemit(
            self.ws,
            task=tid,
            node="execute",
            event=f"task_{self.records[tid]['status']}",
            commit=self.records[tid].get("commit"),
        )

    async def run(self) -> None:
        """Run tasks until none can start and none is running.

        While tasks wait for a person and others still run, the inbox is read between
        tasks: an answer given meanwhile resumes its task without pausing the run.
        """
        running: dict[asyncio.Task[TaskView], str] = {}
        started: set[str] = set()
        while True:
            await self._check_budget()
            self._launch(running, started)
            if not running:
                if await self.read_inbox(started):
                    continue
                return
            timeout = self._time_left(running)
            if self._awaiting_answers():
                timeout = inbox.POLL if timeout is None else min(timeout, inbox.POLL)
            finished, _ = await asyncio.wait(
                running, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            for fut in finished:
                tid = running.pop(fut)
                await self._settle(tid, fut)
                await self.review(tid)
            await self.read_inbox(started)
            if not finished:
                await self._stop_overdue(running)

    def _waiting_on(self, qid: str) -> str | None:
        """Return the task waiting for an answer to ``qid``, if one is."""
        for tid, view in self.views.items():
            if view.phase == "waiting" and (view.question or {}).get("id") == qid:
                return tid
        return None

    def _awaiting_answers(self) -> bool:
        return any(
            v.phase == "waiting"
            and (self.questions.get((v.question or {}).get("id", "")) or {}).get("status")
            != "answered"
            for v in self.views.values()
        )

    async def read_inbox(self, started: set[str]) -> bool:
        """Apply answers given while the run is busy; return whether a task can resume."""
        applied = False
        for letter in await asyncio.to_thread(inbox.letters, self.ws):
            if letter.feedback:
                await self._take_feedback(letter.feedback)
            for qid, raw in letter.answers.items():
                tid = self._waiting_on(qid)
                known = self.questions.get(qid) or self.answered_now.get(qid)
                if tid is None or (known or {}).get("status") == "answered":
                    why = "it was already answered" if known else "no task is waiting on it"
                    await self._notice(f"the answer to {qid} was not applied: {why}")
                    continue
                q = Question.model_validate(self.views[tid].question)
                try:
                    answer = q.check_answer(raw)
                except ValueError as exc:
                    await self._notice(f"the answer to {qid} was not applied: {exc}")
                    continue
                entry = {**q.model_dump(), "status": "answered", "answer": answer}
                self.questions[qid] = self.answered_now[qid] = entry
                started.discard(tid)
                applied = True
                await aemit(
                    self.ws, task=tid, node="execute", event="answer_received", question=qid
                )
            await asyncio.to_thread(inbox.taken, letter)
        return applied

    async def _take_feedback(self, text: str) -> None:
        """Keep feedback given while the run works, for the planner; start no new task."""
        known = {**(self.state.get("feedback") or {}), **self.feedback}
        try:
            item = new_item(text, {**self.state, "feedback": known})
        except UsageError as exc:
            await self._notice(f"feedback was not applied: {exc}")
            return
        self.feedback[item.id] = item.model_dump()
        await aemit(self.ws, node="execute", event="feedback_received", feedback=item.id)

    async def _notice(self, text: str) -> None:
        self.notices.append(text)
        await aemit(self.ws, node="execute", event="inbox_refused", detail=text)

    async def _check_budget(self) -> None:
        """Note a run cap that is reached: from then on no task starts."""
        if "run" not in self.stops:
            ledger = ledger_of(self.ws.root)
            stop = await asyncio.to_thread(run_cap_reached, ledger, Caps.of(self.ctx))
            if stop is not None:
                self.stops["run"] = stop.to_dict()
                await aemit(self.ws, node="execute", event="budget_stop", detail=stop.reason)

    async def _budget_stopped(self, tid: str, exc: BudgetExceeded) -> None:
        """Record a task a cap stopped mid-way; its thread resumes where it stopped."""
        self.views[tid] = await inspect_task(self.task_graph, self.cfgs[tid])
        self.records[tid] = record_of(tid, self.titles[tid], self.views[tid])
        self.records[tid] |= {"status": "blocked", "blocker": f"stopped by the budget: {exc}"}
        self.stops["run" if exc.scope == "run" else tid] = exc.to_dict()
        await aemit(self.ws, task=tid, node="execute", event="budget_stop", detail=exc.reason)

    def _time_left(self, running: dict[asyncio.Task[TaskView], str]) -> float | None:
        """Return seconds until the first running task passes the time limit (None: never)."""
        limit = self.ctx.task_time_limit
        ends = [self.started_at[t] + limit for t in running.values()]
        if limit <= 0 or not ends:
            return None
        return max(0.01, min(ends) - asyncio.get_running_loop().time())

    async def _stop_overdue(self, running: dict[asyncio.Task[TaskView], str]) -> None:
        """Stop each task that ran past the time limit: split it, or else escalate or limit it.

        Its partial work stays in its worktree (and, when it is not split, on a branch).
        """
        now = asyncio.get_running_loop().time()
        limit = self.ctx.task_time_limit
        for fut, tid in list(running.items()):
            if fut.done() or now - self.started_at[tid] < limit:
                continue  # (a task that just finished is settled by the next wait)
            snap = await self.task_graph.aget_state(self.cfgs[tid])
            if "commit" in snap.next:
                self.started_at[tid] += 60  # never stop a task while it merges into main
                continue
            fut.cancel()
            await asyncio.gather(fut, return_exceptions=True)
            running.pop(fut)
            self.views[tid] = await inspect_task(self.task_graph, self.cfgs[tid])
            self.records[tid] = record_of(tid, self.titles[tid], self.views[tid])
            if self.views[tid].phase == "finished":
                continue
            reason = f"it ran {now - self.started_at[tid]:.0f} s, past the {limit:g} s limit"
            if self.splittable(tid):
                await self.request(tid, "split", reason, None)
            elif await stop_for_good(self.task_graph, self.cfgs[tid], self.ws, reason):
                await aemit(self.ws, task=tid, node="execute", event="stopped", reason=reason)
                self.started_at[tid] = now  # it only runs on to its question or its end
                running[asyncio.create_task(self.drive(tid, None))] = tid
            else:
                self.records[tid] |= {"status": "blocked", "blocker": f"stopped: {reason}"}

    def replan_requests(self) -> list[dict[str, Any]]:
        """Return the requests for the planner, each with the tasks not started yet."""
        open_ids = sorted(t for t, v in self.views.items() if v.phase == "new")
        return [{**r, "open": open_ids} for r in self.requests.values()]

    def traceability(self) -> dict[str, dict[str, Any]]:
        """Return requirement -> tasks -> tests as far as the tasks got."""
        if not self.state.get("scope"):
            return {}
        written = {t: list(v.values.get("files") or []) for t, v in self.views.items()}
        statuses = {t: str(r["status"]) for t, r in self.records.items()}
        scope = Scope.model_validate(self.state["scope"])
        return traceability(scope, self.plan, statuses, written)

    def new_questions(self) -> dict[str, dict[str, Any]]:
        """Return the questions to record in the run's state.

        Those of waiting tasks not answered yet (as escalation records), those answered
        through the inbox, and stale ones settled (answered elsewhere, or cancelled).
        """
        out: dict[str, dict[str, Any]] = dict(self.answered_now)
        records_of = records.Annotator(
            self.plan, {t: str(r["status"]) for t, r in self.records.items()}
        )
        for tid, view in self.views.items():
            if tid in self.requests:
                continue  # the planner handles it; the question goes to a person if it cannot
            if view.phase == "waiting" and view.question:
                q = Question.model_validate(view.question)
                if q.id not in self.questions or self.questions[q.id]["status"] == "pending":
                    out[q.id] = records_of.annotate(q.model_dump())
        waiting = {
            (v.question or {}).get("id") for v in self.views.values() if v.phase == "waiting"
        }
        for qid, known in self.questions.items():
            owner = known.get("task_id")
            if known["status"] != "pending" or not owner or qid in waiting or qid in out:
                continue
            # Its task no longer waits on it: answered in a session that did not record it,
            # or the task was re-planned away.
            given = (self.views.get(str(owner)) or TaskView("new")).values.get("answer") or {}
            if given.get("question") == known["title"]:
                out[qid] = {"status": "answered", "answer": given.get("answer")}
            else:
                out[qid] = {"status": "cancelled"}
        return out

    def gate_update(self) -> dict[str, Any]:
        """Open the MVP preview or the final review gate when its moment has come."""
        done = {t for t, r in self.records.items() if r["status"] == "done"}
        state = {**self.state, "questions": self.questions}
        if self.hold_for_mvp:
            mvp = [t for t in self.plan.tasks if t.phase == "mvp"]
            if all(t.id in done for t in mvp):
                milestone = next((p.milestone for p in self.plan.phases if p.name == "mvp"), "")
                artifact = "\n".join(
                    [f"MVP milestone: {milestone}", *self._done_lines([t.id for t in mvp])]
                )
                return gates.ask("mvp", self.ctx.gates, self.ctx.yes, state, artifact)
        elif done == set(self.titles) and not self.requests:
            artifact = "\n".join(["Delivered tasks:", *self._done_lines(list(self.titles))])
            return gates.ask("final", self.ctx.gates, self.ctx.yes, state, artifact)
        return {}

    def _done_lines(self, ids: list[str]) -> list[str]:
        return [
            f"- {t} {self.titles[t]}: commit {(self.records[t].get('commit') or '')[:12]}"
            for t in ids
        ]


async def execute(
    state: RunState,
    runtime: Runtime[Context],
    config: RunnableConfig,
    *,
    task_graph: TaskGraph,
) -> dict[str, Any]:
    """Run every task whose dependencies are done, up to max_agents at once."""
    ctx = runtime.context or Context()
    ws = await arun_workspace(ctx, config)
    saver = config.get("configurable", {}).get(CHECKPOINTER_KEY)
    if saver is None:
        raise ConfigurationError(
            "oldnew's graph needs a checkpointer: compile it with build_graph(checkpointer=...) "
            "or run it inside a LangGraph server"
        )
    run_thread = str(config["configurable"]["thread_id"])
    if runtime.store is not None and task_graph.store is not runtime.store:
        # Task threads are separate runs: lend them the run's store (memory) explicitly.
        task_graph = task_graph.copy(update={"store": runtime.store})
    scheduler = Scheduler(state, ctx, ws, task_graph, saver, run_thread)
    await scheduler.load()
    await scheduler.run()
    if scheduler.answered_now:
        answered = {q: {"answer": v["answer"]} for q, v in scheduler.answered_now.items()}
        await remember_answers(state, runtime, config, scheduler.answered_now, answered)
    gate = scheduler.gate_update()
    return {
        "tasks": scheduler.records,
        "questions": {**scheduler.new_questions(), **gate.get("questions", {})},
        "approvals": gate.get("approvals", {}),
        "replan": scheduler.replan_requests(),
        "traceability": scheduler.traceability(),
        "notices": scheduler.notices,
        "budget_stops": scheduler.stops,
        "feedback": scheduler.feedback,
    }
