"""LangSmith tracing (oldnew.tracing): a named trace per run with task and role tags, told
through a local endpoint that records what the langsmith client sends; one warning line when
the endpoint is unreachable."""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import json
import logging
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import langsmith.client
import langsmith.utils
import pytest
from conftest import serving
from langchain_core.tracers import langchain as lc_tracer
from langsmith import run_trees
from synthetic import greet_transcript
from urllib3 import Retry

from oldnew import tracing
from oldnew.runs import start_run

pytestmark = pytest.mark.usefixtures("smoke_gates")  # the trace, not the gates


def greet_model(tmp_path: Path) -> str:
    """A scripted run of one task that delivers, with no question on the way."""
    return greet_transcript(tmp_path)


def _run(tmp_path: Path) -> str:
    scope = tmp_path / "scope.md"
    scope.write_text("Build a friendly greeter.\n")
    context = {"model": greet_model(tmp_path), "acceptance": False}
    out = asyncio.run(start_run(scope, tmp_path / "ws", context=context))
    assert out.status == "delivered", out
    lc_tracer.wait_for_all_tracers()
    return out.run_id


@pytest.fixture
def trace_to(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Turn tracing on to an endpoint, with a fresh client; off again after the test."""

    def on(endpoint: str) -> None:
        monkeypatch.setenv("LANGSMITH_TRACING", "true")
        monkeypatch.setenv("LANGSMITH_ENDPOINT", endpoint)
        monkeypatch.setenv("LANGSMITH_API_KEY", "test-key")
        monkeypatch.delenv("LANGCHAIN_TRACING_V2", raising=False)
        langsmith.utils.get_env_var.cache_clear()  # langsmith caches what it read
        monkeypatch.setattr(run_trees, "_CLIENT", None)
        log = logging.getLogger(tracing.LOGGER)  # as before oldnew.tracing, restored after
        monkeypatch.setattr(log, "handlers", [])
        monkeypatch.setattr(log, "propagate", True)

    yield on
    lc_tracer.wait_for_all_tracers()
    monkeypatch.undo()
    langsmith.utils.get_env_var.cache_clear()


@pytest.fixture
def recorder() -> Iterator[tuple[str, dict[str, dict[str, Any]]]]:
    """A LangSmith endpoint on 127.0.0.1 that keeps every run the client posts, by id."""
    runs: dict[str, dict[str, Any]] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._reply({})  # /info: no compression, no batching settings

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            kind = self.headers["Content-Type"]
            if kind.startswith("multipart/"):
                head = f"Content-Type: {kind}\r\n\r\n".encode()
                parsed = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
                for part in parsed.iter_parts():
                    name = str(part.get_param("name", header="content-disposition"))
                    verb, run_id, *field = name.split(".")
                    data = json.loads(part.get_payload(decode=True))
                    run = runs.setdefault(run_id, {})
                    run.update({field[0]: data} if field else data)
            else:
                data = json.loads(body)
                for run in data.get("post", []) + data.get("patch", []):
                    runs.setdefault(str(run["id"]), {}).update(run)
            self._reply({})

        def do_PATCH(self) -> None:
            self.do_POST()

        def _reply(self, data: dict[str, Any]) -> None:
            out = json.dumps(data).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args: Any) -> None:
            pass

    with serving(Handler) as url:
        yield url, runs


def _ancestors(run: dict[str, Any], runs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    while run.get("parent_run_id"):
        run = runs[str(run["parent_run_id"])]
        out.append(run)
    return out


def test_one_named_trace_per_run_with_task_and_role_tags(
    tmp_path: Path,
    trace_to: Callable[[str], None],
    recorder: tuple[str, dict[str, dict[str, Any]]],
) -> None:
    endpoint, runs = recorder
    trace_to(endpoint)
    run_id = _run(tmp_path)
    roots = [r for r in runs.values() if not r.get("parent_run_id")]
    assert [r["name"] for r in roots] == [f"oldnew {run_id}"]
    root = roots[0]
    assert {"oldnew", f"run:{run_id}"} <= set(root["tags"])
    assert root["extra"]["metadata"]["oldnew_run"] == run_id
    assert {str(r["trace_id"]) for r in runs.values()} == {str(root["id"])}
    task = [r for r in runs.values() if r["name"] == "task T1"]
    assert len(task) == 1 and "task:T1" in task[0]["tags"]
    assert task[0]["extra"]["metadata"]["task_id"] == "T1"
    calls = [r for r in runs.values() if r.get("run_type") == "llm"]
    coder = [c for c in calls if "role:coder" in c["tags"]]
    planner = [c for c in calls if "role:planner" in c["tags"]]
    assert coder and planner and len(coder) + len(planner) == len(calls)
    for call in coder:
        assert call["extra"]["metadata"]["role"] == "coder"
        assert task[0] in _ancestors(call, runs)  # the task's model calls are under its span
    for call in planner:
        assert task[0] not in _ancestors(call, runs)


def test_an_unreachable_endpoint_says_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    trace_to: Callable[[str], None],
    capfd: pytest.CaptureFixture[str],
) -> None:
    trace_to("http://127.0.0.1:9")
    no_retries = Retry(total=0)  # the client fails at once, saying the same
    monkeypatch.setattr(langsmith.client, "_default_retry_config", lambda: no_retries)
    monkeypatch.setattr(logging.getLogger(), "handlers", [])  # as in the CLI: no logging set up
    _run(tmp_path)
    err = capfd.readouterr().err
    said = [line for line in err.splitlines() if "LangSmith" in line or "langsmith" in line]
    assert len(said) == 1, err
    assert said[0].startswith("warning: LangSmith tracing cannot send to http://127.0.0.1:9")
    assert "Failed to" not in err.replace(said[0], "")
