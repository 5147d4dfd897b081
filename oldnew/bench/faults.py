"""The fault benchmark: a synthetic plan through the whole graph under injected faults.

``oldnew bench faults --tasks 200 --seed 1`` plans N independent tasks (each a small module
and its test), runs them through execute (code -> validate -> fix -> commit, escalations and
all) with a model that injects transient faults, malformed output and broken code at the given
rates, and with per-task configuration blockers and design flaws. It prints what was
delivered, what was escalated (by class), silent failures, retries, tokens and wall time.
Tokens are the run's usage ledger (``oldnew.budget``), as ``oldnew status`` reports them;
``tokens_seen_by_model`` is what the model itself returned, a cross-check.
"""

from __future__ import annotations

import re
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from langchain_core.callbacks.manager import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from oldnew.budget import ledger_of
from oldnew.recovery.faults import RETRIED, FaultInjectingChatModel, unit

_TASK = re.compile(r"TASK T(\d+):")


def blocker_of(seed: int, index: int, config_rate: float, design_rate: float) -> str | None:
    """Return which per-task blocker task ``index`` has: configuration, design or none."""
    coin = unit(seed, "blocker", index)
    if coin < config_rate:
        return "configuration"
    if coin < config_rate + design_rate:
        return "design"
    return None


def task_files(i: int) -> str:
    """Return the correct file blocks for synthetic task ``i``."""
    return (
        f"Module {i} and its test.\n\nFILE: mods/m{i}.py\n```python\n"
        f"def f{i}(x):\n    return x + {i}\n```\n\n"
        f"FILE: tests/test_m{i}.py\n```python\nfrom mods.m{i} import f{i}\n\n\n"
        f"def test_f{i}():\n    assert f{i}(1) == {i + 1}\n```\n"
    )


class SyntheticProjectModel(BaseChatModel):
    """Writes synthetic task i's module and test; asks a person for blocked tasks."""

    seed: int = 0
    config_rate: float = 0.0
    design_rate: float = 0.0

    @property
    def _llm_type(self) -> str:
        return "synthetic"

    def bind_tools(self, tools: Any, **kwargs: Any) -> SyntheticProjectModel:
        """Tools change nothing: the AskHuman call is produced by name."""
        return self

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        text = "\n".join(str(m.content) for m in messages)
        match = _TASK.search(text)
        if match is None:
            raise ValueError("the synthetic model only writes tasks")
        i = int(match.group(1))
        blocker = blocker_of(self.seed, i, self.config_rate, self.design_rate)
        answered = "A PERSON ANSWERED YOUR QUESTION" in text
        usage = {
            "input_tokens": len(text) // 4,
            "output_tokens": 60,
            "total_tokens": len(text) // 4 + 60,
        }
        if blocker and not answered and "fails validation" not in text:
            kind = "configuration" if blocker == "configuration" else "design_decision"
            question = (
                f"Task T{i} needs SERVICE_{i}_API_KEY; set it or choose a mock"
                if kind == "configuration"
                else f"Task T{i}'s constraints contradict each other (circular dependency "
                "between the billing and ledger modules): which one gives way?"
            )
            message = AIMessage(
                content="",
                usage_metadata=usage,
                tool_calls=[
                    {
                        "name": "AskHuman",
                        "id": f"call_{i}",
                        "args": {
                            "kind": kind,
                            "question": question,
                            "options": ["mock", "skip"],
                            "recommended": "mock",
                        },
                    }
                ],
            )
        else:
            message = AIMessage(content=task_files(i), usage_metadata=usage)
        return ChatResult(generations=[ChatGeneration(message=message)])


def synthetic_plan(tasks: int, depends_on: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """Return the run state a planner would leave for N synthetic tasks (``T1``..``TN``).

    Task i writes ``mods/m{i}.py`` and its test (:func:`task_files`); ``depends_on`` gives
    each task's prerequisites (none by default). Seeded with ``aupdate_state(..., as_node=
    "plan")``, it stands in for the planner's answer: the run's own routing takes it from there.
    """
    deps = depends_on or {}
    features = [{"id": f"F{i}", "title": f"function f{i}"} for i in range(1, tasks + 1)]
    plan = {
        "tasks": [
            {
                "id": f"T{i}",
                "title": f"module m{i}",
                "role": "backend",
                "description": f"mods/m{i}.py with f{i}(x) = x + {i}, and its test",
                "files": [f"mods/m{i}.py", f"tests/test_m{i}.py"],
                "requirement_ids": [f"F{i}"],
                "depends_on": list(deps.get(f"T{i}", [])),
            }
            for i in range(1, tasks + 1)
        ]
    }
    return {
        "scope_text": "synthetic",
        "plan_version": 1,
        "status": "executing",
        "scope": {"title": "bench", "summary": "synthetic", "features": features},
        "plan": plan,
        "tasks": {
            t["id"]: {"id": t["id"], "title": t["title"], "status": "pending", "commit": None}
            for t in plan["tasks"]
        },
    }


async def run_fault_bench(
    *,
    tasks: int,
    seed: int,
    rates: dict[str, float],
    config_rate: float,
    design_rate: float,
    max_agents: int,
    workdir: Path | None = None,
) -> dict[str, Any]:
    """Run the benchmark and return its figures as one JSON-ready dict."""
    from oldnew.context import Context
    from oldnew.runs import open_graph, outcome_of, run_config, stream
    from oldnew.workspace import Workspace

    root = workdir or Path(tempfile.mkdtemp(prefix="oldnew-bench-"))
    run_id = str(uuid.uuid4())
    ws = Workspace.create(root / "ws", run_id, {"context": {"bench": "faults"}})
    inner = SyntheticProjectModel(seed=seed, config_rate=config_rate, design_rate=design_rate)
    model = FaultInjectingChatModel(inner=inner, rates=rates, seed=seed)
    ctx = Context(
        workspace=str(ws.root),
        max_agents=max_agents,
        memory_path="off",
        retry_base_delay=0.0,
        rate_limit_delay=0.0,
        max_transient_retries=8,
        max_fix_rounds=3,
        test_timeout=60.0,
    )
    seeded = synthetic_plan(tasks)
    config = run_config(run_id)
    crashed = None
    start = time.monotonic()
    with ws.lock():
        async with open_graph(ws, models=model) as graph:
            # The synthetic plan stands in for the planner's answer (the bench measures
            # execution, not planning); the run's own routing takes it from there.
            await graph.aupdate_state(config, seeded, as_node="plan")
            try:
                await stream(graph, None, config, ctx, None)
            except Exception as exc:  # noqa: BLE001 - a crash is a figure of the benchmark
                crashed = f"{type(exc).__name__}: {exc}"
            outcome = await outcome_of(graph, ws, run_id)
    wall = time.monotonic() - start
    return _figures(outcome, tasks, seed, config_rate, design_rate, model, wall, crashed, ws)


def _figures(
    outcome: Any,
    tasks: int,
    seed: int,
    config_rate: float,
    design_rate: float,
    model: FaultInjectingChatModel,
    wall: float,
    crashed: str | None,
    ws: Any,
) -> dict[str, Any]:
    by_id = {t["id"]: t for t in outcome.tasks}
    questions = {q["id"]: q for q in outcome.questions}
    blockers = {f"T{i}": blocker_of(seed, i, config_rate, design_rate) for i in range(1, tasks + 1)}
    recoverable = [tid for tid, b in blockers.items() if b is None]
    delivered = [tid for tid, t in by_id.items() if t["status"] == "done"]
    escalated: Counter[str] = Counter()
    silent = []
    for tid, t in by_id.items():
        if t["status"] == "done":
            continue
        q = questions.get(t.get("question") or "")
        if q is not None and q.get("options"):
            escalated[q["kind"]] += 1
        elif t.get("blocker"):
            escalated["blocked"] += 1
        else:
            silent.append(tid)
    events = ws.events()
    spend = ledger_of(ws.root).spend()
    return {
        "tasks": tasks,
        "seed": seed,
        "status": outcome.status,
        "delivered": len(delivered),
        "recoverable": len(recoverable),
        "recoverable_delivered": len(set(recoverable) & set(delivered)),
        "escalated": dict(escalated),
        "non_recoverable_with_options": sum(
            1
            for tid, b in blockers.items()
            if b
            and (q := questions.get(by_id.get(tid, {}).get("question") or ""))
            and q.get("options")
        ),
        "non_recoverable": tasks - len(recoverable),
        "silent_failures": len(silent),
        "silent_tasks": silent[:20],
        "crashes": 1 if crashed else 0,
        "crash": crashed,
        "faults_injected": dict(model.injected),
        "retries": sum(model.injected[f] for f in RETRIED),
        "regenerations": sum(
            1 for e in events if e.get("node") == "fix" and e.get("event") == "started"
        ),
        "tokens": spend["tokens"],
        "tokens_by_activity": {a: r["tokens"] for a, r in spend["by_activity"].items()},
        "tokens_seen_by_model": model.usage["total_tokens"],
        "model_calls_metered": spend["calls"],
        "wall_s": round(wall, 2),
    }
