"""The migrations are the schema: they build exactly the models, both ways, on a fresh database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from tests.processes import clean_environment, run_cli
from users_api.db.base import Base
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
    return list(compare_metadata(context, Base.metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def test_upgrade_to_head_builds_exactly_the_models(fresh_engine: AsyncEngine) -> None:
    async with fresh_engine.begin() as connection:
        assert await connection.run_sync(_tables) == set()
        await upgrade_on(connection)
    async with fresh_engine.connect() as connection:
        assert await connection.run_sync(_tables) == {*Base.metadata.tables, "alembic_version"}
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
        assert await connection.run_sync(_tables) == {*Base.metadata.tables, "alembic_version"}
        assert await connection.run_sync(_drift) == []


def test_migrate_sql_prints_the_sql_without_a_database(tmp_path: Path) -> None:
    result = run_cli("migrate", "--sql", cwd=tmp_path, env=clean_environment(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "CREATE TABLE users" in result.stdout
    assert not (tmp_path / ".data").exists()  # no embedded database was started either
