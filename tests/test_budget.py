"""Budgets: accounting of every model call, prices, caps, and runs stopped and resumed by them."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLE
from fake_openai import FakeOpenAIServer, Reply
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import BaseModel
from typer.testing import CliRunner

from oldnew.budget import (
    Caps,
    Ledger,
    budget_summary,
    cap_reached,
    metered,
    parse_prices,
    price_for,
    resume_command,
    run_cap_reached,
)
from oldnew.budget.ledger import USAGE_FILE
from oldnew.cli import app
from oldnew.context import DEFAULT_PRICES, Context
from oldnew.errors import BudgetExceeded, ConfigurationError
from oldnew.models import ScriptedChatModel, ScriptedReply, make_chat_model
from oldnew.recovery.retry import RetryPolicy, with_retry
from oldnew.workspace import META, Workspace

# --- prices ----------------------------------------------------------------------------


def test_prices_parse_and_match_only_the_model_or_its_releases() -> None:
    table = parse_prices(DEFAULT_PRICES)
    assert table["gpt-4o"].cost(1_000_000, 1_000_000) == pytest.approx(12.5)
    assert price_for("gpt-4o-2024-08-06", table) == table["gpt-4o"]
    assert price_for("gpt-4o-mini-2024-07-18", table) == table["gpt-4o-mini"]
    assert price_for("openai/gpt-4.1-mini", table) == table["gpt-4.1-mini"]
    assert price_for("scripted", table) is not None
    # Never guessed: a model that only shares a prefix is unpriced.
    assert price_for("o3-pro", table) is None
    assert price_for("gpt-4o-audio-preview", table) is None
    assert price_for("fake-model", table) is None
    assert parse_prices(" a=1/2 , ,b=0.5/0 ") == {
        "a": table["gpt-4o"].__class__(1.0, 2.0),
        "b": table["gpt-4o"].__class__(0.5, 0.0),
    }


@pytest.mark.parametrize("bad", ["gpt-4o", "gpt-4o=2.5", "=1/2", "x=a/b", "x=-1/2"])
def test_a_bad_price_table_says_how_to_write_it(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="model=INPUT/OUTPUT"):
        parse_prices(bad)


# --- the ledger ------------------------------------------------------------------------


def _record(
    ledger: Ledger, task: str | None, activity: str, tin: int, tout: int, price: Any
) -> None:
    ledger.record_call(
        role="coder" if task else "planner",
        activity=activity,
        task=task,
        model="gpt-4o" if price else "mystery",
        input_tokens=tin,
        output_tokens=tout,
        price=price,
    )


def test_ledger_sums_per_call_task_activity_and_run_and_survives_a_restart(tmp_path: Path) -> None:
    price = parse_prices("gpt-4o=2.5/10")["gpt-4o"]
    path = tmp_path / USAGE_FILE
    ledger = Ledger(path)
    _record(ledger, None, "scope", 1000, 200, price)
    _record(ledger, "T1", "code", 3000, 1000, price)
    _record(ledger, "T1", "fix", 500, 500, None)
    _record(ledger, "T2", "code", 100, 50, price)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('{"kind": "call", "input_tok')  # a kill mid-write

    again = Ledger(path)  # another process, or the next resume
    spend = again.spend()
    assert spend["calls"] == 4
    assert spend["tokens"] == 1200 + 4000 + 1000 + 150
    assert spend["cost_usd"] == pytest.approx((4100 * 2.5 + 1250 * 10) / 1e6)
    assert spend["unpriced_models"] == ["mystery"]
    assert spend["by_task"]["T1"]["tokens"] == 5000
    assert spend["by_activity"]["code"]["calls"] == 2
    assert spend["by_role"]["planner"]["tokens"] == 1200
    assert again.totals()[2] == {"T1": 5000, "T2": 150}

    # A line appended after the torn one is read; the torn one is skipped.
    _record(again, "T2", "fix", 10, 10, price)
    assert Ledger(path).spend()["calls"] == 5
    assert ledger.spend()["by_task"]["T2"]["tokens"] == 170  # the first reader catches up


def test_a_ledger_from_an_older_version_names_the_activity_phase(tmp_path: Path) -> None:
    path = tmp_path / USAGE_FILE
    old = {"kind": "call", "role": "coder", "phase": "code", "task": "T1", "model": "m"}
    path.write_text(
        json.dumps({**old, "input_tokens": 5, "output_tokens": 5, "cost_usd": 0}) + "\n"
    )
    ledger = Ledger(path)
    _record(ledger, "T1", "code", 1, 1, None)
    spend = ledger.spend()
    assert (
        spend["by_activity"]["code"]["calls"] == 2 and spend["by_activity"]["code"]["tokens"] == 12
    )
    assert spend["by_phase"] == spend["by_activity"]  # the former key, for older readers


def test_working_time_counts_spans_and_keeps_a_killed_span_to_its_last_call(
    tmp_path: Path,
) -> None:
    path = tmp_path / USAGE_FILE
    ledger = Ledger(path)
    with open(path, "w", encoding="utf-8") as fh:
        # An earlier process: one span closed at 5 s, one killed after a call at 2.5 s.
        fh.write(json.dumps({"kind": "span", "span": "a", "span_s": 5.0}) + "\n")
        fh.write(json.dumps({"kind": "call", "span": "b", "span_s": 2.5}) + "\n")
    span = ledger.open_span()
    assert 7.5 <= ledger.work_seconds() < 8.5
    ledger.close_span(span)
    assert Ledger(path).work_seconds() == pytest.approx(ledger.work_seconds())
    stop = run_cap_reached(ledger, Caps(seconds=7.0))
    assert stop is not None and stop.flag == "--budget-seconds" and stop.scope == "run"
    assert run_cap_reached(ledger, Caps(seconds=60.0)) is None


def test_caps_stop_the_run_or_one_task(tmp_path: Path) -> None:
    price = parse_prices("gpt-4o=2.5/10")["gpt-4o"]
    ledger = Ledger(tmp_path / USAGE_FILE)
    _record(ledger, "T1", "code", 800, 200, price)
    assert cap_reached(ledger, Caps(), "T1") is None  # 0 means no cap
    tokens = cap_reached(ledger, Caps(tokens=1000), None)
    assert tokens is not None and tokens.flag == "--budget-tokens" and tokens.spent == 1000
    cost = run_cap_reached(ledger, Caps(cost=0.001))
    assert cost is not None and cost.flag == "--budget-cost"
    task = cap_reached(ledger, Caps(task_tokens=1000), "T1")
    assert task is not None and task.scope == "task" and task.task == "T1"
    assert cap_reached(ledger, Caps(task_tokens=1000), "T2") is None
    assert cap_reached(ledger, Caps(task_tokens=1000), None) is None


def test_resume_command_raises_every_cap_that_stopped(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    stops = {
        "run": BudgetExceeded(
            "x", scope="run", flag="--budget-tokens", spent=2300, cap=2000, task=None
        ).to_dict(),
        "T2": BudgetExceeded(
            "y", scope="task", flag="--budget-task-tokens", spent=650, cap=600, task="T2"
        ).to_dict(),
    }
    assert resume_command(ws, stops) == (
        f"oldnew resume --workspace {ws.root} --budget-task-tokens 1300 --budget-tokens 4600"
    )


# --- the meter ---------------------------------------------------------------------------


class Answer(BaseModel):
    """A structured answer."""

    value: int


def _scripted() -> ScriptedChatModel:
    return ScriptedChatModel(
        replies=[
            ScriptedReply(
                when=("structured",),
                role=None,
                text="",
                structured={"value": 3},
                tool=None,
                args=None,
            ),
            ScriptedReply(
                when=(), role=None, text="x" * 400, structured=None, tool=None, args=None
            ),
        ],
        role="planner",
    )


def test_every_call_is_metered_structured_ones_too_and_a_cap_stops_the_next(
    tmp_path: Path,
) -> None:
    ws = tmp_path
    ctx = Context(budget_tokens=105, prices="scripted=1/2")
    model = metered(_scripted(), ctx, ws, role="planner", activity="plan")
    attempts = 0

    async def call() -> Any:
        nonlocal attempts
        attempts += 1
        return await model.ainvoke([HumanMessage("plain " * 40)])

    async def scenario() -> None:
        reply = await model.ainvoke([HumanMessage("hello")])
        assert isinstance(reply, AIMessage)
        structured = model.with_structured_output(Answer, include_raw=True)
        out = await structured.ainvoke([HumanMessage("structured please")])
        assert out["parsed"] == Answer(value=3)
        # The cap is reached now (>= 105 tokens); the next call never starts and is not retried.
        with pytest.raises(BudgetExceeded) as stop:
            await with_retry(call, RetryPolicy(max_attempts=5, base_delay=0))
        assert stop.value.flag == "--budget-tokens" and stop.value.scope == "run"

    asyncio.run(scenario())
    assert attempts == 1
    calls = [json.loads(x) for x in (ws / META / USAGE_FILE).read_text().splitlines()]
    assert [(c["role"], c["activity"], c["task"], c["model"]) for c in calls] == [
        ("planner", "plan", None, "scripted")
    ] * 2
    # ScriptedChatModel's usage is an estimate: 4 characters a token.
    assert calls[0]["output_tokens"] == 100
    assert calls[0]["cost_usd"] == pytest.approx((calls[0]["input_tokens"] * 1 + 100 * 2) / 1e6)


class _NoUsageModel(BaseChatModel):
    """Answers without any usage report, as some OpenAI-compatible servers do."""

    @property
    def _llm_type(self) -> str:
        return "no-usage"

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content="ok"))])


def test_a_call_without_usage_is_counted_and_reported(tmp_path: Path) -> None:
    model = metered(_NoUsageModel(), Context(), tmp_path, role="coder", activity="code", task="T1")
    asyncio.run(model.ainvoke("hi"))
    summary = budget_summary(Workspace(tmp_path), Context())
    assert summary["spend"]["calls"] == 1
    assert summary["spend"]["calls_without_usage"] == 1
    assert summary["spend"]["unpriced_models"] == ["no-usage"]


def test_chat_openai_usage_from_the_server_is_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    replies = iter([Reply.text("plain answer"), Reply.json({"value": 7})])
    with FakeOpenAIServer(lambda request: next(replies)) as srv:
        monkeypatch.setenv("OPENAI_API_KEY", "test-key")
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        ctx = Context(prices="fake-model=1/2")

        async def scenario() -> None:
            chat = make_chat_model("openai:fake-model", role="coder")
            model = metered(chat, ctx, tmp_path, role="coder", activity="code", task="T1")
            await model.ainvoke([HumanMessage("write it")])
            structured = model.with_structured_output(Answer, method="json_schema")
            assert await structured.ainvoke([HumanMessage("a number")]) == Answer(value=7)

        asyncio.run(scenario())
        requests = srv.requests
    assert len(requests) == 2
    calls = [json.loads(x) for x in (tmp_path / META / USAGE_FILE).read_text().splitlines()]
    assert len(calls) == 2
    for call in calls:
        # The fake server's usage (prompt/completion tokens), as ChatOpenAI parsed it.
        assert call["input_tokens"] > 0 and call["output_tokens"] > 0
        assert call["usage_reported"] is True
        assert call["model"] == "fake-model"
        assert call["cost_usd"] == pytest.approx(
            (call["input_tokens"] + 2 * call["output_tokens"]) / 1e6
        )
    assert calls[0]["output_tokens"] == len("plain answer") // 4


# --- whole runs ------------------------------------------------------------------------


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def _report(ws: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ws / META / "report.json").read_text())
    return data


@pytest.mark.timeout(300)
@pytest.mark.usefixtures("smoke_gates")
def test_a_token_cap_stops_the_run_with_a_report_and_a_raised_cap_finishes_it(
    tmp_path: Path, example_model: str
) -> None:
    ws = tmp_path / "ws"
    scope = str(EXAMPLE / "scope.md")
    res = _invoke("run", scope, "-w", str(ws), "-m", example_model, "--max-agents", "1",
                  "--budget-tokens", "10000")  # fmt: skip
    assert res.exit_code == 4, res.output
    report = _report(ws)
    assert report["status"] == "stopped"
    budget = report["budget"]
    assert budget["stopped"]["reason"] == "budget"
    assert budget["stopped"]["flag"] == "--budget-tokens"
    # Scope, plan and the tester's four files, then T1 crossed the cap: no call started after
    # it (one agent in flight).
    assert budget["spend"]["calls"] == 7 and budget["spend"]["tokens"] >= 10000
    assert [d["task"] for d in report["delivered"]] == ["T1"]
    assert {b["task"]: b["reason"] for b in report["blocked"]} == {
        "T2": "not started",
        "T3": "not started",
    }
    command = f"oldnew resume --workspace {ws.resolve()} --budget-tokens "
    assert command in report["resume"]
    markdown = (ws / META / "report.md").read_text()
    assert "# todo: stopped" in markdown and "## Budget" in markdown and command in markdown
    assert "stopped by the budget" in res.output and command in res.output

    res = _invoke("status", "-w", str(ws), "--json")
    status = json.loads(res.output)
    assert res.exit_code == 4 and status["status"] == "stopped"
    assert status["budget"]["caps"]["tokens"] == 10000
    assert set(status["budget"]["spend"]["by_activity"]) == {"scope", "plan", "acceptance", "code"}
    assert [t["task"] for t in status["budget"]["top_tasks"]] == ["T1"]

    # Resuming without a raised cap stops again at once: no model call is made.
    res = _invoke("resume", "-w", str(ws))
    assert res.exit_code == 4, res.output
    assert _report(ws)["budget"]["spend"]["calls"] == 7

    res = _invoke("resume", "-w", str(ws), "--budget-tokens", "40000")
    assert res.exit_code == 3, res.output  # T2 done; T3 asks its question
    info = json.loads((ws / META / "run.json").read_text())
    assert info["context"]["budget_tokens"] == 40000  # the raised cap holds from now on
    res = _invoke("answer", "-w", str(ws), "T3-q1", "2")
    assert res.exit_code == 0, res.output
    report = _report(ws)
    assert report["status"] == "delivered" and report["budget"]["stopped"] is None
    assert report["budget"]["spend"]["tokens"] < 40000
    log = subprocess.run(
        ["git", "log", "--format=%s"], cwd=ws, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    # the start commit, the suite, one per task (nothing redone), and the hand-over
    assert len(log) == 6 and log[0].startswith("Hand-over")


@pytest.mark.timeout(300)
@pytest.mark.usefixtures("smoke_gates")
def test_a_cap_reached_while_planning_stops_cleanly_and_resumes_at_the_plan(
    tmp_path: Path, example_model: str
) -> None:
    ws = tmp_path / "ws"
    res = _invoke("run", str(EXAMPLE / "scope.md"), "-w", str(ws), "-m", example_model,
                  "--budget-tokens", "1")  # fmt: skip
    assert res.exit_code == 4, res.output
    report = _report(ws)
    assert report["status"] == "stopped" and report["delivered"] == []
    assert report["budget"]["spend"]["by_activity"].keys() == {"scope"}
    res = _invoke("resume", "-w", str(ws), "--budget-tokens", "100000")
    assert res.exit_code == 3, res.output
    assert json.loads(_invoke("status", "-w", str(ws), "--json").output)["questions"]


@pytest.mark.timeout(300)
@pytest.mark.usefixtures("smoke_gates")
def test_a_task_cap_stops_that_task_only(tmp_path: Path, example_model: str) -> None:
    ws = tmp_path / "ws"
    res = _invoke("run", str(EXAMPLE / "scope.md"), "-w", str(ws), "-m", example_model,
                  "--max-agents", "1", "--budget-task-tokens", "1100")  # fmt: skip
    assert res.exit_code == 4, res.output
    report = _report(ws)
    assert report["status"] == "blocked"  # the run went on; one task did not
    assert [d["task"] for d in report["delivered"]] == ["T1"]
    reasons = {b["task"]: b["reason"] for b in report["blocked"]}
    assert "T2 used" in reasons["T2"] and "per-task cap" in reasons["T2"]
    assert reasons["T3"] == "depends on T2, which is blocked"
    assert list(report["budget"]["tasks_stopped"]) == ["T2"]
    assert "--budget-task-tokens" in report["resume"]


@pytest.mark.timeout(300)
def test_a_wall_clock_cap_stops_the_run(tmp_path: Path, example_model: str) -> None:
    ws = tmp_path / "ws"
    res = _invoke("run", str(EXAMPLE / "scope.md"), "-w", str(ws), "-m", example_model,
                  "--max-agents", "1", "--budget-seconds", "1")  # fmt: skip
    assert res.exit_code == 4, res.output
    report = _report(ws)
    assert report["status"] == "stopped"
    assert report["budget"]["stopped"]["flag"] == "--budget-seconds"
    assert report["budget"]["spend"]["work_seconds"] >= 1
    assert "--budget-seconds" in report["resume"]
    assert len(report["delivered"]) < 3


class _SlowModel(ScriptedChatModel):
    """Answers after ``delay`` seconds, or fails after them when ``fail``."""

    delay: float = 0.3
    fail: bool = False

    async def _agenerate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        await asyncio.sleep(self.delay)
        if self.fail:
            raise ConnectionError("the provider went away")
        return self._generate(messages, stop)


def test_the_meter_runs_a_tasks_model_wait_clock(tmp_path: Path) -> None:
    from oldnew.budget import wait_clock

    replies = [ScriptedReply((), None, "ok", None, None, None)]
    slow = _SlowModel(replies=replies)
    model = metered(slow, Context(), tmp_path, role="coder", activity="code", task="T9")
    clock = wait_clock(tmp_path, "T9")
    clock.reset()

    async def two_at_once() -> None:
        seen = asyncio.create_task(asyncio.sleep(0.1))
        calls = asyncio.gather(model.ainvoke("a"), model.ainvoke("b"))
        await seen
        assert clock.waiting()  # while a call is in flight, the task waits for the model
        await calls

    asyncio.run(two_at_once())
    waited = clock.waited()
    assert not clock.waiting()
    assert 0.3 <= waited < 0.55  # two calls in flight at once count once
    failing = metered(
        slow.model_copy(update={"fail": True}),
        Context(),
        tmp_path,
        role="coder",
        activity="code",
        task="T9",
    )
    with pytest.raises(ConnectionError):
        asyncio.run(failing.ainvoke("c"))
    assert not clock.waiting() and clock.waited() >= waited + 0.3  # an error ends the wait
    # A call that is not a task's (scope, plan) runs no task's clock.
    before = clock.waited()
    planner = metered(slow, Context(), tmp_path, role="planner", activity="plan")
    asyncio.run(planner.ainvoke("d"))
    assert clock.waited() == before


def _rate_limited(retry_after: float) -> Exception:
    import httpx
    import openai

    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    headers = {"retry-after": str(retry_after)}
    response = httpx.Response(429, headers=headers, request=request)
    return openai.RateLimitError("rate limited", response=response, body=None)


class _RateLimitedModel(ScriptedChatModel):
    """Refuses its first ``refusals`` calls with a 429 asking to retry after ``retry_after`` s."""

    refusals: int = 2
    retry_after: float = 0.4
    calls: int = 0

    async def _agenerate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        self.calls += 1
        if self.calls <= self.refusals:
            raise _rate_limited(self.retry_after)
        return self._generate(messages, stop)


def test_retry_backoff_counts_as_the_tasks_model_wait(tmp_path: Path) -> None:
    import time

    from oldnew.budget import wait_clock

    replies = [ScriptedReply((), None, "ok", None, None, None)]
    clock = wait_clock(tmp_path, "T8")
    clock.reset()

    async def node() -> tuple[str, float]:  # what a task's node does: meter, then retry
        flaky = _RateLimitedModel(replies=replies)
        model = metered(flaky, Context(), tmp_path, role="coder", activity="code", task="T8")
        start = time.monotonic()
        reply = await with_retry(lambda: model.ainvoke("go"), Context().retry_policy())
        return str(reply.content), time.monotonic() - start

    content, took = asyncio.run(node())
    assert content == "ok" and took >= 0.8  # two Retry-After waits of 0.4 s
    assert not clock.waiting()
    assert clock.waited() >= 0.8 and took - clock.waited() < 0.3  # the backoff is model wait

    async def not_a_task() -> None:  # a planner's retry runs no task's clock
        flaky = _RateLimitedModel(replies=replies, refusals=1, retry_after=0.3)
        model = metered(flaky, Context(), tmp_path, role="planner", activity="plan")
        await with_retry(lambda: model.ainvoke("go"), Context().retry_policy())

    before = clock.waited()
    asyncio.run(not_a_task())
    assert clock.waited() == before
