"""The pool of the hot paths (asyncpg's): faults become 503s, broken connections leave the
pool, connections the server closed are replaced on checkout without a pre-ping, and a
connection comes back as it was lent, without a reset query."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import Integer, bindparam, literal_column, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from users_api.config import Settings
from users_api.db.direct import DirectPool, compile_statement, driver_arguments
from users_api.db.engine import create_engine, open_pool
from users_api.errors import DatabaseTimeout, DatabaseUnavailable

UNREACHABLE = "postgresql+asyncpg://postgres@127.0.0.1:1/none"


@contextlib.asynccontextmanager
async def open_direct(
    settings: Settings, **changes: object
) -> AsyncIterator[tuple[AsyncEngine, DirectPool]]:
    """The engine and asyncpg's pool as the service opens them, closed on exit."""
    tuned = settings.model_copy(update=changes)
    engine = create_engine(tuned)
    pool = await DirectPool.open(engine, tuned)
    try:
        yield engine, pool
    finally:
        await pool.close()
        await engine.dispose()


@pytest.fixture
async def service_pool(settings: Settings) -> AsyncIterator[DirectPool]:
    """A pool built as the service builds it: 2 connections, a short statement timeout."""
    async with open_direct(settings, db_pool_size=2, db_statement_timeout_ms=200) as (_, pool):
        yield pool


async def backend_pids(pool: DirectPool, size: int = 2) -> set[int]:
    """The backends of the pool's `size` connections, all taken at once."""
    async with contextlib.AsyncExitStack() as stack:
        taken = [await stack.enter_async_context(pool.connection()) for _ in range(size)]
        return {await connection.fetchval("SELECT pg_backend_pid()") for connection in taken}


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


async def test_a_read_runs_outside_any_transaction(service_pool: DirectPool) -> None:
    """One statement, its own transaction: no BEGIN was sent for it."""
    async with service_pool.connection() as connection:
        assert not connection.is_in_transaction()
        assert await connection.fetchval("SELECT txid_current_if_assigned() IS NULL")


async def test_statement_timeout_is_a_database_timeout(service_pool: DirectPool) -> None:
    with pytest.raises(DatabaseTimeout):
        async with service_pool.connection() as connection:
            await connection.execute("SELECT pg_sleep(2)")
    # The connection was fine, only slow: the next read on the pool works.
    async with service_pool.connection() as connection:
        assert await connection.fetchval("SELECT 1") == 1


async def test_a_terminated_backend_is_unavailable_and_replaced(
    service_pool: DirectPool, engine: AsyncEngine
) -> None:
    async def read_after_termination() -> int:
        async with service_pool.connection() as connection:
            pid: int = await connection.fetchval("SELECT pg_backend_pid()")
            async with engine.connect() as other:
                await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            await connection.fetchval("SELECT 1")
        return pid

    pids_before = await backend_pids(service_pool)
    with pytest.raises(DatabaseUnavailable):
        await read_after_termination()
    # The broken connection was replaced, not handed out again.
    for _ in range(3):
        async with service_pool.connection() as connection:
            assert await connection.fetchval("SELECT 1") == 1
    after = await backend_pids(service_pool)
    assert len(after) == 2
    assert len(after - pids_before) == 1


async def test_a_bug_is_not_disguised_as_an_outage(service_pool: DirectPool) -> None:
    with pytest.raises(asyncpg.UndefinedTableError):
        async with service_pool.connection() as connection:
            await connection.fetch("SELECT * FROM no_such_table")


@pytest.mark.parametrize("pre_ping", [False, True])
async def test_connections_the_server_closed_are_replaced_on_checkout(
    settings: Settings, engine: AsyncEngine, pre_ping: bool
) -> None:
    """What pre-ping would catch, caught for free: every pooled backend is terminated
    while idle, and the next requests still get working connections, with no error."""
    async with open_direct(settings, db_pool_size=2, db_pool_pre_ping=pre_ping) as (
        service_engine,
        pool,
    ):
        before = await backend_pids(pool)
        await open_pool(service_engine, 2)
        async with service_engine.connect() as connection:
            row = await connection.execute(text("SELECT pg_backend_pid()"))
            before.add(row.scalar_one())
        await terminate(engine, before)
        for _ in range(4):  # more checkouts than the pool holds
            async with pool.connection() as connection:
                pid = await connection.fetchval("SELECT pg_backend_pid()")
                assert pid not in before
        async with service_engine.connect() as connection:  # the sessions' pool too
            assert (await connection.execute(text("SELECT 1"))).scalar_one() == 1


async def terminate(engine: AsyncEngine, pids: set[int]) -> None:
    """End these backends and wait until they are gone, as after a server restart."""
    async with engine.connect() as other:
        await other.execute(
            text("SELECT pg_terminate_backend(pid) FROM unnest(CAST(:pids AS int[])) AS pid"),
            {"pids": list(pids)},
        )
        for _ in range(500):  # the backends exit a moment after being told to
            alive = await other.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(CAST(:pids AS int[]))"),
                {"pids": list(pids)},
            )
            if alive.scalar_one() == 0:
                break
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)  # as a restart is long over by the next request


async def test_a_connection_comes_back_as_it_was_lent(settings: Settings) -> None:
    """No reset query on release (a round trip per request): the session keeps its
    settings, so the hot paths must leave nothing in it, and do not."""
    async with open_direct(settings, db_pool_size=1, db_statement_timeout_ms=1234) as (_, pool):
        async with pool.connection() as connection:
            await connection.execute("SELECT set_config('users_api.probe', 'kept', false)")
        async with pool.connection() as connection:
            kept = await connection.fetchval("SELECT current_setting('users_api.probe', true)")
            timeout = await connection.fetchval("SHOW statement_timeout")
        assert kept == "kept"
        assert timeout == "1234ms"


async def test_a_pool_with_nothing_free_is_unavailable_after_the_pool_timeout(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_direct(settings, db_pool_size=1, db_pool_timeout=0.2) as (_, pool):
        async with pool.connection():
            started = asyncio.get_running_loop().time()
            with pytest.raises(DatabaseUnavailable):
                async with pool.connection():
                    pass
            waited = asyncio.get_running_loop().time() - started
        assert 0.2 <= waited < 2
        assert "no database connection free within 0.2 s" in caplog.text
        async with pool.connection() as connection:  # given back: free again
            assert await connection.fetchval("SELECT 1") == 1


async def test_an_unreachable_database_is_unavailable(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Start-up goes on (the pool logs what it could not open); requests get 503s."""
    caplog.set_level(logging.WARNING)
    async with open_direct(settings, database_url=UNREACHABLE, db_pool_size=3) as (_, pool):
        assert "opened 0 of 3 pooled connections" in caplog.text
        with pytest.raises(DatabaseUnavailable):
            async with pool.connection():
                pass


async def test_open_fills_the_pool_once(settings: Settings) -> None:
    async with open_direct(settings, db_pool_size=2) as (_, pool):
        assert pool.checked_out() == 0
        before = await backend_pids(pool)
        for _ in range(5):
            async with pool.connection() as connection:
                await connection.fetchval("SELECT 1")
        assert await backend_pids(pool) == before  # nothing new was opened


async def test_open_pool_on_an_unreachable_database_logs_and_returns(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    engine = create_engine(settings.model_copy(update={"database_url": UNREACHABLE}))
    try:
        await open_pool(engine, 3)
    finally:
        await engine.dispose()
    assert "opened 0 of 3 pooled connections" in caplog.text


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql+asyncpg://ann:pw@db.example:6432/app?ssl=require"
            "&prepared_statement_cache_size=0",
            {
                "host": "db.example",
                "port": 6432,
                "user": "ann",
                "password": "pw",
                "database": "app",
                "ssl": "require",
            },
        ),
        (
            "postgresql+asyncpg://ann@/app?host=/run/postgresql",
            {"host": "/run/postgresql", "user": "ann", "database": "app"},
        ),
    ],
)
def test_the_pool_connects_as_the_engine_does(
    settings: Settings, url: str, expected: dict[str, object]
) -> None:
    """The same URL reading (a socket folder, ssl) and connect arguments; what only
    SQLAlchemy's adapter takes (its statement cache size) is left out."""
    tuned = settings.model_copy(update={"database_url": url})
    arguments = driver_arguments(create_engine(tuned), tuned)
    assert {name: arguments[name] for name in expected} == expected
    assert "prepared_statement_cache_size" not in arguments
    assert arguments["server_settings"]["application_name"] == "users-api"
    assert arguments["timeout"] == tuned.db_connect_timeout
