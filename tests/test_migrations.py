"""The migrations are the schema: they build exactly the models, both ways, on a fresh database."""

from __future__ import annotations

import asyncio
import uuid
from asyncio.subprocess import PIPE
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from tests.processes import USERS_API, clean_environment, run_cli
from users_api.db.locks import MIGRATIONS_LOCK_CLASS
from users_api.db.metadata import metadata
from users_api.db.migrations import downgrade_on, upgrade_on


@pytest.fixture
async def fresh_engine(fresh_database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(fresh_database_url, poolclass=NullPool)
    yield engine
    await engine.dispose()


def _drift(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": True}
    )
    return list(compare_metadata(context, metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def test_upgrade_to_head_builds_exactly_the_models(fresh_engine: AsyncEngine) -> None:
    async with fresh_engine.begin() as connection:
        assert await connection.run_sync(_tables) == set()
        await upgrade_on(connection)
    async with fresh_engine.connect() as connection:
        assert await connection.run_sync(_tables) == {*metadata.tables, "alembic_version"}
        assert await connection.run_sync(_drift) == []


async def test_concurrent_upgrades_wait_for_one_another(
    fresh_database_url: str, fresh_engine: AsyncEngine, tmp_path: Path
) -> None:
    """Replicas starting together each migrate; the advisory lock makes them take turns.

    The test holds the lock itself first: all three runs must queue behind it (none may
    touch the schema meanwhile), and once it is released all three succeed.
    """
    env = clean_environment(tmp_path, DATABASE_URL=fresh_database_url)
    async with fresh_engine.connect() as holder:
        await holder.execute(text("SELECT pg_advisory_lock(:c, 0)"), {"c": MIGRATIONS_LOCK_CLASS})
        runs = [
            await asyncio.create_subprocess_exec(
                str(USERS_API), "migrate", cwd=tmp_path, env=env, stderr=PIPE
            )
            for _ in range(3)
        ]
        waiting = 0
        for _ in range(600):  # up to a minute for three interpreters to start
            waiting = await holder.scalar(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                    "AND classid = :c AND NOT granted"
                ),
                {"c": MIGRATIONS_LOCK_CLASS},
            )
            if waiting == 3 or any(run.returncode is not None for run in runs):
                break
            await asyncio.sleep(0.1)
        assert waiting == 3
        assert await holder.run_sync(_tables) == set()
        await holder.execute(text("SELECT pg_advisory_unlock(:c, 0)"), {"c": MIGRATIONS_LOCK_CLASS})
        await holder.commit()
    outcomes = [(await run.wait(), (await run.communicate())[1]) for run in runs]
    assert [code for code, _ in outcomes] == [0, 0, 0], outcomes
    async with fresh_engine.connect() as connection:
        assert await connection.run_sync(_drift) == []


async def test_downgrade_to_base_and_back_round_trips(fresh_engine: AsyncEngine) -> None:
    async with fresh_engine.begin() as connection:
        await upgrade_on(connection)
    async with fresh_engine.begin() as connection:
        await downgrade_on(connection, "base")
    async with fresh_engine.connect() as connection:
        assert await connection.run_sync(_tables) == {"alembic_version"}
    async with fresh_engine.begin() as connection:
        await upgrade_on(connection)
    async with fresh_engine.connect() as connection:
        assert await connection.run_sync(_tables) == {*metadata.tables, "alembic_version"}
        assert await connection.run_sync(_drift) == []


def test_migrate_sql_prints_the_sql_without_a_database(tmp_path: Path) -> None:
    result = run_cli("migrate", "--sql", cwd=tmp_path, env=clean_environment(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "CREATE TABLE users" in result.stdout
    assert not (tmp_path / ".data").exists()  # no embedded database was started either


async def test_0003_makes_a_session_of_every_refresh_token_family(
    fresh_engine: AsyncEngine,
) -> None:
    """Logins survive the upgrade: each family becomes a session, ended if it was revoked;
    and the downgrade gives the revocations back to the tokens."""
    user, live, revoked = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()

    def at(day: int, hour: int) -> datetime:
        return datetime(2026, 1, day, hour, tzinfo=UTC)

    tokens = [  # family, created, used, revoked
        (live, at(1, 10), at(1, 11), None),
        (live, at(1, 11), None, None),
        (revoked, at(2, 10), at(2, 11), at(3, 9)),
        (revoked, at(2, 11), None, at(3, 9)),
    ]
    async with fresh_engine.begin() as connection:
        await upgrade_on(connection, "0002")
        await connection.execute(
            text(
                "INSERT INTO users (id, email, username, password_hash, version)"
                " VALUES (:user, 'ada@example.com', 'ada', 'x', 1)"
            ),
            {"user": user},
        )
        for number, (family, created, used, ended) in enumerate(tokens):
            await connection.execute(
                text(
                    "INSERT INTO refresh_tokens (id, token_hash, family_id, user_id,"
                    " auth_version, created_at, expires_at, used_at, revoked_at)"
                    " VALUES (:id, :hash, :family, :user, 1, :created,"
                    " now() + interval '1 day', :used, :ended)"
                ),
                {
                    "id": uuid.uuid4(),
                    "hash": f"{number:064d}",
                    "family": family,
                    "user": user,
                    "created": created,
                    "used": used,
                    "ended": ended,
                },
            )
    async with fresh_engine.begin() as connection:
        await upgrade_on(connection)
    async with fresh_engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT id, user_id, created_at, last_used_at, ended_at FROM sessions")
        )
        sessions = {row.id: tuple(row)[1:] for row in rows}
    assert sessions == {
        live: (user, at(1, 10), at(1, 11), None),
        revoked: (user, at(2, 10), at(2, 11), at(3, 9)),
    }

    async with fresh_engine.begin() as connection:
        await downgrade_on(connection, "0002")
    async with fresh_engine.connect() as connection:
        rows = await connection.execute(text("SELECT family_id, revoked_at FROM refresh_tokens"))
        assert sorted((family == revoked, ended) for family, ended in rows) == [
            (False, None),
            (False, None),
            (True, at(3, 9)),
            (True, at(3, 9)),
        ]


async def test_0006_gives_each_session_its_newest_tokens_expiry(
    fresh_engine: AsyncEngine,
) -> None:
    """A session lives as long as its newest refresh token; one without any, not at all."""
    user, kept, bare = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    newest = datetime(2030, 1, 2, tzinfo=UTC)
    async with fresh_engine.begin() as connection:
        await upgrade_on(connection, "0004")
        await connection.execute(
            text(
                "INSERT INTO users (id, email, username, password_hash, version)"
                " VALUES (:user, 'ada@example.com', 'ada', 'x', 1)"
            ),
            {"user": user},
        )
        for session in (kept, bare):
            await connection.execute(
                text("INSERT INTO sessions (id, user_id) VALUES (:id, :user)"),
                {"id": session, "user": user},
            )
        for number, expires in enumerate((datetime(2030, 1, 1, tzinfo=UTC), newest)):
            await connection.execute(
                text(
                    "INSERT INTO refresh_tokens (id, token_hash, family_id, user_id,"
                    " auth_version, expires_at) VALUES (:id, :hash, :family, :user, 1, :expires)"
                ),
                {
                    "id": uuid.uuid4(),
                    "hash": f"{number:064d}",
                    "family": kept,
                    "user": user,
                    "expires": expires,
                },
            )
    async with fresh_engine.begin() as connection:
        await upgrade_on(connection)
    async with fresh_engine.connect() as connection:
        rows = await connection.execute(text("SELECT id, expires_at <= now() FROM sessions"))
        expired = {row[0]: row[1] for row in rows}
        kept_expiry = await connection.scalar(
            text("SELECT expires_at FROM sessions WHERE id = :id"), {"id": kept}
        )
        enabled = await connection.scalar(text("SELECT mfa_enabled FROM users"))
    assert expired == {kept: False, bare: True}
    assert kept_expiry == newest
    assert enabled is False
