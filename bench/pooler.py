"""What the PgBouncer mode costs the hot read: the statement of `GET /api/v1/users/{id}`
(`USER_BY_ID`, one statement, no transaction of its own), run through `Database.run`
again and again on one connection, timed, in three set-ups on one server:

- direct: asyncpg's named, cached prepared statements (DB_PGBOUNCER=false);
- direct, pooler mode: unnamed statements parsed with every execution, in a transaction
  opened with its `SET LOCAL statement_timeout` (DB_PGBOUNCER=true);
- through PgBouncer (transaction mode, `tests/pgbouncer.py`), pooler mode;
- the same with the statement timeout kept by the server (`ALTER DATABASE … SET
  statement_timeout`): lone statements run without a transaction of their own.

A report, not a test: `.venv/bin/python -m bench.pooler [--reads N]`, with the server in
TEST_DATABASE_URL (default: the local one) migrated or not (the statement only reads).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from tests import databases
from tests.pgbouncer import DEFAULT_SERVER, pgbouncer
from users_api.config import Settings
from users_api.db.database import Database, Unit
from users_api.db.migrations import upgrade_on
from users_api.users import queries as q


async def _per_read(url: str, pooler: str, reads: int) -> float:
    settings = Settings(database_url=url, db_pgbouncer=pooler, db_pool_size=1, _env_file=None)
    db = await Database.open(settings, unique_fields={})
    values = {
        "user_id": uuid.uuid4(),
        "caller_id": uuid.uuid4(),
        "auth_version": 1,
        "session_id": uuid.uuid4(),
    }

    async def read(unit: Unit) -> object:
        return await unit.one(q.USER_BY_ID, **values)

    try:
        for _ in range(200):  # warm: the connection, the plan cache, the codecs
            await db.run(read, transaction=False)
        started = time.perf_counter()
        for _ in range(reads):
            await db.run(read, transaction=False)
        return (time.perf_counter() - started) / reads * 1e6
    finally:
        await db.close()


async def _migrate(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as connection:
        await upgrade_on(connection)
    await engine.dispose()


async def _keep_timeout(url: str) -> None:
    """The database's own statement timeout, as DB_STATEMENT_TIMEOUT_MS's default."""
    name = make_url(url).database
    connection = await asyncpg.connect(
        make_url(url).set(drivername="postgresql").render_as_string(False)
    )
    try:
        await connection.execute(f"ALTER DATABASE \"{name}\" SET statement_timeout = '5s'")
    finally:
        await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=3000)
    reads = parser.parse_args().reads
    server = os.environ.get("TEST_DATABASE_URL") or DEFAULT_SERVER
    name = databases.fresh_name()
    url = asyncio.run(databases.create_database(server, name))
    try:
        asyncio.run(_migrate(url))
        with pgbouncer(url) as pooled:
            rows = [
                ("direct, named statements", asyncio.run(_per_read(url, "false", reads))),
                ("direct, pooler mode", asyncio.run(_per_read(url, "true", reads))),
                ("PgBouncer 1.18, pooler mode", asyncio.run(_per_read(pooled, "true", reads))),
            ]
            asyncio.run(_keep_timeout(url))
            rows.append(
                ("PgBouncer 1.18, server timeout", asyncio.run(_per_read(pooled, "true", reads)))
            )
    finally:
        asyncio.run(databases.drop_database(server, name))
    for label, micros in rows:
        print(f"{label:<32} {micros:8.0f} µs a read")


if __name__ == "__main__":
    main()
