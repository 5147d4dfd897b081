"""Graph builders: export builders, compile at the edges.

The outer graph::

    enter -> scope -> plan -> acceptance -> baseline -> execute <-> ask -> human -> deliver
                                                          ^ |
                                                          | v
                                                       milestone

(``enter`` goes on from where a run stands: a new scope, a restart, feedback; ``ask`` marks
the run ``waiting`` and announces its questions, then ``human`` pauses for the answers; ``baseline``
runs the gates once on the commit a run on an existing repository started from, so that no
task is blamed for what failed there already; ``acceptance`` has the tester write the
acceptance suite from the requirements' criteria, before any code; ``milestone`` checks main
as a whole when a
phase is done: tags it and starts a web app's preview, or adds the task that fixes what its
gates found)

and, run by ``execute`` once per task on the task's own thread::

    code -> dependencies -> validate -> commit
              ^                 |
              |                 v
              +------------ fix        (code, dependencies, validate, fix -> escalate ->
                                        code | fix | dependencies | end)

``dependencies`` checks, approves, locks and installs what the task's manifests declare;
the gates then run against that environment.

A stuck task goes from validate back to code once (a fresh start); a task that is not
critical and cannot be finished ends in record_limitation; a task the scheduler stopped at its
time limit enters at ``stop`` (then escalate or record_limitation).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.store.base import BaseStore

from oldnew.budget.graph import budgeted
from oldnew.context import Context
from oldnew.execution.lineage import OuterNode, forkable
from oldnew.execution.threads import TaskRunner, run_here
from oldnew.graph import routing
from oldnew.graph.state import InputState, OutputState, RunState, TaskState
from oldnew.models import ModelOverrides
from oldnew.nodes.acceptance import acceptance
from oldnew.nodes.baseline import baseline
from oldnew.nodes.checks import Gates, commit, validate
from oldnew.nodes.coding import code, fix
from oldnew.nodes.deliver import deliver
from oldnew.nodes.dependencies import dependencies
from oldnew.nodes.enter import enter
from oldnew.nodes.escalate import escalate
from oldnew.nodes.execute import execute
from oldnew.nodes.human import ask, human
from oldnew.nodes.limitation import record_limitation, stop
from oldnew.nodes.milestone import milestone
from oldnew.nodes.plan import plan
from oldnew.nodes.scope import scope


def _outer(node: OuterNode, name: str) -> OuterNode:
    """Wrap an outer node: working time and budget stops; the branch followed across forks."""
    return forkable(budgeted(node, name), name)


def build_task_graph(
    *, models: ModelOverrides = None, gates: Gates | None = None
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """Compile one task's pipeline; ``execute`` runs it on the task threads' saver."""
    g = StateGraph(TaskState, context_schema=Context)
    g.add_node("code", partial(code, models=models))
    g.add_node("dependencies", dependencies)
    g.add_node("validate", partial(validate, gates=gates))
    g.add_node("fix", partial(fix, models=models))
    g.add_node("commit", partial(commit, gates=gates))
    g.add_node("escalate", escalate)
    g.add_node("record_limitation", record_limitation)
    g.add_node("stop", stop)
    g.add_conditional_edges(START, routing.task_entry)
    g.add_conditional_edges("code", routing.after_code)
    g.add_conditional_edges("dependencies", routing.after_dependencies)
    g.add_conditional_edges("validate", routing.after_validate)
    g.add_conditional_edges("fix", routing.after_fix)
    g.add_conditional_edges("commit", routing.after_commit)
    g.add_edge("record_limitation", END)
    return g.compile(name="task")


def build_graph(
    *,
    models: ModelOverrides = None,
    checkpointer: BaseCheckpointSaver[Any] | None = None,
    store: BaseStore | None = None,
    gates: Gates | None = None,
    runner: TaskRunner | None = None,
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """Compile oldnew's graph.

    Args:
        models: a chat model for every role, or a mapping role -> model ("planner", "coder",
            "fixer", "tester"). Roles left out get their model from the run's context spec.
        checkpointer: where runs are saved; required to run (tasks run on their own threads
            on it). Leave it None when a LangGraph server or a parent graph supplies one: the
            task threads are then kept in the workspace's own SQLite file.
        store: a LangGraph store for memory, passed through to the nodes.
        gates: what validates a tree; None: ``nodes.checks.run_gates``, the quality gates in
            the sandbox. A stand-in is for benchmarks of the graph itself (``bench scale``).
        runner: what advances each task's thread; None: in this process
            (``execution.threads.run_here``). ``oldnew.cluster`` hands tasks to workers.

    """
    task_graph = build_task_graph(models=models, gates=gates)
    g = StateGraph(
        RunState, context_schema=Context, input_schema=InputState, output_schema=OutputState
    )
    # _outer: working time counts, a budget cap reached inside goes to deliver, a fork
    # of the run puts the branch back where the fork point left it.
    g.add_node("enter", enter)
    g.add_node("scope", _outer(partial(scope, models=models), "scope"))
    g.add_node("plan", _outer(partial(plan, models=models), "plan"))
    g.add_node("acceptance", _outer(partial(acceptance, models=models), "acceptance"))
    g.add_node("baseline", _outer(baseline, "baseline"))
    run_tasks = partial(
        execute, task_graph=task_graph, saver=checkpointer, runner=runner or run_here
    )
    g.add_node("execute", _outer(run_tasks, "execute"))
    # LangGraph's add_node overloads do not cover nodes that take runtime and config.
    g.add_node("milestone", _outer(partial(milestone, models=models, gates=gates), "milestone"))
    g.add_node("ask", ask)  # type: ignore[arg-type]
    g.add_node("human", human)  # type: ignore[arg-type]
    g.add_node("deliver", _outer(partial(deliver, gates=gates), "deliver"))
    g.add_edge(START, "enter")
    g.add_conditional_edges("scope", routing.after_scope)
    g.add_conditional_edges("plan", routing.after_plan)
    g.add_conditional_edges("acceptance", routing.after_acceptance)
    g.add_conditional_edges("baseline", routing.after_baseline)
    g.add_conditional_edges("execute", routing.after_execute)
    g.add_conditional_edges("milestone", routing.after_milestone)
    g.add_edge("ask", "human")
    g.add_conditional_edges("human", routing.after_human)
    g.add_edge("deliver", END)
    return g.compile(checkpointer=checkpointer, store=store, name="oldnew")
