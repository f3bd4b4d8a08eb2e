"""The driver-connection path of the hot reads: faults become 503s, broken connections leave
the pool, and connections the server closed are replaced on checkout without a pre-ping."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import Integer, bindparam, literal_column, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from users_api.config import Settings
from users_api.db.direct import compile_statement, driver_connection
from users_api.db.engine import create_engine, open_pool
from users_api.errors import DatabaseTimeout, DatabaseUnavailable

UNREACHABLE = "postgresql+asyncpg://postgres@127.0.0.1:1/none"


@pytest.fixture
async def service_engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """An engine built as the service builds it: pool of 2, short statement timeout."""
    tuned = settings.model_copy(update={"db_pool_size": 2, "db_statement_timeout_ms": 200})
    engine = create_engine(tuned)
    yield engine
    await engine.dispose()


async def backend_pids(engine: AsyncEngine) -> set[int]:
    """The backends the pool holds, seen from a connection outside it."""
    async with driver_connection(engine) as connection:
        mine = await connection.fetchval("SELECT pg_backend_pid()")
        rows = await connection.fetch(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'users-api'"
            " AND datname = current_database()"
        )
    return {row["pid"] for row in rows} | {mine}


def test_compiled_statement_lists_parameters_in_dollar_order() -> None:
    statement = compile_statement(
        select(literal_column("1")).where(
            bindparam("b", type_=Integer) > bindparam("a", type_=Integer),
            bindparam("a", type_=Integer) > bindparam("c", type_=Integer),
        )
    )
    assert "$1" in statement.sql
    assert "$3" in statement.sql
    assert statement.names == ("b", "a", "c")
    assert statement.args({"a": 1, "b": 2, "c": 3}) == [2, 1, 3]


async def test_a_read_runs_outside_any_transaction(service_engine: AsyncEngine) -> None:
    """One statement, its own transaction: no BEGIN was sent for it."""
    async with driver_connection(service_engine) as connection:
        assert not connection.is_in_transaction()
        assert await connection.fetchval("SELECT txid_current_if_assigned() IS NULL")


async def test_statement_timeout_is_a_database_timeout(service_engine: AsyncEngine) -> None:
    with pytest.raises(DatabaseTimeout):
        async with driver_connection(service_engine) as connection:
            await connection.execute("SELECT pg_sleep(2)")
    # The connection was fine, only slow: the next read on the pool works.
    async with driver_connection(service_engine) as connection:
        assert await connection.fetchval("SELECT 1") == 1


async def test_a_terminated_backend_is_unavailable_and_replaced(
    service_engine: AsyncEngine, engine: AsyncEngine
) -> None:
    async def read_after_termination() -> int:
        async with driver_connection(service_engine) as connection:
            pid: int = await connection.fetchval("SELECT pg_backend_pid()")
            async with engine.connect() as other:
                await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            await connection.fetchval("SELECT 1")
        return pid

    pids_before = await backend_pids(service_engine)
    with pytest.raises(DatabaseUnavailable):
        await read_after_termination()
    # Both pooled connections: the broken one was replaced, not handed out again.
    assert len(await backend_pids(service_engine) - pids_before) == 1


async def test_a_bug_is_not_disguised_as_an_outage(service_engine: AsyncEngine) -> None:
    with pytest.raises(asyncpg.UndefinedTableError):
        async with driver_connection(service_engine) as connection:
            await connection.fetch("SELECT * FROM no_such_table")


async def test_connections_the_server_closed_are_replaced_on_checkout(
    service_engine: AsyncEngine, engine: AsyncEngine
) -> None:
    """What pre-ping would catch, caught for free: every pooled backend is terminated
    while idle, and the next requests still get working connections, with no error."""
    before = await backend_pids(service_engine)
    async with engine.connect() as other:
        await other.execute(
            text("SELECT pg_terminate_backend(pid) FROM unnest(CAST(:pids AS int[])) AS pid"),
            {"pids": list(before)},
        )
        for _ in range(500):  # the backends exit a moment after being told to
            alive = await other.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(CAST(:pids AS int[]))"),
                {"pids": list(before)},
            )
            if alive.scalar_one() == 0:
                break
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)  # as a restart is long over by the next request
    for _ in range(4):  # more checkouts than the pool holds
        async with driver_connection(service_engine) as connection:
            pid = await connection.fetchval("SELECT pg_backend_pid()")
            assert pid not in before
    async with service_engine.connect() as connection:  # the session's path too
        assert (await connection.execute(text("SELECT 1"))).scalar_one() == 1


async def test_an_unreachable_database_is_unavailable(settings: Settings) -> None:
    engine = create_engine(settings.model_copy(update={"database_url": UNREACHABLE}))
    try:
        with pytest.raises(DatabaseUnavailable):
            async with driver_connection(engine):
                pass
    finally:
        await engine.dispose()


async def test_open_pool_fills_the_pool_once(service_engine: AsyncEngine) -> None:
    await open_pool(service_engine, 2)
    assert service_engine.pool.checkedin() == 2  # type: ignore[attr-defined]
    before = await backend_pids(service_engine)
    for _ in range(5):
        async with driver_connection(service_engine) as connection:
            await connection.fetchval("SELECT 1")
    assert await backend_pids(service_engine) == before  # nothing new was opened


async def test_open_pool_on_an_unreachable_database_logs_and_returns(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    engine = create_engine(settings.model_copy(update={"database_url": UNREACHABLE}))
    try:
        await open_pool(engine, 3)
    finally:
        await engine.dispose()
    assert "opened 0 of 3 pooled connections" in caplog.text
