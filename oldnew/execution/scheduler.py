"""The scheduler: start each task the moment its own dependencies are done.

LangGraph's supersteps are a barrier: with ``Send``, a task's successor waits for the slowest
sibling. Here each task is its own compiled graph on its own checkpointed thread
(``execution.threads``), at most ``agents`` at once, started as soon as it can run.

It is rebuilt from the task threads on every entry (``load``), so a run killed at any point
resumes without redoing finished work. It launches tasks, settles them when they end or wait,
and watches three kinds of deadline: a task past ``task_time_limit``, a task past
``task_wait_limit`` and a run cap of the budget. A task's time is its own work: the seconds it
waited for model replies (its wait clock, ``budget.wait``, run by the meter around every call
and by ``with_retry`` around its backoff) are not counted, so a slow model is never mistaken
for a stuck task; its model wait has a cap of its own, so a provider slow for ever still ends
in the task's stop path.
What people say meanwhile (answers, feedback) comes from the inbox (``hitl.inbox``).

Some waits are for the planner, not a person: a task whose fix rounds ran out after failing
``split_after_failures`` times, or that ran past the time limit, is to be split; a task whose
coder reports a design flaw is to be re-planned. The scheduler then starts no new task, lets
the running ones finish, and hands the requests to the planner.
"""

from __future__ import annotations

import asyncio
import traceback
from typing import Any

from langgraph.config import get_config, get_stream_writer
from langgraph.types import Command, StreamMode

from oldnew.acceptance.review import task_requirements
from oldnew.budget import Caps, ledger_of, run_cap_reached, wait_clock
from oldnew.context import Context
from oldnew.errors import BudgetExceeded, StateError, UsageError
from oldnew.execution.streams import subgraph_relay
from oldnew.execution.threads import TaskRunner, TaskThreads, TaskView, record_of, run_here
from oldnew.feedback.items import new_item
from oldnew.graph.state import RunState, TaskRecord, TaskState
from oldnew.hitl import inbox
from oldnew.memory import decisions_from
from oldnew.milestones import is_web
from oldnew.nodes.common import aemit
from oldnew.planning.graphops import critical_first
from oldnew.recovery import policy
from oldnew.recovery.degrade import dependent_record
from oldnew.schemas import Plan
from oldnew.web.targets import from_scope
from oldnew.workspace import Workspace

Running = dict[asyncio.Task[TaskView], str]


async def _stop(running: Running) -> None:
    """Cancel the tasks still running when the run stops, and wait until they have.

    A run that stops on an error (or is cancelled: its worker lost the database) must not
    leave its tasks working behind it: a retry of the run would meet them in the merge queue.
    """
    for fut in running:
        fut.cancel()
    await asyncio.gather(*running, return_exceptions=True)


PER_AGENT = 4
"""Tasks ready or running per agent: the number of agents follows the work."""
FEWEST_AGENTS = 3
"""Agents at least (or the cap, if lower): a small run keeps what it always had."""
DEFAULT_AGENT_CAP = 10
"""Agents at most when neither the run (``max_agents``) nor its complexity class says."""


class Scheduler:
    """Start each task as soon as its dependencies are done, the critical path first.

    How many run at once follows the work: one agent per ``PER_AGENT`` tasks that are ready
    or running, at least ``FEWEST_AGENTS``, at most ``agents`` (the run's cap). A task waiting
    in the merge queue holds no agent (its validation runs in the queue, not in an agent's
    time).
    """

    def __init__(
        self,
        state: RunState,
        plan: Plan,
        threads: TaskThreads,
        ctx: Context,
        ws: Workspace,
        *,
        agents: int,
        critical: set[str],
        hold_for_mvp: bool,
        runner: TaskRunner = run_here,
    ) -> None:
        """Prepare to schedule ``plan`` on its task threads, at most ``agents`` at once.

        ``runner`` advances a task's thread: here, or on workers (``oldnew.cluster``).
        """
        self.state, self.plan, self.threads, self.ctx, self.ws = state, plan, threads, ctx, ws
        self.runner = runner
        self.cap, self.critical, self.hold_for_mvp = agents, critical, hold_for_mvp
        self.agents = 0
        """Agents now (``_size``), announced when it changes."""
        self.order = critical_first(plan.tasks)
        self.merging: set[str] = set()
        """Tasks waiting in the merge queue: they hold no agent."""
        self.wake = asyncio.Event()
        """Set when a task enters the merge queue: its agent is free for another task."""
        self.questions = dict(state.get("questions") or {})
        self.answered_now: dict[str, dict[str, Any]] = {}
        """Questions answered through the inbox while this scheduler ran."""
        self.titles = {t.id: t.title for t in plan.tasks}
        self.deps = {t.id: set(t.depends_on) for t in plan.tasks}
        self.phase_of = {t.id: t.phase for t in plan.tasks}
        self.views: dict[str, TaskView] = {}
        self.records: dict[str, TaskRecord] = {}
        self.writer = get_stream_writer()
        self.relay = subgraph_relay(get_config())
        self.requests: dict[str, dict[str, Any]] = {}
        """Task id -> what the planner is asked to do with it (split, re-plan)."""
        self.refused = set(state.get("revision_refused") or [])
        self.split_from = state.get("split_from") or {}
        self.started_at: dict[str, float] = {}
        self.wait_grace: dict[str, float] = {}
        """Task id -> model wait not charged to it (given while it merges into main)."""
        self.notices: list[str] = []
        self.feedback: dict[str, dict[str, Any]] = {}
        """Feedback given through the inbox while this scheduler ran, for the planner."""
        self.stops: dict[str, dict[str, Any]] = {}
        """"run" or a task id -> the budget cap that stopped it."""

    # -- what the planner is asked ----------------------------------------------------------

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
        if view.stage != "waiting" or tid in self.requests or tid in self.refused:
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

    def replan_requests(self) -> list[dict[str, Any]]:
        """Return the requests for the planner, each with the tasks not started yet."""
        open_ids = sorted(t for t, v in self.views.items() if v.stage == "new")
        return [{**r, "open": open_ids} for r in self.requests.values()]

    # -- launching and settling -------------------------------------------------------------

    async def load(self) -> None:
        """Rebuild the view of every task from its thread (the node's idempotence).

        On the lineage the run's state names, a task whose thread moved past the checkpoint
        the state left it at is resumed from there (a fork of the run, ``threads.fork_moved``).
        """
        lineage = self.state.get("lineage")
        same = lineage is not None and lineage.get("key") == self.threads.lineage
        known = self.state.get("tasks") or {}
        for tid, title in self.titles.items():
            head = known[tid].get("head") if same and tid in known else None
            if await self.threads.fork_moved(tid, head):
                await aemit(self.ws, task=tid, node="execute", event="task_forked", head=head)
                await self._ask_again(tid)
            self.views[tid] = await self.threads.inspect(tid)
            self.records[tid] = record_of(tid, title, self.views[tid])
        for tid in self.titles:
            await self.review(tid)

    async def _ask_again(self, tid: str) -> None:
        """Ask a forked task's question again on a branch of its thread, to take a new answer.

        Its head checkpoint keeps the answer it was given then, which a resume there would
        hand back; a replay of the head (no input) drops it and interrupts afresh (the asking
        node interrupts before anything else it does).
        """
        if (await self.threads.inspect(tid)).stage != "waiting":
            return
        config = self.threads.config(tid)
        self.threads.forks.pop(tid)
        async for _ in self.threads.graph.astream(
            None, config, stream_mode="custom", context=self.ctx
        ):
            pass

    def start_input(self, tid: str) -> Any:
        """Return what to run ``tid`` with now, or False when it cannot run yet."""
        if not self._ready(tid):
            return False
        view = self.views[tid]
        if view.stage == "incomplete":
            return None
        if view.stage == "waiting":
            return Command(resume=self.questions[view.question_id or ""]["answer"])
        task = next(t for t in self.plan.tasks if t.id == tid)
        scope = self.state.get("scope") or {}
        initial: TaskState = {
            "task": task.model_dump(),
            "workspace": str(self.ws.root),
            "project": scope.get("title", ""),
            "stack": scope.get("stack") or "python",
            "packages": list(scope.get("packages") or []),
            "decisions": decisions_from(self.questions),
            "requirements": task_requirements(scope, task.requirement_ids),
            "status": "coding",
            "fix_round": 0,
            "questions_asked": 0,
            "critical": tid in self.critical,
            # A milestone's fix task is validated with that milestone's gate set.
            "targets": from_scope(scope).to_dict()
            if task.milestone and is_web(self.state)
            else None,
        }
        return initial

    async def drive(self, tid: str, inp: Any) -> TaskView:
        """Run one task's thread until it finishes or waits; forward its progress.

        Its events go to the run's ``custom`` stream with the task's id; its graph's
        ``updates`` to the run's subgraph stream when the caller asked for one.
        """
        await aemit(self.ws, task=tid, node="execute", event="task_started")
        config = self.threads.config(tid)
        self.threads.forks.pop(tid, None)  # branched now: from here on, its latest checkpoint
        modes: list[StreamMode] = ["custom", "updates"] if self.relay else ["custom"]

        def on_chunk(mode: str, chunk: Any) -> None:
            if mode == "custom":
                self._track_merge(tid, chunk)
                self.writer({"task": tid, **chunk} if isinstance(chunk, dict) else chunk)
            elif self.relay is not None:
                self.relay(tid, mode, chunk)

        await self.runner(self.threads.graph, tid, inp, config, self.ctx, on_chunk, modes)
        return await self.threads.inspect(tid)

    def _track_merge(self, tid: str, chunk: Any) -> None:
        """Note a task entering the merge queue (its agent is free) or leaving it."""
        if not isinstance(chunk, dict) or chunk.get("node") != "commit":
            return
        if chunk.get("event") == "queued":
            self.merging.add(tid)
            self.wake.set()
        elif chunk.get("event") in ("rejected", "conflict", "escalated"):
            self.merging.discard(tid)  # back to its fixer, or to a person: work again
        # (landed: it holds no agent until it ends, which settles it)

    def _ready(self, tid: str) -> bool:
        """Say whether ``tid`` could start now, with an agent free (cheap: no input is made)."""
        view = self.views[tid]
        if view.stage == "waiting":
            q = self.questions.get(view.question_id or "")
            return bool(q and q["status"] == "answered")
        return view.stage == "incomplete" or (
            view.stage == "new" and all(self.records[d]["status"] == "done" for d in self.deps[tid])
        )

    def _working(self, running: Running) -> int:
        """Return the running tasks that hold an agent (not waiting in the merge queue)."""
        return len(running) - len(self.merging & set(running.values()))

    async def _size(self, running: Running, started: set[str]) -> None:
        """Set how many agents work now from the tasks ready or running; say when it changes."""
        working = self._working(running)
        ready = sum(1 for t in self.order if t not in started and self._ready(t))
        want = min(self.cap, max(FEWEST_AGENTS, -(-(working + ready) // PER_AGENT)))
        if want != self.agents:
            self.agents = want
            reason = (
                f"{working + ready} task(s) ready or running, one agent per {PER_AGENT}, "
                f"at least {min(FEWEST_AGENTS, self.cap)}, at most {self.cap}"
            )
            await aemit(self.ws, node="execute", event="agents", agents=want, reason=reason)

    def _launch(self, running: Running, started: set[str]) -> None:
        busy = self._working(running)
        for tid in self.order:
            if self.requests or self.feedback or "run" in self.stops:
                return  # the planner changes the plan first, or the budget is spent
            if tid in started or busy >= self.agents:
                continue
            if self.hold_for_mvp and self.phase_of[tid] != "mvp":
                continue
            blocked = next(
                (d for d in self.deps[tid] if self.records[d]["status"] == "blocked"), None
            )
            if blocked and self.views[tid].stage == "new":
                self.records[tid] |= dependent_record(blocked, self.records[blocked])  # type: ignore[typeddict-item]
                started.add(tid)
                continue
            inp = self.start_input(tid)
            if inp is False:
                continue
            started.add(tid)
            self.records[tid]["status"] = "running"
            self._start_clock(tid)
            running[asyncio.create_task(self.drive(tid, inp))] = tid
            busy += 1

    async def _settle(self, tid: str, fut: asyncio.Task[TaskView]) -> None:
        try:
            self.views[tid] = fut.result()
        except BudgetExceeded as exc:
            await self._budget_stopped(tid, exc)
            return
        except StateError:
            raise  # the run's own state cannot be kept: no task can go on, the run stops
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
        running: Running = {}
        try:
            await self._run(running)
        finally:
            await _stop(running)

    async def _run(self, running: Running) -> None:
        started: set[str] = set()
        while True:
            await self._check_budget()
            await self._size(running, started)
            self._launch(running, started)
            if not running:
                if await self.read_inbox(started):
                    continue
                return
            timeout = self._time_left(running)
            if self._awaiting_answers():
                timeout = inbox.POLL if timeout is None else min(timeout, inbox.POLL)
            self.wake.clear()
            woken = asyncio.ensure_future(self.wake.wait())
            waits: set[asyncio.Future[Any]] = {*running, woken}
            done, _ = await asyncio.wait(
                waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            woken.cancel()
            finished = [fut for fut in running if fut in done]
            for fut in finished:
                tid = running.pop(fut)
                self.merging.discard(tid)
                await self._settle(tid, fut)
                await self.review(tid)
            await self.read_inbox(started)
            if not finished and not self.wake.is_set():
                await self._stop_overdue(running)

    # -- what people say meanwhile ----------------------------------------------------------

    def _awaiting_answers(self) -> bool:
        return any(
            v.stage == "waiting"
            and (self.questions.get(v.question_id or "") or {}).get("status") != "answered"
            for v in self.views.values()
        )

    async def read_inbox(self, started: set[str]) -> bool:
        """Apply answers given while the run is busy; return whether a task can resume."""
        waiting = {
            v.question_id: (tid, v.question or {}) for tid, v in self.views.items() if v.question_id
        }
        known = {**self.questions, **self.answered_now}
        got = await asyncio.to_thread(inbox.read_answers, self.ws, waiting, known)
        for text in got.feedback:
            await self._take_feedback(text)
        for text in got.notices:
            await self._notice(text)
        for qid, entry in got.answered.items():
            self.questions[qid] = self.answered_now[qid] = entry
            tid = waiting[qid][0]
            started.discard(tid)
            await aemit(self.ws, task=tid, node="execute", event="answer_received", question=qid)
        return bool(got.resumed)

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

    # -- deadlines: the budget and the time limit -------------------------------------------

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
        self.views[tid] = await self.threads.inspect(tid)
        self.records[tid] = record_of(tid, self.titles[tid], self.views[tid])
        self.records[tid] |= {"status": "blocked", "blocker": f"stopped by the budget: {exc}"}
        self.stops["run" if exc.scope == "run" else tid] = exc.to_dict()
        await aemit(self.ws, task=tid, node="execute", event="budget_stop", detail=exc.reason)

    def _start_clock(self, tid: str) -> None:
        """Start timing ``tid``'s work now: its elapsed time and its model wait from zero."""
        self.started_at[tid] = asyncio.get_running_loop().time()
        self.wait_grace[tid] = 0.0
        wait_clock(self.ws.root, tid).reset()

    def _worked(self, tid: str, now: float) -> float:
        """Return the seconds ``tid`` worked since it started: elapsed, less its model wait."""
        return now - self.started_at[tid] - wait_clock(self.ws.root, tid).waited()

    def _waited(self, tid: str) -> float:
        """Return the seconds of model wait ``tid`` is charged (less any grace it was given)."""
        return wait_clock(self.ws.root, tid).waited() - self.wait_grace.get(tid, 0.0)

    def _time_left(self, running: Running) -> float | None:
        """Return seconds until the first running task may pass a limit (None: never).

        Work and model wait each grow at most as fast as the clock, so the soonest a task can
        pass ``task_time_limit`` is the work it has left, and ``task_wait_limit`` the wait it
        has left; a limit whose clock stands still (work while the model is awaited, wait
        while the task works) is looked at again every half second.
        """
        limit, wait_limit = self.ctx.task_time_limit, self.ctx.task_wait_limit
        if (limit <= 0 and wait_limit <= 0) or not running:
            return None
        now = asyncio.get_running_loop().time()
        lefts = []
        for tid in running.values():
            waiting = wait_clock(self.ws.root, tid).waiting()
            if limit > 0:
                left = limit - self._worked(tid, now)
                lefts.append(max(0.5, left) if waiting else left)
            if wait_limit > 0:
                left = wait_limit - self._waited(tid)
                lefts.append(left if waiting else max(0.5, left))
        return max(0.01, min(lefts))

    def _overdue(self, tid: str, now: float) -> tuple[str, bool] | None:
        """Return why ``tid`` must stop and whether splitting it may help, or None."""
        limit, wait_limit = self.ctx.task_time_limit, self.ctx.task_wait_limit
        worked = self._worked(tid, now)
        if limit > 0 and worked >= limit:
            waited = now - self.started_at[tid] - worked
            return (
                f"it worked {worked:.0f} s, past the {limit:g} s limit (not counting "
                f"{waited:.0f} s waiting for the model)",
                True,
            )
        waited = self._waited(tid)
        if wait_limit > 0 and waited >= wait_limit:
            return (
                f"it waited {waited:.0f} s for the model, past the {wait_limit:g} s limit on "
                "model wait (task_wait_limit, env OLDNEW_TASK_WAIT_LIMIT): the model or its "
                "provider is too slow",
                False,
            )
        return None

    async def _stop_overdue(self, running: Running) -> None:
        """Stop each task past a limit: split it, or else escalate or limit it.

        A task past ``task_time_limit`` is split when it may be; one past ``task_wait_limit``
        is not (a smaller task waits for the same slow model). Its partial work stays in its
        worktree (and, when it is not split, on a branch).
        """
        now = asyncio.get_running_loop().time()
        for fut, tid in list(running.items()):
            overdue = None if fut.done() else self._overdue(tid, now)
            if overdue is None:
                continue  # (a task that just finished is settled by the next wait)
            if "commit" in await self.threads.next_nodes(tid):
                self.started_at[tid] += 60  # never stop a task while it merges into main
                self.wait_grace[tid] = self.wait_grace.get(tid, 0.0) + 60
                continue
            reason, split = overdue
            fut.cancel()
            await asyncio.gather(fut, return_exceptions=True)
            running.pop(fut)
            self.views[tid] = await self.threads.inspect(tid)
            self.records[tid] = record_of(tid, self.titles[tid], self.views[tid])
            if self.views[tid].stage == "finished":
                continue
            if split and self.splittable(tid):
                await self.request(tid, "split", reason, None)
            elif self.views[tid].values.get("task"):
                # The task's graph takes the stop through its entry: it keeps the partial
                # work, then escalates (a critical task) or records a known limitation.
                await aemit(self.ws, task=tid, node="execute", event="stopped", reason=reason)
                self._start_clock(tid)  # it only runs on to its question or its end
                running[asyncio.create_task(self.drive(tid, {"stop": reason}))] = tid
            else:
                self.records[tid] |= {"status": "blocked", "blocker": f"stopped: {reason}"}
