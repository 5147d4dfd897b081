"""Bad input of many machines: each case a clear error, the run resumable, nothing lost.

A database that does not answer or refuses the password, a database of another schema, a
worker of another oldnew version, a central repository that cannot be pushed to or cloned,
and a central repository that goes away in the middle of a run. Unit-level or in process
where it can be; worker processes only for the network that drops mid-run.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import threading
import time
from asyncio import CancelledError
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
from conftest import EXAMPLE
from procrastinate.jobs import Job, Status
from psycopg_pool import PoolTimeout
from typer.testing import CliRunner

from oldnew import safegit
from oldnew.bench.workers import GATE_ENV, LATENCY_ENV, init_central, queue_synthetic, wait_run
from oldnew.bench.workers import workers as worker_processes
from oldnew.cli import app
from oldnew.cluster import runs as runs_module
from oldnew.cluster.db import StaleWriter
from oldnew.cluster.jobs import Retry, defer_drive, runs_queue, tasks_queue, version
from oldnew.cluster.remote import RemoteTasks
from oldnew.cluster.runs import check_central, cluster_status, notices, open_cluster
from oldnew.cluster.worker import Home
from oldnew.errors import StateUnreachable, UsageError, WorkspaceError
from oldnew.runs.commands import resume_run, start_run
from oldnew.workspace import Workspace

OTHER = "0.0.1-other"
"""The oldnew version of a run (or a worker) that is not this one."""


def _cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "400", "OLDNEW_STATE_URL": ""})


def _text(result: Any) -> str:
    """Return what a command printed without whitespace: rich breaks long words anywhere."""
    return _flat(result.output + (result.stderr or ""))


def _flat(text: str) -> str:
    return "".join(text.split())


def _refused(url: str) -> str:
    password = str(psycopg.conninfo.conninfo_to_dict(url)["password"])
    return url.replace(f":{password}@", ":wrong-secret@")


def _scope(tmp_path: Path) -> Path:
    scope = tmp_path / "scope.md"
    scope.write_text("Build a friendly greeter.\n", encoding="utf-8")
    return scope


def _central_refs(repo: str) -> str:
    return subprocess.run(  # nosec B603 B607 - fixed argv
        ["git", "--git-dir", repo, "for-each-ref"], capture_output=True, text=True, check=True
    ).stdout


def _has_runs_table(url: str) -> bool:
    with psycopg.connect(url) as conn:
        row: Any = conn.execute("SELECT to_regclass('oldnew_runs') IS NOT NULL").fetchone()
    return bool(row[0])


def _home(url: str, repo: str, tmp_path: Path, name: str, stall: float) -> Home:
    """Return a worker's home of one step slot and one run slot, its clones in ``tmp_path/w``."""
    return Home(
        url=url,
        repo=repo,
        root=tmp_path / "w",
        name=name,
        concurrency=1,
        runs=1,
        stall=stall,
        build={},
    )


# -- 1. a database that does not answer or refuses the password ------------------------------


@pytest.mark.parametrize("bad", ["unreachable", "refused"])
@pytest.mark.parametrize("command", ["worker", "run --queue", "status --run", "workers"])
def test_every_cluster_command_says_what_is_wrong_with_the_database(
    tmp_path: Path, postgres_url: str, example_model: str, command: str, bad: str
) -> None:
    url = (
        postgres_url.rsplit(":", 1)[0] + ":9/db" if bad == "unreachable" else _refused(postgres_url)
    )
    repo = init_central(tmp_path / "central.git")
    ws = tmp_path / "ws"
    argv = {
        "worker": ["worker", "--state", url, "--repo", repo, "--dir", str(tmp_path / "w")],
        "run --queue": [
            *("run", str(_scope(tmp_path)), "--workspace", str(ws), "--model", example_model),
            *("--state", url, "--queue", "--repo", repo),
        ],
        "status --run": ["status", "--state", url, "--run", "some-run"],
        "workers": ["workers", "--state", url],
    }[command]
    result = _cli(*argv)
    text = _text(result)
    assert result.exit_code == 2, text
    if bad == "unreachable":
        assert _flat("127.0.0.1:9 does not answer") in text and _flat("check that it runs") in text
    else:
        assert (
            _flat("refused user 'oldnew'") in text
            and _flat("give the right user and password") in text
        )
        assert _flat("wrong-secret") not in text  # the password is never shown
    assert _flat("Traceback") not in text
    assert not ws.exists() and _central_refs(repo) == ""  # nothing made, nothing queued


# -- 2. a database of another schema version ------------------------------------------------


def test_a_worker_refuses_a_database_of_another_schema_and_leaves_it_untouched(
    tmp_path: Path, postgres_url: str
) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE oldnew_meta (key text PRIMARY KEY, value text NOT NULL)")
        conn.execute("INSERT INTO oldnew_meta VALUES ('schema_version', '99'), ('made_by', '9.0')")
    repo = init_central(tmp_path / "central.git")
    result = _cli("worker", "--state", postgres_url, "--repo", repo, "--dir", str(tmp_path / "w"))
    text = _text(result)
    assert result.exit_code == 2, text
    assert _flat("holds state schema version 99 (set up by oldnew 9.0)") in text
    assert _flat("upgrade oldnew to 9.0") in text and _flat("Nothing in it was changed") in text
    with psycopg.connect(postgres_url) as conn:
        row: Any = conn.execute(
            "SELECT to_regclass('procrastinate_jobs'), to_regclass('oldnew_workers')"
        ).fetchone()
    assert row == (None, None)  # the worker set nothing up and never registered


# -- 3. a worker of another oldnew version --------------------------------------------------


async def _add_run(url: str, run_id: str, of: str, status: str = "queued") -> None:
    async with open_cluster(url) as cluster:
        await cluster.db.add_run(run_id, {"run_id": run_id}, {}, of)
        if status != "queued":
            await cluster.db.set_run(run_id, status)


def test_status_says_when_no_alive_worker_has_the_runs_version(postgres_url: str) -> None:
    async def go() -> tuple[list[str], list[str]]:
        await _add_run(postgres_url, "r-old", OTHER)
        alone = (await cluster_status(postgres_url, "r-old"))["notices"]
        async with open_cluster(postgres_url) as cluster:
            await cluster.db.beat("w-new", os.getpid(), version(), 2, 0, 30.0)
        return alone, (await cluster_status(postgres_url, "r-old"))["notices"]

    alone, mismatched = asyncio.run(go())
    assert alone == [f"no worker is alive: start one of oldnew {OTHER} with 'oldnew worker "
                     "--state URL --repo CENTRAL'"]  # fmt: skip
    assert len(mismatched) == 1
    said = mismatched[0]
    assert f"no alive worker runs oldnew {OTHER}, the version this run was queued with" in said
    assert f"w-new (oldnew {version()})" in said and runs_queue(OTHER) in said
    assert f"start a worker of oldnew {OTHER} ('pip install oldnew=={OTHER}'" in said
    result = _cli("status", "--state", postgres_url, "--run", "r-old")
    assert result.exit_code == 0 and _flat(f"no alive worker runs oldnew {OTHER}") in _text(result)


def test_a_worker_says_once_that_runs_of_another_version_wait_and_never_takes_them(
    tmp_path: Path, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    home = _home(postgres_url, init_central(tmp_path / "central.git"), tmp_path, "w-new", 4.0)

    async def go() -> Status:
        await _add_run(postgres_url, "r-old", OTHER)
        await _add_run(postgres_url, "r-done", OTHER, status="delivered")
        async with open_cluster(postgres_url) as cluster:
            job = await defer_drive(cluster.app, "r-old", of=OTHER)
        assert job is not None
        async with home.opened():
            stop = asyncio.Event()
            asyncio.get_running_loop().call_later(2.0, stop.set)  # two polls of the queue
            await home.serve(stop)
            return await home.app.job_manager.get_job_status_async(job)

    with caplog.at_level(logging.WARNING, logger="oldnew.cluster.worker"):
        status = asyncio.run(go())
    lines = [r.getMessage() for r in caplog.records if "wait" in r.getMessage()]
    assert lines == [
        f"worker w-new: 1 run(s) of oldnew {OTHER} wait (r-old): this worker is oldnew "
        f"{version()} and never takes them; start a worker of oldnew {OTHER} for them"
    ]
    assert status == Status.TODO  # its job is still on the queue of its version


# -- 4. a central repository that cannot be pushed to or cloned -----------------------------


@pytest.fixture
def read_only_central(tmp_path: Path) -> Iterator[str]:
    """A central repository served read-only (``git daemon`` grants fetch, never push)."""
    init_central(tmp_path / "served" / "central.git")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    daemon = subprocess.Popen(  # nosec B603 B607 - fixed argv
        [
            *("git", "daemon", "--export-all", "--reuseaddr", "--listen=127.0.0.1"),
            *(f"--port={port}", f"--base-path={tmp_path / 'served'}", str(tmp_path / "served")),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            with socket.socket() as conn:
                if conn.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield f"git://127.0.0.1:{port}/central.git"
    finally:
        daemon.terminate()
        daemon.wait(10)


def test_a_central_repository_that_is_missing_or_no_repository_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="(?s)does not answer.*'git init --bare PATH'.*queued"):
        check_central(str(tmp_path / "nowhere.git"))
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "README").write_text("not a repository\n", encoding="utf-8")
    with pytest.raises(UsageError, match="does not appear to be a git repository"):
        check_central(str(plain))


def test_run_queue_refuses_a_read_only_central_before_making_anything(
    tmp_path: Path, postgres_url: str, example_model: str, read_only_central: str
) -> None:
    ws = tmp_path / "ws"
    result = _cli(
        *("run", str(_scope(tmp_path)), "--workspace", str(ws), "--model", example_model),
        *("--state", postgres_url, "--queue", "--repo", read_only_central),
    )
    text = _text(result)
    assert result.exit_code == 2, text
    assert _flat(f"cannot push to the central repository {read_only_central}") in text
    assert _flat("it must take pushes") in text and _flat("nothing was queued") in text
    assert not ws.exists() and not _has_runs_table(postgres_url)
    assert _central_refs(str(tmp_path / "served" / "central.git")) == ""


def test_a_persons_repository_is_refused_before_a_branch_is_made_in_it(
    tmp_path: Path, postgres_url: str, example_model: str
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "README.md").write_text("a project\n", encoding="utf-8")
    git = ["git", "-C", str(project), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)  # nosec B603
    subprocess.run([*git, "add", "-A"], check=True)  # nosec B603
    subprocess.run([*git, "commit", "-q", "-m", "start"], check=True)  # nosec B603
    repo = init_central(tmp_path / "central.git")
    result = _cli(
        *("run", str(_scope(tmp_path)), "--workspace", str(project), "--model"),
        *(example_model, "--state", postgres_url, "--queue", "--repo", repo),
    )
    assert result.exit_code == 2 and _flat("is inside a git repository") in _text(result)
    branches = subprocess.run(  # nosec B603
        [*git, "branch", "--list", "--format=%(refname:short)"], capture_output=True, text=True
    ).stdout.split()
    assert branches == ["main"] and not (project / ".oldnew").exists()
    assert _central_refs(repo) == "" and not _has_runs_table(postgres_url)


def test_a_refused_push_of_main_takes_back_the_workspace_it_made(
    tmp_path: Path,
    postgres_url: str,
    example_model: str,
    read_only_central: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runs_module, "check_central", lambda repo: None)  # a push refused later
    ws = tmp_path / "ws"
    ws.mkdir()  # an empty directory given: it stays, empty
    argv = [
        *("run", str(_scope(tmp_path)), "--workspace", str(ws), "--model", example_model),
        *("--state", postgres_url, "--queue", "--repo", read_only_central),
    ]
    result = _cli(*argv)
    assert result.exit_code == 2 and _flat("cannot push to the central repository") in _text(result)
    assert list(ws.iterdir()) == []
    with psycopg.connect(postgres_url) as conn:
        row: Any = conn.execute("SELECT count(*) FROM oldnew_runs").fetchone()
    assert row[0] == 0  # nothing was queued
    monkeypatch.undo()
    again = _cli(*argv)  # the same command, once the repository takes pushes, would go on
    assert again.exit_code == 2 and _flat("belongs to run") not in _text(again)


def test_status_names_a_blocked_tasks_cause_and_the_command_that_goes_on() -> None:
    run = {
        "run_id": "r1",
        "version": version(),
        "status": "blocked",
        "summary": {
            "tasks": [
                {"id": "T1", "status": "done", "blocker": None},
                {"id": "T2", "status": "blocked", "blocker": "WorkspaceError: cannot push"},
            ]
        },
    }
    assert notices(run, []) == [
        "task T2 is blocked: WorkspaceError: cannot push",
        "once the cause is fixed, 'oldnew resume --state URL --run r1' tries the blocked tasks "
        "again (their committed work stays on main)",
    ]
    stopped = {**run, "status": "interrupted", "summary": {"error": "StateUnreachable: gone"}}
    alive = {"name": "w1", "version": version(), "silent_s": 1.0, "stopped": None}
    assert notices(stopped, [alive]) == [
        "the run's holder stopped: StateUnreachable: gone; fix what it says, then 'oldnew "
        "resume --state URL --run r1' (nothing committed is lost)"
    ]
    retrying = {**stopped, "status": "retrying"}
    assert notices(retrying, [alive]) == [
        "the run's holder failed and the run is tried again: StateUnreachable: gone; if that "
        "goes on, fix what it says"
    ]
    assert notices({**run, "status": "running", "summary": {}}, [alive]) == []


def test_a_worker_whose_repo_does_not_answer_refuses_to_start(
    tmp_path: Path, postgres_url: str
) -> None:
    missing = str(tmp_path / "no-such-central.git")
    result = _cli("worker", "--state", postgres_url, "--repo", missing, "--dir", str(tmp_path))
    text = _text(result)
    assert result.exit_code == 2, text
    assert _flat(f"the central repository {missing} does not answer") in text
    assert _flat("give --repo the central repository the runs were queued with") in text
    assert not _has_runs_table(postgres_url)  # it never registered


def test_a_worker_that_cannot_clone_says_so_on_the_runs_row_and_status_says_what_to_do(
    tmp_path: Path, postgres_url: str
) -> None:
    missing = str(tmp_path / "no-such-central.git")
    home = _home(postgres_url, missing, tmp_path, "w1", 30.0)

    async def go() -> dict[str, Any]:
        await _add_run(postgres_url, "r1", version())
        async with home.opened():
            with pytest.raises(WorkspaceError, match="cannot clone the central repository"):
                await home.drive("r1", (1, 1))  # its last try: the run is interrupted
        return await cluster_status(postgres_url, "r1")

    found = asyncio.run(go())
    assert found["run"]["status"] == "interrupted"
    assert f"cannot clone the central repository {missing}" in found["run"]["summary"]["error"]
    [said] = [n for n in found["notices"] if "holder stopped" in n]
    assert "every worker's --repo must be the central repository the run was queued with" in said
    assert "'oldnew resume --state URL --run r1'" in said
    result = _cli("status", "--state", postgres_url, "--run", "r1")
    assert result.exit_code == 0 and _flat("every worker's --repo must be") in _text(result)
    assert not (tmp_path / "w" / "r1").exists()  # no half-made clone left


# -- 5. the network lost in the middle of a task --------------------------------------------


def test_a_central_repository_away_for_a_moment_costs_a_pause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(safegit, "CENTRAL_WAITS", (0.2,) * 10)
    repo = init_central(tmp_path / "central.git")
    os.rename(repo, f"{repo}.away")
    back = threading.Timer(0.5, os.rename, (f"{repo}.away", repo))
    back.start()
    proc = safegit.run_central("ls-remote", repo, cwd=tmp_path, options=safegit.CENTRAL_OPTIONS)
    back.join()
    assert proc.returncode == 0


def test_a_central_repository_that_stays_away_fails_the_step_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tries: list[tuple[str, ...]] = []
    real = safegit.run_git

    def counted(*args: str, **kwargs: Any) -> Any:
        tries.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(safegit, "CENTRAL_WAITS", (0.01, 0.01))
    monkeypatch.setattr(safegit, "run_git", counted)
    repo = init_central(tmp_path / "central.git")
    ws = Workspace(tmp_path / "ws")
    ws.root.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main", str(ws.root)], check=True)  # nosec
    ws.meta.mkdir()
    (ws.meta / "run.json").write_text(f'{{"central": "{repo}.away"}}', encoding="utf-8")
    with pytest.raises(WorkspaceError) as err:
        ws.sync_main()
    assert f"cannot fetch main from the central repository {repo}.away" in str(err.value)
    assert "check that it can be reached, then resume" in str(err.value)
    assert sum(1 for t in tries if t[0] == "fetch") == 3  # the first try and two more


def _publishing(ws: Workspace, central: str, clone: bool = False) -> Workspace:
    """Return ``ws`` set to publish to ``central`` (made as a clone of it with ``clone``)."""
    if clone:
        subprocess.run(["git", "clone", "-q", central, str(ws.root)], check=True)  # nosec
    ws.meta.mkdir()
    (ws.meta / "run.json").write_text(f'{{"central": "{central}"}}', encoding="utf-8")
    for key, value in (("user.name", "t"), ("user.email", "t@example.com")):
        ws.git("config", key, value)
    return ws


def _commit(ws: Workspace, name: str) -> str:
    (ws.root / name).write_text(f"{name}\n", encoding="utf-8")
    ws.git("add", name)
    ws.git("commit", "-q", "-m", name)
    return ws.head()


def test_a_holder_given_up_for_dead_never_takes_back_what_its_successor_published(
    tmp_path: Path,
) -> None:
    repo = init_central(tmp_path / "central.git")
    seed = tmp_path / "seed"
    subprocess.run(["git", "init", "-q", "-b", "main", str(seed)], check=True)  # nosec
    old = _publishing(Workspace(seed), repo)
    assert old.publish_main(_commit(old, "start"))
    new = _publishing(Workspace(tmp_path / "new"), repo, clone=True)
    theirs = _commit(new, "landed-by-the-successor")
    assert new.publish_main(theirs)
    mine = _commit(old, "landed-by-the-old-holder")  # never published: it was given up
    old.fetch_central("main", "+refs/heads/main:refs/oldnew/central")  # it even saw theirs
    assert not old.publish_main(mine)  # no push over what is there
    central_main = subprocess.run(
        ["git", "rev-parse", "main"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert central_main == theirs
    assert old.head() == theirs  # main here follows the central one again
    kept = old.git("rev-parse", f"refs/oldnew/diverged/{mine}")
    assert kept == mine  # and what it had on top is kept, not lost


def test_a_lost_database_never_uses_up_a_jobs_tries_and_a_stale_writer_is_never_retried() -> None:
    retry = Retry(max_attempts=5, wait=1)
    worn = Job(id=1, queue="q", lock=None, queueing_lock=None, task_name="t", attempts=9)
    lost = psycopg.OperationalError("server closed the connection unexpectedly")
    for exc in (lost, StateUnreachable("gone"), PoolTimeout("no connection"), CancelledError()):
        decision = retry.get_retry_decision(exception=exc, job=worn)
        assert decision is not None, exc  # tried again, however often it was tried
        assert decision.retry_at is not None
    assert retry.get_retry_decision(exception=ValueError("a bug"), job=worn) is None
    fresh = Job(id=1, queue="q", lock=None, queueing_lock=None, task_name="t", attempts=0)
    assert retry.get_retry_decision(exception=ValueError("a bug"), job=fresh) is not None
    assert retry.get_retry_decision(exception=StaleWriter("taken over"), job=fresh) is None


def test_a_requeued_run_says_queued_and_a_lost_holders_ended_tasks_are_settled(
    postgres_url: str,
) -> None:
    async def scenario() -> list[Any]:
        seen: list[Any] = []
        async with open_cluster(postgres_url) as cluster:
            db = cluster.db
            await db.add_run("r1", {}, {}, version())
            for task, state in (("T1", "merging"), ("T2", "running"), ("T3", "stepped")):
                await db.set_task("r1", task, f"thread-{task}", state=state, worker="w9")
            # T1 and T2 ended under a holder that was lost before it could say so
            await db.settle_tasks("r1", {"T1": "done", "T2": "blocked"})
            seen.append({t["task_id"]: (t["state"], t["worker"]) for t in await db.tasks("r1")})
            await db.set_run("r1", "blocked")
            seen.append(await runs_module.queue_again(postgres_url, "r1"))
            seen.append((await db.run("r1") or {})["status"])
            await db.set_run("r1", "running", holder="w2")  # a worker took it
            await db.requeued("r1")  # a second resume meanwhile does not hide that it runs
            seen.append((await db.run("r1") or {})["status"])
        return seen

    rows, queued, status, running = asyncio.run(scenario())
    assert rows == {"T1": ("done", None), "T2": ("blocked", None), "T3": ("stepped", "w9")}
    assert queued is True and status == "queued"
    assert running == "running"


def test_a_task_step_whose_database_goes_away_names_the_database() -> None:
    class Gone:
        async def aget_state(self, config: Any) -> Any:
            raise PoolTimeout("couldn't get a connection after 60.00 sec")

    home: Any = SimpleNamespace(url="postgresql://oldnew:secret@db.example:5432/runs")
    graph: Any = Gone()
    config: Any = {"configurable": {"thread_id": "t1"}}
    with pytest.raises(StateUnreachable) as err:
        asyncio.run(RemoteTasks(home, "r1")(graph, "T1", None, config, None, print, []))
    text = str(err.value)
    assert "the connection to the state database postgresql://oldnew@db.example:5432/runs" in text
    assert "couldn't get a connection after 60.00 sec" in text and "secret" not in text
    assert "continue with 'oldnew resume'" in text


@pytest.mark.usefixtures("smoke_gates")
def test_a_lost_state_database_stops_the_run_and_resume_goes_on(
    tmp_path: Path, example_model: str
) -> None:
    """A task that loses the run's state stops the run (not just itself); nothing is lost."""
    ws = tmp_path / "ws"
    context = {"model": example_model}
    paused = asyncio.run(start_run(EXAMPLE / "scope.md", ws, context=context))
    assert paused.status == "waiting", paused.to_dict()
    seen: list[str] = []

    async def lost(graph: Any, task_id: str, *args: Any) -> None:
        seen.append(task_id)
        raise StateUnreachable("the connection to the state database was lost")

    answers = {"T3-q1": "~/.todo.json"}
    with pytest.raises(StateUnreachable, match="state database was lost"):
        asyncio.run(resume_run(ws, answers=answers, build={"runner": lost}))
    assert seen == ["T3"]
    done = Workspace.open(ws).find_task_commits(["T1", "T2", "T3"])
    assert sorted(done) == ["T1", "T2"]  # what was done stays done
    out = asyncio.run(resume_run(ws))
    if out.status == "waiting":  # the answer was not kept with the step that failed
        out = asyncio.run(resume_run(ws, answers=answers))
    assert out.status == "delivered", out.to_dict()
    assert sorted(Workspace.open(ws).find_task_commits(["T1", "T2", "T3"])) == ["T1", "T2", "T3"]


def test_a_worker_takes_its_queues_again_when_procrastinate_stops_on_a_lost_database(
    tmp_path: Path, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """procrastinate stops its worker when its heartbeat loses the database: it starts again."""
    # started again after a tenth of a second
    home = _home(postgres_url, init_central(tmp_path / "central.git"), tmp_path, "w1", 0.4)
    started: list[str] = []

    async def procrastinate_worker(*, queues: list[str], **_: Any) -> None:
        started.extend(queues)
        if started.count(queues[0]) == 1:
            return  # the first time: stopped itself, as on a lost heartbeat
        await asyncio.Event().wait()  # then: takes jobs until cancelled

    async def go() -> None:
        async with home.opened():
            home.app.run_worker_async = procrastinate_worker  # type: ignore[method-assign]
            stop = asyncio.Event()
            asyncio.get_running_loop().call_later(1.0, stop.set)
            await home.serve(stop)

    with caplog.at_level(logging.WARNING, logger="oldnew.cluster.worker"):
        asyncio.run(go())
    assert sorted(started) == sorted([tasks_queue(), runs_queue()] * 2)
    again = [r.getMessage() for r in caplog.records if "started again" in r.getMessage()]
    assert sorted(again) == [
        f"worker w1: the {kind} queue's worker is started again: it stopped (its database "
        "connection was lost)"
        for kind in ("runs", "tasks")
    ]


def test_a_run_goes_on_when_its_central_repository_comes_back(
    tmp_path: Path, postgres_url: str
) -> None:
    """Two worker processes; the central repository is away for 3 s in the middle of the run."""
    tmp_path.chmod(0o755)
    repo = init_central(tmp_path / "central.git")
    env = {GATE_ENV: "0.3", LATENCY_ENV: "0.02"}

    async def go() -> dict[str, Any]:
        with worker_processes(postgres_url, repo, tmp_path, env=env, stall=5) as pool:
            pool.start("w1")
            pool.start("w2")
            run_id = await queue_synthetic(postgres_url, repo, tmp_path, 6)
            await wait_run(postgres_url, run_id, 60, poll=0.1, until=("running",))
            await asyncio.sleep(1.5)  # the tasks' first steps are on the workers
            os.rename(repo, f"{repo}.away")
            await asyncio.sleep(3.0)
            os.rename(f"{repo}.away", repo)
            return await wait_run(postgres_url, run_id, 120)

    found = asyncio.run(go())
    assert found["run"]["status"] == "delivered", found["notices"]
    assert {t["state"] for t in found["tasks"]} == {"done"}
    log = subprocess.run(  # nosec B603 B607 - fixed argv
        ["git", "--git-dir", repo, "log", "--format=%b", "main"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    trailers = [line for line in log.splitlines() if line.startswith("Oldnew-Task:")]
    assert sorted(trailers) == [f"Oldnew-Task: T{i}" for i in range(1, 7)]  # each once
    files = subprocess.run(  # nosec B603 B607 - fixed argv
        ["git", "--git-dir", repo, "ls-tree", "-r", "--name-only", "main"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert {f"mods/m{i}.py" for i in range(1, 7)} <= set(files)  # every task's work is on main
