"""``oldnew bench workers``: one run's tasks over 1 and 2 worker processes, end to end.

One cheap run (three tasks, gates of 0.2 s) on the test's private PostgreSQL server checks
that the command delivers and that its figures are sane; the 30-task measurement is the
benchmark's business (README, "Many machines"), never a wall-clock assertion here.
"""

from __future__ import annotations

import json
import uuid
from urllib.parse import urlsplit, urlunsplit

import psycopg
from typer.testing import CliRunner

from oldnew.cli import app


def test_two_workers_share_the_run_and_every_figure_is_sane(postgres_url: str) -> None:
    res = CliRunner().invoke(
        app,
        [
            "bench", "workers", "--workers", "1,2", "--tasks", "3", "--gate-seconds", "0.2",
            "--latency", "0.01", "--state", postgres_url, "--timeout", "120", "--json",
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    figures = json.loads(res.stdout)
    assert figures["delivered"] is True and figures["speedup_over"] == 1
    one, two = figures["runs"]
    assert [one["workers"], two["workers"]] == [1, 2]
    for row in (one, two):
        assert row["status"] == "delivered" and row["tasks_done"] == 3, row
        assert row["not_done"] == [] and row["problem"] is None
        assert row["makespan_s"] > 0.2  # at least one validation's sleep
        assert row["steps"]["advance"]["jobs"] >= 3  # every task took a step on a worker
        assert row["steps"]["drive"]["jobs"] >= 1
    assert one["speedup"] == 1.0
    assert two["speedup"] == round(one["makespan_s"] / two["makespan_s"], 2)
    assert one["worked_on_by"] == ["w1"] and two["worked_on_by"] == ["w1", "w2"]
    assert "2 worker(s): delivered, 3/3 tasks done" in res.stderr
    # Each count had a database of its own, dropped after: the given one is left as it was.
    with psycopg.connect(postgres_url) as conn:
        names = [r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()]
    assert not [n for n in names if n.startswith("oldnew_bench_")]


def test_a_role_that_may_not_create_databases_is_told_what_to_do(postgres_url: str) -> None:
    role = f"nocreate_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw'")
    parts = urlsplit(postgres_url)
    url = urlunsplit(parts._replace(netloc=f"{role}:pw@{parts.netloc.rsplit('@', 1)[1]}"))
    res = CliRunner().invoke(app, ["bench", "workers", "--state", url, "--tasks", "1"])
    assert res.exit_code == 2, res.output
    assert "may not create databases" in res.stderr and "leave --state out" in res.stderr
    assert "pw" not in res.stderr  # the password is never printed


def test_worker_counts_must_be_positive_numbers() -> None:
    res = CliRunner().invoke(app, ["bench", "workers", "--workers", "1,x"])
    assert res.exit_code == 2 and "worker counts like 1,2,3" in res.output
