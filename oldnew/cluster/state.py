"""Where a run's state lives: the ``--state`` URL, and opening PostgreSQL there.

Without a URL a run keeps its checkpoints in the workspace (``.oldnew/checkpoints.sqlite``) and
its memory in the machine's SQLite store, as it always has: nothing to start. With
``--state postgresql://USER:PASSWORD@HOST:PORT/DB`` (or ``OLDNEW_STATE_URL``) both go to that
database, so any machine that has the URL reads and continues the run: LangGraph's
``AsyncPostgresSaver`` and ``AsyncPostgresStore`` on one psycopg pool, set up on first use, and
a table of oldnew's own (``oldnew_meta``) saying which state schema the database holds.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.metadata import version as package_version
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import psycopg
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.store.postgres.aio import AsyncPostgresStore
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from oldnew.errors import (
    StateElsewhere,
    StateError,
    StateMissing,
    StateRefused,
    StateSchemaError,
    StateUnreachable,
    StateURLError,
)

ENV = "OLDNEW_STATE_URL"
SCHEMES = ("postgresql", "postgres")
SCHEMA_VERSION = 1
"""The state schema this oldnew reads and writes: LangGraph's checkpoint and store tables as
their own ``setup()`` migrates them, plus ``oldnew_meta``. Raised when a release stores a run
in a way an older one cannot read (a database of another version is refused, never changed)."""
CONNECT_SECONDS = 5
"""How long connecting may take before the server counts as not answering."""
SETUP_SECONDS = 60
"""How long a process waits while another one sets the database up."""
POOL_SIZE = 4
"""Connections one process keeps at most (the saver takes one at a time, the store its own)."""
BORROW_SECONDS = 60
"""How long a call waits for a free connection of the pool (busy, or being replaced)."""
_SETUP_LOCK = 0x6F6C646E6577
"""The advisory lock key (``oldnew``) that serialises setting a database up across machines."""
_ready: set[str] = set()
"""Databases (their redacted URL) this process has checked and set up already."""

_META = "CREATE TABLE IF NOT EXISTS oldnew_meta (key text PRIMARY KEY, value text NOT NULL)"
_REMEDY = "nothing of the run was touched: fix it, then the same command goes on where it stood"


def state_url(value: str | None = None) -> str | None:
    """Return the state URL: ``value`` (``--state``), else ``OLDNEW_STATE_URL``, else None.

    None means the default: the run's state in SQLite in its workspace.

    Raises:
        StateURLError: a value that is not a ``postgresql://`` (or ``postgres://``) URL.

    """
    raw = (value if value is not None else os.environ.get(ENV, "")).strip()
    if not raw:
        return None
    scheme = raw.split("://", 1)[0].lower() if "://" in raw else ""
    if scheme not in SCHEMES:
        shown = redact(raw) if "://" in raw else raw[:40]
        raise StateURLError(
            f"--state {shown!r} is no PostgreSQL URL: give postgresql://USER:PASSWORD@HOST:PORT"
            f"/DATABASE (or postgres://...), in --state or {ENV}; leave both out to keep the "
            "run's state in SQLite in its workspace (the default)"
        )
    return raw


def redact(url: str) -> str:
    """Return ``url`` without its password (in the address or the query): for logs and files."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, hosts = netloc.rsplit("@", 1)
        netloc = f"{unquote(userinfo.split(':', 1)[0])}@{hosts}"
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k.lower() != "password"])
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


def server_of(url: str) -> str:
    """Return ``host:port`` of a state URL, for messages (libpq's defaults where left out)."""
    parts = urlsplit(url)
    try:
        port = parts.port or 5432
    except ValueError:  # several hosts, or a port that is no number: show it as it is
        return parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.hostname or 'localhost'}:{port}"


def database_of(url: str) -> str:
    """Return the database a state URL names (its path), "" for the server's default."""
    return unquote(urlsplit(url).path.lstrip("/"))


def run_state(recorded: str | None, given: str | None, workspace: str) -> str | None:
    """Return the URL a command on a run opens, after checking it is where the run's state is.

    ``recorded`` is what the run's record says (a redacted URL, or None: SQLite in the
    workspace); ``given`` the ``--state`` value (None: ``OLDNEW_STATE_URL`` or nothing). The
    variable is a default, not an order: a run in SQLite goes on there whatever it says.

    Raises:
        StateElsewhere: the run's state is in Postgres and no URL is given, or a ``--state``
            is given for a run in SQLite, or the URL names another database.

    """
    if given is None and not recorded:
        return None
    url = state_url(given)
    if recorded and url is None:
        raise StateElsewhere(
            f"this run's state is in {recorded}: pass --state URL or set {ENV} (the URL with "
            "its password) to work on it from here"
        )
    if url is not None and not recorded:
        raise StateElsewhere(
            f"this run's state is in SQLite in its workspace ({workspace}), not in "
            f"{redact(url)}: leave out --state (and unset {ENV}) to work on it"
        )
    if url is not None and recorded and database_of(url) != database_of(recorded):
        raise StateElsewhere(
            f"this run's state is in {recorded}, not in {redact(url)}: pass the URL of "
            f"database {database_of(recorded)!r}"
        )
    return url


@dataclass
class State:
    """An open state database: the run's checkpointer and memory store on one pool."""

    saver: AsyncPostgresSaver
    store: AsyncPostgresStore
    pool: AsyncConnectionPool[psycopg.AsyncConnection[DictRow]]
    where: str
    """The database's redacted URL (what messages and the run's record show)."""
    meta: dict[str, str]
    """``oldnew_meta``: the state schema version and the oldnew version that set it up."""


@asynccontextmanager
async def open_state(
    url: str, *, application_name: str = "oldnew", pool_size: int = POOL_SIZE
) -> AsyncIterator[State]:
    """Yield the checkpointer and memory store of the PostgreSQL database at ``url``.

    The first open in a process checks the database's schema version and sets it up (a new
    empty one gets its tables); the pool checks a connection before lending it and replaces
    a broken one, so a connection the server dropped does not stop a run. A connection lost
    while working surfaces as a :class:`StateUnreachable` saying the run is resumable.

    Raises:
        StateUnreachable, StateRefused, StateMissing: connecting failed (what to fix).
        StateSchemaError: another oldnew state schema version set the database up.

    """
    where = redact(url)
    kwargs: dict[str, Any] = {
        "autocommit": True,
        "prepare_threshold": 0,
        "row_factory": dict_row,
        "connect_timeout": CONNECT_SECONDS,
        "application_name": application_name,
    }
    first = await _connect(url, kwargs)
    try:
        meta = await _prepare(first, where)
    finally:
        await first.close()
    pool: AsyncConnectionPool[psycopg.AsyncConnection[DictRow]] = AsyncConnectionPool(
        url,
        connection_class=psycopg.AsyncConnection[DictRow],
        kwargs=kwargs,
        min_size=1,
        max_size=pool_size,
        open=False,
        check=AsyncConnectionPool.check_connection,
        timeout=BORROW_SECONDS,
        name=f"oldnew-state {where}",
    )
    try:
        await pool.open(wait=True, timeout=CONNECT_SECONDS * 2)
    except PoolTimeout as exc:
        raise StateUnreachable(
            f"the state database {where} stopped answering ({exc}); {_REMEDY}"
        ) from exc
    try:
        yield State(AsyncPostgresSaver(pool), AsyncPostgresStore(pool), pool, where, meta)
    except (psycopg.OperationalError, PoolTimeout) as exc:
        raise lost_connection(where, exc) from exc
    finally:
        await pool.close()


def lost_connection(where: str, exc: BaseException) -> StateUnreachable:
    """Return the error of a connection to the state database ``where`` lost while working."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return StateUnreachable(
        f"the connection to the state database {where} was lost ({text}); every step "
        "finished before is saved there and the commits on main are intact: once it "
        "answers, continue with 'oldnew resume' (and the same --state)"
    )


async def _connect(url: str, kwargs: Mapping[str, Any]) -> psycopg.AsyncConnection[DictRow]:
    """Open one connection, or raise the StateError that says why it cannot be had."""
    try:
        return await asyncio.wait_for(
            psycopg.AsyncConnection.connect(url, **kwargs), CONNECT_SECONDS + 1
        )
    except (psycopg.Error, TimeoutError, OSError) as exc:
        raise connect_error(url, exc) from exc


def connect_error(url: str, exc: BaseException) -> StateError:
    """Return the typed error a failed connection to ``url`` means (libpq's words, untranslated)."""
    user, where, server = urlsplit(url).username, redact(url), server_of(url)
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, TimeoutError):
        text = "no reply"
    low = text.lower()
    state = getattr(exc, "sqlstate", None) or ""
    if state.startswith("28") or "authentication failed" in low or "no password" in low:
        return StateRefused(
            f"the state database server refused user {user!r} ({text}): give the "
            "right user and password in the URL (postgresql://USER:PASSWORD@HOST:PORT/DB, "
            f"special characters percent-encoded); {_REMEDY}"
        )
    if state == "3D000" or ("database" in low and "does not exist" in low):
        db = database_of(url)
        return StateMissing(
            f"the state database {db!r} does not exist on {server}: create it (createdb "
            f"{db}, or CREATE DATABASE) or fix the name in the URL; "
            f"oldnew sets its tables up in a new, empty database itself; {_REMEDY}"
        )
    return StateUnreachable(
        f"the state database server at {server} does not answer "
        f"({text}; oldnew waits {CONNECT_SECONDS} s at most): check that it runs, that host "
        f"and port in {where} are right and that this machine may reach it; {_REMEDY}"
    )


async def _prepare(conn: psycopg.AsyncConnection[DictRow], where: str) -> dict[str, str]:
    """Check the database's schema version and set it up, once per process and database.

    An advisory lock makes machines that start at once set it up one after the other.
    """
    await _take_setup_lock(conn, where)
    try:
        await conn.execute(_META)
        rows = await (await conn.execute("SELECT key, value FROM oldnew_meta")).fetchall()
        meta = {str(r["key"]): str(r["value"]) for r in rows}
        if not meta:
            meta = {"schema_version": str(SCHEMA_VERSION), "made_by": package_version("oldnew")}
            for key, value in meta.items():
                await conn.execute(
                    "INSERT INTO oldnew_meta (key, value) VALUES (%s, %s) "
                    "ON CONFLICT (key) DO NOTHING",
                    (key, value),
                )
        check_schema(meta, where)
        if where not in _ready:
            await AsyncPostgresSaver(conn).setup()
            await AsyncPostgresStore(conn).setup()
            _ready.add(where)
        return meta
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (_SETUP_LOCK,))


async def _take_setup_lock(conn: psycopg.AsyncConnection[DictRow], where: str) -> None:
    """Take the setup lock, trying again and again rather than waiting in one statement.

    A statement blocked on the lock holds a transaction open, and the store's setup builds an
    index concurrently, which waits for every open transaction: waiting in ``pg_advisory_lock``
    while another machine sets up would deadlock.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETUP_SECONDS
    while True:
        row = await (
            await conn.execute("SELECT pg_try_advisory_lock(%s) AS ok", (_SETUP_LOCK,))
        ).fetchone()
        if row is not None and row["ok"]:
            return
        if loop.time() > deadline:
            raise StateError(
                f"the state database {where} has been set up by another process for more than "
                f"{SETUP_SECONDS} s (it holds advisory lock {_SETUP_LOCK}): wait for it, or end "
                f"it, then try again; {_REMEDY}"
            )
        await asyncio.sleep(0.05)


def check_schema(meta: Mapping[str, str], where: str) -> None:
    """Raise StateSchemaError unless ``meta`` is of this oldnew's state schema version."""
    theirs = meta.get("schema_version", "?")
    if theirs == str(SCHEMA_VERSION):
        return
    made_by = meta.get("made_by", "an unknown version")
    mine = package_version("oldnew")
    newer = theirs.isdigit() and int(theirs) > SCHEMA_VERSION
    what = (
        f"upgrade oldnew to {made_by} or later on this machine (every machine on one "
        "database runs the same version)"
        if newer
        else f"finish its runs with oldnew {made_by}, or give this oldnew a new, empty database"
    )
    raise StateSchemaError(
        f"the state database {where} holds state schema version {theirs} (set up by oldnew "
        f"{made_by}); this oldnew ({mine}) reads version {SCHEMA_VERSION}: {what}. Nothing "
        "in it was changed"
    )
