"""A private PostgreSQL server, for tests and benchmarks: its own data directory and port.

``PrivateServer`` runs Debian's (or PATH's) ``initdb`` and ``pg_ctl`` on a data directory,
listens on 127.0.0.1 only (its unix socket inside that directory), and makes a role with a
password and a database, so ``.url`` is what ``--state`` takes. It is tuned to start fast and
to be thrown away: ``fsync=off``, no synchronous commit, small shared buffers. A crash of the
machine can lose its data: never keep a run's state on one.

As root (CI), the server runs as the ``postgres`` user (initdb refuses root), the data
directory handed to it; its parent must let that user in (``/tmp/...``, not a 0700 home).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
from glob import glob
from pathlib import Path
from types import TracebackType

import psycopg
from psycopg import sql

from oldnew.errors import ConfigurationError, PostgresMissing

INSTALL = "apt-get install postgresql"
SERVER_USER = "postgres"
"""The system user the server runs as when oldnew runs as root."""
FAST = (
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
    "shared_buffers=16MB",
    "max_connections=200",
    "listen_addresses=127.0.0.1",
)
"""Server settings: start fast, keep nothing safe from a machine crash (tests only)."""
START_SECONDS = 30


def binaries() -> Path:
    """Return the folder of PostgreSQL's server programs: the newest Debian one, else PATH's.

    Raises:
        PostgresMissing: no ``initdb`` anywhere, with the command that installs it.

    """

    def major(path: str) -> int:
        found = re.search(r"/postgresql/(\d+)/", path)
        return int(found.group(1)) if found else 0

    debian = sorted(glob("/usr/lib/postgresql/*/bin/initdb"), key=major)
    initdb = debian[-1] if debian else shutil.which("initdb")
    if initdb is None or not (Path(initdb).parent / "pg_ctl").exists():
        raise PostgresMissing(
            "PostgreSQL is not installed (no initdb and pg_ctl in /usr/lib/postgresql/*/bin or "
            f"on PATH): install it with '{INSTALL}' (or your system's package), then try again"
        )
    return Path(initdb).parent


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateServer:
    """A PostgreSQL server of its own on ``data_dir`` and a port on 127.0.0.1.

    ``with PrivateServer(dir) as server: ... server.url`` starts it (a new data directory is
    made with ``initdb``; an existing one is started as it is) and stops it at the end.
    """

    def __init__(
        self,
        data_dir: Path | str,
        *,
        port: int | None = None,
        user: str = "oldnew",
        password: str | None = None,
        database: str = "oldnew",
    ) -> None:
        """Point at ``data_dir``; ``port`` None picks a free one at :meth:`start`."""
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.user = user
        self.password = password or secrets.token_hex(12)
        self.database = database
        self._bin = binaries()
        self._as_root = os.geteuid() == 0

    @property
    def url(self) -> str:
        """Return the URL of the server's database (what ``--state`` takes)."""
        return self.url_of(self.database)

    def url_of(self, database: str) -> str:
        """Return the URL of ``database`` on this server, with the role's password."""
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def start(self) -> PrivateServer:
        """Make the data directory if it is new, start the server, make the database."""
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        picked = self.port is None
        for attempt in range(3):
            if picked:
                self.port = free_port()
            if self._pg_ctl_start():
                break
            if not picked or attempt == 2:
                raise ConfigurationError(
                    f"the PostgreSQL server on {self.data_dir} did not start on port "
                    f"{self.port}: {self._log_tail()}"
                )
        self.create_database(self.database)
        return self

    def create_database(self, name: str) -> str:
        """Make database ``name`` on the running server unless it is there; return its URL."""
        with psycopg.connect(self.url_of("postgres"), autocommit=True) as conn:
            there = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if there.fetchone() is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url_of(name)

    def terminate(self, application_name: str | None = None, database: str | None = None) -> int:
        """Kill the server side of client connections (a fault test's lost connection).

        Only those of ``application_name`` and of ``database`` when given; never the
        connection that asks. Returns how many were killed.
        """
        with psycopg.connect(self.url_of("postgres"), autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE pid <> pg_backend_pid() AND backend_type = 'client backend' "
                "AND (%(app)s::text IS NULL OR application_name = %(app)s) "
                "AND (%(db)s::text IS NULL OR datname = %(db)s)",
                {"app": application_name, "db": database},
            ).fetchone()
        return int(row[0]) if row else 0

    def stop(self) -> None:
        """Stop the server (fast: open connections are cut); its data directory stays."""
        if (self.data_dir / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop", check=False)

    def __enter__(self) -> PrivateServer:
        """Start the server."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()

    def _initdb(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=self.data_dir.parent, delete=False) as pw:
            pw.write(self.password)
        try:
            self._own(Path(pw.name))
            self._own(self.data_dir)
            self._run(
                "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                self.user,
                f"--pwfile={pw.name}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            )
        finally:
            os.unlink(pw.name)

    def _pg_ctl_start(self) -> bool:
        options = [f"-p {self.port}", f"-k {self.data_dir}", *(f"-c {o}" for o in FAST)]
        proc = self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.data_dir / "server.log"),
            "-o",
            " ".join(options),
            "-w",
            "-t",
            str(START_SECONDS),
            "start",
            check=False,
        )
        return proc.returncode == 0

    def _own(self, path: Path) -> None:
        if self._as_root:
            shutil.chown(path, SERVER_USER, SERVER_USER)

    def _run(
        self, program: str, *args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(self._bin / program), *args]
        if self._as_root:
            argv = ["runuser", "-u", SERVER_USER, "--", *argv]
        # A server of its own: none of the caller's environment (its paths, its settings)
        # goes with it, so it is nobody's child but the data directory's.
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C"}
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
        if check and proc.returncode != 0:
            raise ConfigurationError(
                f"{program} failed on {self.data_dir} (exit {proc.returncode}): "
                f"{(proc.stderr or proc.stdout).strip()[-800:]}"
            )
        return proc

    def _log_tail(self) -> str:
        try:
            text = (self.data_dir / "server.log").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "no server log"
        return " | ".join(text.strip().splitlines()[-5:]) or "empty server log"
