"""Is the audit list's newest-first page fast at a million events? A report, not a test.

Creates a scratch database on a local PostgreSQL server (default
`postgresql://postgres@127.0.0.1:5432/postgres`; `--server` to change), migrates it,
loads `--events` rows (default 1,000,000: a year of events, 15 types, 10,000 users),
ANALYZEs, then for each page shape of `GET /api/v1/audit-events` runs the service's own
statement (`events.queries.page`) with `EXPLAIN (ANALYZE, BUFFERS)` and prints its plan's
first lines and execution time, and the best of five plain runs. The database is
dropped afterwards, whatever happens.

    .venv/bin/python -m bench.audit_events
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import create_async_engine

from users_api.db.migrations import upgrade_on
from users_api.events import queries as q

LIMIT = 51  # a default page (50) and the one that tells whether there is a next
USERS = 10_000

# A year of events, newest at `now`, one every `step` seconds. Types: logins most of
# all, `user.deleted` one in a thousand (a rare type), the rest spread evenly.
LOAD = """
INSERT INTO events (id, type, occurred_at, actor_type, actor_id, subject_type, subject_id,
                    request_id, ip_address, data)
SELECT gen_random_uuid(),
       CASE WHEN i % 1000 = 0 THEN 'user.deleted'
            WHEN i % 2 = 0 THEN 'auth.login_succeeded'
            ELSE (ARRAY['user.created', 'user.updated', 'user.activated', 'user.deactivated',
                        'user.password_changed', 'user.email_verified', 'auth.login_failed',
                        'auth.session_ended', 'user.mfa_enabled'])[1 + (i / 2) % 9]
       END,
       $1::timestamptz - make_interval(secs => i * $2::float8),
       CASE WHEN i % 50 = 0 THEN 'system' ELSE 'user' END,
       CASE WHEN i % 50 = 0 THEN NULL ELSE md5((i % $3::int)::text)::uuid END,
       'user',
       md5(((i * 7) % $3::int)::text)::uuid,
       md5(i::text),
       '203.0.113.' || (i % 250)::text,
       jsonb_build_object('fields', jsonb_build_array('full_name'))
FROM generate_series(1, $4::int) AS i
"""


def _shapes(now: datetime) -> list[tuple[str, q.PageShape, dict[str, Any]]]:
    user = uuid.UUID(bytes=bytes.fromhex("c4ca4238a0b923820dcc509a6f75849b"))  # md5('1')
    none = {
        "types": [],
        "type": None,
        "actor_id": None,
        "subject_id": None,
        "since": None,
        "until": None,
    }

    def shape(**on: bool) -> q.PageShape:
        names = ("types", "actor", "subject", "since", "until", "after", "one_type")
        return q.PageShape(**{name: on.get(name, False) for name in names})

    user_types = [
        "user.activated",
        "user.created",
        "user.deactivated",
        "user.deleted",
        "user.email_verified",
        "user.mfa_disabled",
        "user.mfa_enabled",
        "user.password_changed",
        "user.password_reset",
        "user.updated",
    ]
    month_ago = now - timedelta(days=30)
    return [
        ("first page, no filter", shape(), none),
        (
            "a later page (cursor a month back)",
            shape(after=True),
            none | {"after_at": month_ago, "after_id": uuid.UUID(int=0)},
        ),
        (
            "type=auth.login_succeeded (common)",
            shape(types=True, one_type=True),
            none | {"type": "auth.login_succeeded"},
        ),
        (
            "type=user.deleted (rare)",
            shape(types=True, one_type=True),
            none | {"type": "user.deleted"},
        ),
        ("type=user.* (a prefix: 10 types)", shape(types=True), none | {"types": user_types}),
        (
            "type=user.deleted&type=user.mfa_disabled (two rare types)",
            shape(types=True),
            none | {"types": ["user.deleted", "user.mfa_disabled"]},
        ),
        ("actor_id=one user", shape(actor=True), none | {"actor_id": user}),
        ("subject_id=one user", shape(subject=True), none | {"subject_id": user}),
        (
            "since..until, one week, a month back",
            shape(since=True, until=True),
            none | {"since": month_ago - timedelta(days=7), "until": month_ago},
        ),
        (
            "type=user.* and actor_id",
            shape(types=True, actor=True),
            none | {"types": user_types, "actor_id": user},
        ),
    ]


async def _report(connection: asyncpg.Connection, now: datetime) -> None:
    for title, shape, values in _shapes(now):
        statement = q.page(shape)
        args = statement.args({**values, "limit": LIMIT})
        plan = await connection.fetch(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT TEXT) " + statement.sql, *args
        )
        lines = [row[0] for row in plan]
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            rows = await connection.fetch(statement.sql, *args)
            best = min(best, time.perf_counter() - started)
        execution = next(line for line in lines if line.startswith("Execution Time"))
        print(f"\n## {title}: {len(rows)} rows, best of 5 {best * 1000:.2f} ms, {execution}")
        for line in lines[:6]:
            print("   ", line)


async def main(server: str, events: int) -> None:
    name = f"users_api_audit_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(server)
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = server.rsplit("/", 1)[0] + f"/{name}"
    try:
        engine = create_async_engine(dsn.replace("postgresql://", "postgresql+asyncpg://", 1))
        async with engine.begin() as connection:
            await upgrade_on(connection)
        await engine.dispose()
        connection = await asyncpg.connect(dsn)
        try:
            now = datetime.now(UTC)
            step = 365 * 86400 / events
            started = time.perf_counter()
            await connection.execute(LOAD, now, step, USERS, events)
            await connection.execute("VACUUM ANALYZE events")
            loaded = time.perf_counter() - started
            size = await connection.fetchval(
                "SELECT pg_size_pretty(pg_total_relation_size('events'))"
            )
            print(f"{events:,} events loaded and analyzed in {loaded:.1f} s ({size} with indexes)")
            await _report(connection, now)
        finally:
            await connection.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--events", type=int, default=1_000_000)
    options = parser.parse_args()
    asyncio.run(main(options.server, options.events))
