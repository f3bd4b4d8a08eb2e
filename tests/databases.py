"""Where the tests' PostgreSQL comes from: a server given by URL, or the embedded one.

With `TEST_DATABASE_URL` set, each test run creates a fresh database on that server and
drops it afterwards; without it, the run starts its own embedded PostgreSQL in a
throw-away folder, by the same mechanism `users-api serve` uses.

When `TEST_DATABASE_URL` is a pooler (PgBouncer, `tests/pgbouncer.py`),
`TEST_DIRECT_DATABASE_URL` names the same server directly: databases are created,
migrated and emptied over it, and the app is served through the pooler.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
from sqlalchemy.engine import URL, make_url

from users_api.config import normalize_database_url
from users_api.db.embedded import EmbeddedPostgres

SERVER_URL_VARIABLE = "TEST_DATABASE_URL"
DIRECT_URL_VARIABLE = "TEST_DIRECT_DATABASE_URL"


def _asyncpg_dsn(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def create_database(server_url: str, name: str, options: str = "") -> str:
    """A new database on the server; `options` are `CREATE DATABASE`'s (a locale, say)."""
    url = make_url(normalize_database_url(server_url))
    connection = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        await connection.execute(f'CREATE DATABASE "{name}" {options}')
    finally:
        await connection.close()
    return url.set(database=name).render_as_string(hide_password=False)


async def drop_database(server_url: str, name: str) -> None:
    url = make_url(normalize_database_url(server_url))
    connection = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


# Every table of the schema but Alembic's, each after the tables whose foreign keys point
# at it (a table that points at itself is no matter: one DELETE takes all its rows).
_TABLES_CHILDREN_FIRST = """
WITH RECURSIVE tables AS (
    SELECT c.oid, c.relname
    FROM pg_class c
    WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
      AND c.relname <> 'alembic_version'
), below (oid, depth) AS (
    SELECT oid, 0 FROM tables
    UNION ALL
    SELECT f.conrelid, below.depth + 1
    FROM below JOIN pg_constraint f ON f.confrelid = below.oid
    WHERE f.contype = 'f' AND f.conrelid <> f.confrelid AND below.depth < 100
)
SELECT format('DELETE FROM %I', t.relname) FROM tables t JOIN below b USING (oid)
GROUP BY t.relname ORDER BY max(b.depth) DESC, t.relname
"""


async def emptying_sql(connection: asyncpg.Connection) -> str:
    """Statements that empty every table of the schema, in one round trip.

    DELETE, not TRUNCATE: TRUNCATE gives each table and index a new file, 18-25 ms for
    the schema's tables whatever they hold, and the suite empties them after every test
    (a tenth of a run's time); a DELETE of the few rows a test leaves takes under 1 ms.
    """
    return "; ".join(row[0] for row in await connection.fetch(_TABLES_CHILDREN_FIRST))


def fresh_name() -> str:
    return f"users_api_test_{secrets.token_hex(6)}"


# A throw-away cluster need not survive a crash: no fsync of every commit's WAL, and no
# flush of the whole cluster at each DROP DATABASE's checkpoint (seconds a test, on a
# slow disk). The service's own embedded database keeps PostgreSQL's defaults.
_THROW_AWAY = (
    "ALTER SYSTEM SET fsync = off",
    "ALTER SYSTEM SET synchronous_commit = off",
    "ALTER SYSTEM SET full_page_writes = off",
    "SELECT pg_reload_conf()",
)


async def _throw_away(url: str) -> None:
    connection = await asyncpg.connect(_asyncpg_dsn(make_url(normalize_database_url(url))))
    try:
        for statement in _THROW_AWAY:
            await connection.execute(statement)
    finally:
        await connection.close()


@contextmanager
def embedded_server(*, durable: bool = False) -> Iterator[tuple[EmbeddedPostgres, str]]:
    """An embedded PostgreSQL in a temporary folder, deleted afterwards. `durable`: with
    PostgreSQL's defaults, for a test that crashes it and counts what survived."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    folder = Path(tempfile.mkdtemp(prefix="users-api-test-"))
    embedded = EmbeddedPostgres(folder)
    try:
        url = embedded.start().render_as_string(hide_password=False)
        if not durable:
            # On a thread of its own: the caller may be a fixture in a running event loop.
            with ThreadPoolExecutor(1) as apart:
                apart.submit(asyncio.run, _throw_away(url)).result()
        yield embedded, url
    finally:
        embedded.stop()
        shutil.rmtree(folder, ignore_errors=True)


def server_url() -> str | None:
    return os.environ.get(SERVER_URL_VARIABLE) or None


def through_pooler() -> bool:
    """The app reaches this run's server through a pooler (`tests/pgbouncer.py`)."""
    return bool(os.environ.get(DIRECT_URL_VARIABLE)) and server_url() is not None


def direct_server_url() -> str | None:
    """The server itself, never through a pooler."""
    return os.environ.get(DIRECT_URL_VARIABLE) or server_url()


def on_server(database_url: str, server: str) -> str:
    """`database_url`'s database, on `server` (reached another way: direct or pooled)."""
    name = make_url(database_url).database
    return (
        make_url(normalize_database_url(server))
        .set(database=name)
        .render_as_string(hide_password=False)
    )
