"""State backends by URL: the same runs on SQLite (the default) and on PostgreSQL, and bad input.

Postgres tests run on the ``postgres_url`` fixture: a private server per test process, a new
database per test.
"""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import psycopg
import pytest
from synthetic import GREET_CODE, planned_run
from typer.testing import CliRunner

from oldnew.cli import app
from oldnew.cluster import postgres as postgres_module
from oldnew.cluster import state as state_module
from oldnew.cluster.postgres import PrivateServer
from oldnew.cluster.state import (
    SCHEMA_VERSION,
    database_of,
    open_state,
    redact,
    run_state,
    state_url,
)
from oldnew.errors import (
    PostgresMissing,
    StateElsewhere,
    StateMissing,
    StateRefused,
    StateSchemaError,
    StateUnreachable,
    StateURLError,
    UsageError,
)
from oldnew.memory.store import Memory
from oldnew.runs import answer_run, memory_listing, resume_run, run_status, start_run
from oldnew.runs.session import open_memory, run_checkpointed, state_holds
from oldnew.workspace import Workspace

SCOPE = {
    "title": "greet",
    "summary": "s",
    "features": [{"id": "F1", "title": "greet"}],
    "clarifications": [
        {"question": "Formal?", "options": ["yes", "no"], "default": "yes", "priority": "high"}
    ],
}
PLAN = {
    "tasks": [
        {
            "id": "T1",
            "title": "greeter",
            "description": "greet.py with greet(name)",
            "files": ["greet.py"],
            "requirement_ids": ["F1"],
        }
    ]
}


@pytest.fixture(params=["sqlite", "postgres"])
def state(request: pytest.FixtureRequest) -> str | None:
    """The state URL of the backend under test: None for SQLite in the workspace."""
    if request.param == "sqlite":
        return None
    return str(request.getfixturevalue("postgres_url"))


@pytest.mark.usefixtures("smoke_gates")
def test_run_pauses_then_resumes_in_a_new_session_and_delivers(
    tmp_path: Path, state: str | None
) -> None:
    scope = tmp_path / "scope.md"
    scope.write_text("Build a friendly greeter.\n")
    ws = tmp_path / "ws"
    models = planned_run(SCOPE, PLAN, code={"T1": GREET_CODE})
    out = asyncio.run(start_run(scope, ws, models=models, state=state))
    assert out.status == "waiting" and [q["id"] for q in out.questions] == ["clarify-1"]
    # Each asyncio.run is a new session: a new graph on a new pool, as another process's.
    assert asyncio.run(run_status(ws, state=state)).status == "waiting"
    out = asyncio.run(answer_run(ws, {"clarify-1": "no"}, models=models, state=state))
    assert out.status == "delivered", out
    assert [(t["id"], t["status"]) for t in out.tasks] == [("T1", "done")]
    assert Workspace(ws).find_task_commit("T1")
    run_id = out.run_id
    listing = asyncio.run(memory_listing(ws, state=state))
    assert any("Formal?" in e["text"] for e in listing["entries"]), listing
    record = (ws / ".oldnew" / "run.json").read_text()
    if state is None:
        assert run_checkpointed(Workspace(ws), run_id)
        assert "state" not in json.loads(record)
        return
    # Checkpoints and memory went to Postgres; the workspace's SQLite file holds none.
    assert not run_checkpointed(Workspace(ws), run_id)
    assert asyncio.run(state_holds(state, run_id))
    assert listing["path"] == redact(state)
    password = str(psycopg.conninfo.conninfo_to_dict(state)["password"])
    assert json.loads(record)["state"] == redact(state) and password not in record


def test_a_postgres_run_says_where_its_state_is(tmp_path: Path, postgres_url: str) -> None:
    scope = tmp_path / "scope.md"
    scope.write_text("Build a friendly greeter.\n")
    ws = tmp_path / "ws"
    models = planned_run(SCOPE, PLAN, code={})
    out = asyncio.run(start_run(scope, ws, models=models, state=postgres_url))
    assert out.status == "waiting"
    result = CliRunner().invoke(app, ["status", "--workspace", str(ws)], env={"COLUMNS": "300"})
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert f"this run's state is in {redact(postgres_url)}: pass --state URL" in text
    assert "OLDNEW_STATE_URL" in text
    result = CliRunner().invoke(
        app, ["status", "--workspace", str(ws), "--json"], env={"OLDNEW_STATE_URL": postgres_url}
    )
    assert result.exit_code == 3 and json.loads(result.output)["status"] == "waiting"
    # The database holds the run: --restart (for lost checkpoints) is refused.
    with pytest.raises(UsageError, match="are intact: continue it with 'oldnew resume"):
        asyncio.run(resume_run(ws, restart=True, models=models, state=postgres_url))


def test_memory_written_is_read_back_in_a_new_session(tmp_path: Path, state: str | None) -> None:
    path = str(tmp_path / "memory.sqlite")

    async def write() -> str | None:
        async with open_memory(path, None, state) as store:
            return await Memory(store, "run-1").remember("decision", "greet formally")

    async def read() -> list[str]:
        async with open_memory(path, None, state) as store:
            return [e.text for _, e in await Memory(store, "run-1").entries()]

    assert asyncio.run(write())
    assert asyncio.run(read()) == ["greet formally"]
    assert Path(path).exists() == (state is None)


def test_state_url_takes_postgres_urls_and_refuses_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OLDNEW_STATE_URL", raising=False)
    assert state_url(None) is None and state_url("  ") is None
    url = "postgresql://u:s3cret@db.example:5433/runs"
    assert state_url(url) == url
    assert state_url("postgres://u@h/d") == "postgres://u@h/d"
    monkeypatch.setenv("OLDNEW_STATE_URL", url)
    assert state_url(None) == url
    with pytest.raises(StateURLError) as bad:
        state_url("mysql://u:s3cret@h/d")
    text = str(bad.value)
    assert "postgresql://USER:PASSWORD@HOST:PORT/DATABASE" in text
    assert "SQLite in its workspace (the default)" in text and "s3cret" not in text
    with pytest.raises(StateURLError):
        state_url("/var/lib/state.sqlite")
    assert redact(url) == "postgresql://u@db.example:5433/runs"
    assert redact("postgresql://u@h/d?password=s3cret&sslmode=require") == (
        "postgresql://u@h/d?sslmode=require"
    )


def test_a_command_refuses_a_state_that_is_not_the_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "postgresql://u:pw@h:5432/runs"
    monkeypatch.delenv("OLDNEW_STATE_URL", raising=False)
    assert run_state(None, None, "/ws") is None
    assert run_state(redact(url), url, "/ws") == url
    monkeypatch.setenv("OLDNEW_STATE_URL", url)
    assert run_state(None, None, "/ws") is None  # a run in SQLite stays there
    assert run_state(redact(url), None, "/ws") == url
    monkeypatch.delenv("OLDNEW_STATE_URL")
    with pytest.raises(StateElsewhere, match="pass --state URL or set OLDNEW_STATE_URL"):
        run_state(redact(url), None, "/ws")
    with pytest.raises(StateElsewhere, match="state is in SQLite in its workspace"):
        run_state(None, url, "/ws")
    with pytest.raises(StateElsewhere, match="not in postgresql://u@h:5432/other"):
        run_state(redact(url), url.replace("/runs", "/other"), "/ws")


def _open(url: str) -> None:
    async def go() -> None:
        async with open_state(url):
            pass

    asyncio.run(go())


def test_a_server_that_does_not_answer_is_a_clear_error(tmp_path: Path, postgres_url: str) -> None:
    closed = postgres_url.rsplit(":", 1)[0] + ":9/db"  # loopback port 9: nothing listens
    with pytest.raises(StateUnreachable) as err:
        _open(closed)
    assert "127.0.0.1:9 does not answer" in str(err.value)
    assert "the same command goes on" in str(err.value)
    scope = tmp_path / "scope.md"
    scope.write_text("Build a friendly greeter.\n")
    with pytest.raises(StateUnreachable):
        asyncio.run(
            start_run(
                scope, tmp_path / "ws", models=planned_run(SCOPE, PLAN, code={}), state=closed
            )
        )
    assert not (tmp_path / "ws").exists()  # nothing made for a database that is not there


def test_a_refused_password_and_a_missing_database_are_clear_errors(postgres_url: str) -> None:
    password = str(psycopg.conninfo.conninfo_to_dict(postgres_url)["password"])
    with pytest.raises(StateRefused) as refused:
        _open(postgres_url.replace(f":{password}@", ":wrong@"))
    assert "right user and password" in str(refused.value)
    assert password not in str(refused.value) and "wrong" not in str(refused.value)
    with pytest.raises(StateMissing, match="'nosuch' does not exist.*create it"):
        _open(postgres_url.rsplit("/", 1)[0] + "/nosuch")


def test_a_database_of_another_schema_version_is_refused_untouched(postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE oldnew_meta (key text PRIMARY KEY, value text NOT NULL)")
        conn.execute("INSERT INTO oldnew_meta VALUES ('schema_version', '99'), ('made_by', '9.0')")
    with pytest.raises(StateSchemaError) as err:
        _open(postgres_url)
    text = str(err.value)
    assert "schema version 99 (set up by oldnew 9.0)" in text
    assert f"reads version {SCHEMA_VERSION}" in text and "upgrade oldnew to 9.0" in text
    with psycopg.connect(postgres_url) as conn:
        tables: Any = conn.execute("SELECT to_regclass('checkpoints')").fetchone()
    assert tables[0] is None  # nothing was set up in it


def test_a_server_that_never_replies_times_out_in_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state_module, "CONNECT_SECONDS", 1)
    with socket.socket() as silent:  # takes connections (the kernel does), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        with pytest.raises(StateUnreachable) as err:
            _open(f"postgresql://u:pw@127.0.0.1:{port}/db")
    assert f"127.0.0.1:{port} does not answer" in str(err.value)
    assert "oldnew waits 1 s at most" in str(err.value)


def test_a_killed_connection_is_replaced(postgres_server: Any, postgres_url: str) -> None:
    async def go() -> int:
        config: Any = {"configurable": {"thread_id": "t1", "checkpoint_ns": ""}}
        async with open_state(postgres_url, application_name="victim") as opened:
            assert await opened.saver.aget_tuple(config) is None
            killed = postgres_server.terminate("victim", database_of(postgres_url))
            await opened.store.aput(("a",), "k", {"v": 1})  # on a new connection
            item = await opened.store.aget(("a",), "k")
            assert item is not None and item.value == {"v": 1}
            assert await opened.saver.aget_tuple(config) is None
            return int(killed)

    assert asyncio.run(go()) >= 1


def test_machines_that_open_a_new_database_at_once_set_it_up_once(postgres_url: str) -> None:
    async def go() -> list[dict[str, str]]:
        async def one() -> dict[str, str]:
            async with open_state(postgres_url) as opened:
                return opened.meta

        return list(await asyncio.gather(*(one() for _ in range(3))))

    metas = asyncio.run(go())
    assert metas[0]["schema_version"] == str(SCHEMA_VERSION) and metas == metas[:1] * 3
    with psycopg.connect(postgres_url) as conn:
        rows: Any = conn.execute("SELECT count(*), count(DISTINCT v) FROM checkpoint_migrations")
        total, distinct = rows.fetchone()
    assert total == distinct > 0  # every migration ran exactly once


def test_a_connection_lost_while_working_says_the_run_is_resumable(postgres_url: str) -> None:
    async def go() -> None:
        async with open_state(postgres_url):
            raise psycopg.OperationalError("server closed the connection unexpectedly")

    with pytest.raises(StateUnreachable) as err:
        asyncio.run(go())
    text = str(err.value)
    assert "connection to the state database" in text and "was lost" in text
    assert "continue with 'oldnew resume'" in text


def test_without_postgresql_the_private_server_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(postgres_module, "glob", lambda pattern: [])
    monkeypatch.setattr(postgres_module.shutil, "which", lambda name: None)
    with pytest.raises(PostgresMissing, match="install it with 'apt-get install postgresql'"):
        PrivateServer(tmp_path / "data")
