"""The one database path (`Database.run` on asyncpg's pool): faults become 503s, broken
connections leave the pool, connections the server closed are replaced on checkout
without a pre-ping, a connection comes back as it was lent (no reset query), and a
transaction the database aborted for a concurrent one is run again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from sqlalchemy import Integer, bindparam, literal_column, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from users_api.config import Settings
from users_api.db.database import Database, Unit, connect_arguments
from users_api.db.statements import compile_statement
from users_api.errors import ConcurrentChange, Conflict, DatabaseTimeout, DatabaseUnavailable

UNREACHABLE = "postgresql+asyncpg://postgres@127.0.0.1:1/none"


@contextlib.asynccontextmanager
async def open_database(settings: Settings, **changes: object) -> AsyncIterator[Database]:
    """The database as the service opens it, closed on exit."""
    database = await Database.open(settings.model_copy(update=changes), unique_fields={})
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
async def service_db(settings: Settings) -> AsyncIterator[Database]:
    """A database built as the service builds it: 2 connections, a short statement timeout."""
    async with open_database(settings, db_pool_size=2, db_statement_timeout_ms=200) as database:
        yield database


def fetch(sql: str) -> Callable[[Unit], Awaitable[Any]]:
    async def work(unit: Unit) -> Any:
        return await unit.connection.fetchval(sql)

    return work


async def backend_pids(database: Database, size: int = 2) -> set[int]:
    """The backends of `size` connections, all taken at once."""
    together = asyncio.Barrier(size)

    async def pid(unit: Unit) -> int:
        await together.wait()
        found: int = await unit.connection.fetchval("SELECT pg_backend_pid()")
        return found

    return set(await asyncio.gather(*(database.run(pid) for _ in range(size))))


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
    assert statement.args({"a": 1, "b": 2, "c": 3}) == (2, 1, 3)


async def test_a_lone_statement_runs_outside_any_transaction(
    settings: Settings, direct_database_url: str
) -> None:
    """One statement, its own transaction: no BEGIN was sent for it. (Directly: behind a
    pooler every unit is a transaction, tests/test_pgbouncer.py.)"""

    async def work(unit: Unit) -> bool:
        assert not unit.connection.is_in_transaction()
        assigned: bool = await unit.connection.fetchval("SELECT txid_current_if_assigned() IS NULL")
        return assigned

    async with open_database(settings, database_url=direct_database_url, db_pool_size=1) as db:
        assert await db.run(work, transaction=False)


async def test_db_echo_logs_each_statement_but_none_of_its_values(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "a value that may be a password"

    async def work(unit: Unit) -> Any:
        return await unit.connection.fetchval("SELECT length($1::text)", secret)

    caplog.set_level(logging.INFO, logger="users_api.sql")
    async with open_database(settings, db_pool_size=1, db_echo=True) as database:
        assert await database.run(work) == len(secret)
    lines = [r.getMessage() for r in caplog.records if r.name == "users_api.sql"]
    assert any(line.startswith("SELECT length($1::text) (") for line in lines), lines
    assert not any(secret in line for line in lines)

    caplog.clear()  # off by default
    async with open_database(settings, db_pool_size=1) as database:
        await database.run(work)
    assert [r for r in caplog.records if r.name == "users_api.sql"] == []


async def test_work_runs_in_one_transaction_and_rolls_back_on_error(
    service_db: Database, engine: AsyncEngine
) -> None:
    class Refused(Exception):
        pass

    async def work(unit: Unit) -> None:
        assert unit.connection.is_in_transaction()
        await unit.connection.execute("CREATE TABLE test_rolled_back (id int)")
        raise Refused

    with pytest.raises(Refused):
        await service_db.run(work)
    async with engine.connect() as connection:
        found = await connection.scalar(text("SELECT to_regclass('test_rolled_back')"))
    assert found is None


async def test_statement_timeout_is_a_database_timeout(service_db: Database) -> None:
    with pytest.raises(DatabaseTimeout):
        await service_db.run(fetch("SELECT pg_sleep(2)"))
    # The connection was fine, only slow: the next read on the pool works.
    assert await service_db.run(fetch("SELECT 1")) == 1


async def test_a_terminated_backend_is_unavailable_and_replaced(
    service_db: Database, engine: AsyncEngine
) -> None:
    async def read_after_termination(unit: Unit) -> None:
        pid: int = await unit.connection.fetchval("SELECT pg_backend_pid()")
        async with engine.connect() as other:
            await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        await unit.connection.fetchval("SELECT 1")

    pids_before = await backend_pids(service_db)
    with pytest.raises(DatabaseUnavailable):
        await service_db.run(read_after_termination, transaction=False)
    # The broken connection was replaced, not handed out again.
    for _ in range(3):
        assert await service_db.run(fetch("SELECT 1")) == 1
    after = await backend_pids(service_db)
    assert len(after) == 2
    assert len(after - pids_before) == 1


async def test_a_bug_is_not_disguised_as_an_outage(service_db: Database) -> None:
    with pytest.raises(asyncpg.UndefinedTableError):
        await service_db.run(fetch("SELECT * FROM no_such_table"))


async def test_a_deadlock_is_run_again_then_a_concurrent_change(
    service_db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """A transaction the database aborted for another runs once more; twice is a 409."""
    caplog.set_level(logging.INFO)
    attempts = 0

    async def deadlocked(unit: Unit) -> None:
        nonlocal attempts
        attempts += 1
        await unit.connection.execute(
            "DO $$ BEGIN RAISE EXCEPTION 'deadlock' USING ERRCODE = '40P01'; END $$"
        )

    with pytest.raises(ConcurrentChange):
        await service_db.run(deadlocked)
    assert attempts == 2
    assert "retrying after a concurrent change" in caplog.text

    attempts = 0

    async def once(unit: Unit) -> int:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            await unit.connection.execute(
                "DO $$ BEGIN RAISE EXCEPTION 'serialization' USING ERRCODE = '40001'; END $$"
            )
        return attempts

    assert await service_db.run(once) == 2


async def test_a_unique_index_named_is_a_conflict_on_its_field(settings: Settings) -> None:
    async with open_database(settings, db_pool_size=1) as plain:
        database = Database(
            plain._pool, timeout=1, pre_ping=False, unique_fields={"test_unique_name": "name"}
        )

        async def insert_twice(unit: Unit) -> None:
            await unit.connection.execute("CREATE TEMP TABLE t (name text)")
            await unit.connection.execute("CREATE UNIQUE INDEX test_unique_name ON t (name)")
            await unit.connection.execute("INSERT INTO t VALUES ('a'), ('a')")

        with pytest.raises(Conflict) as refused:
            await database.run(insert_twice)
        assert refused.value.field == "name"


@pytest.mark.parametrize("pre_ping", [False, True])
async def test_connections_the_server_closed_are_replaced_on_checkout(
    settings: Settings, engine: AsyncEngine, pre_ping: bool
) -> None:
    """What pre-ping would catch, caught for free: every pooled backend is terminated
    while idle, and the next requests still get working connections, with no error."""
    async with open_database(settings, db_pool_size=2, db_pool_pre_ping=pre_ping) as database:
        before = await backend_pids(database)
        await terminate(engine, before)
        for _ in range(4):  # more checkouts than the pool holds
            pid = await database.run(fetch("SELECT pg_backend_pid()"))
            assert pid not in before


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
    settings, so the work must leave nothing in it, and does not."""
    async with open_database(settings, db_pool_size=1, db_statement_timeout_ms=1234) as database:
        await database.run(fetch("SELECT set_config('users_api.probe', 'kept', false)"))
        kept = await database.run(fetch("SELECT current_setting('users_api.probe', true)"))
        timeout = await database.run(fetch("SHOW statement_timeout"))
        assert kept == "kept"
        assert timeout == "1234ms"


async def test_a_pool_with_nothing_free_is_unavailable_after_the_pool_timeout(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_database(settings, db_pool_size=1, db_pool_timeout=0.2) as database:
        held = asyncio.Event()
        release = asyncio.Event()

        async def hold(unit: Unit) -> None:
            held.set()
            await release.wait()

        holder = asyncio.create_task(database.run(hold))
        await held.wait()
        started = asyncio.get_running_loop().time()
        with pytest.raises(DatabaseUnavailable):
            await database.run(fetch("SELECT 1"))
        waited = asyncio.get_running_loop().time() - started
        release.set()
        await holder
        assert 0.2 <= waited < 2
        assert "no connection to the database free within 0.2 s" in caplog.text
        assert await database.run(fetch("SELECT 1")) == 1  # given back: free again
        assert database.in_use() == 0


async def test_an_unreachable_database_is_unavailable(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Start-up goes on (the pool logs what it could not open); requests get 503s."""
    caplog.set_level(logging.WARNING)
    async with open_database(settings, database_url=UNREACHABLE, db_pool_size=3) as database:
        assert "opened 0 of 3 pooled connections" in caplog.text
        with pytest.raises(DatabaseUnavailable):
            await database.run(fetch("SELECT 1"))


async def test_open_fills_the_pool_once(settings: Settings) -> None:
    async with open_database(settings, db_pool_size=2) as database:
        assert database.in_use() == 0
        before = await backend_pids(database)
        for _ in range(5):
            await database.run(fetch("SELECT 1"))
        assert await backend_pids(database) == before  # nothing new was opened


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
def test_the_pool_reads_the_url_as_sqlalchemy_does(
    settings: Settings, url: str, expected: dict[str, object]
) -> None:
    """The same URL reading (a socket folder, ssl) as SQLAlchemy's dialect; what only
    SQLAlchemy's adapter takes (its statement cache size) is left out."""
    tuned = settings.model_copy(update={"database_url": url})
    arguments = connect_arguments(tuned)
    assert {name: arguments[name] for name in expected} == expected
    assert "prepared_statement_cache_size" not in arguments
    assert arguments["server_settings"]["application_name"] == "users-api"
    assert arguments["timeout"] == tuned.db_connect_timeout


async def test_a_connection_held_past_its_statements_allowance_is_closed(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A server that stops answering cancels no statement: the watchdog closes a
    connection held longer than DB_STATEMENT_TIMEOUT_MS and a margin, and the request
    gets a 503 instead of waiting for ever. (A statement the server would not cancel
    stands for the hung server.) The next request gets a fresh connection."""
    monkeypatch.setattr("users_api.db.database.HOLD_MARGIN_SECONDS", 1.0)

    async def hung(unit: Unit) -> None:
        await unit.connection.execute("SET LOCAL statement_timeout = 0")
        await unit.connection.execute("SELECT pg_sleep(30)")

    async with open_database(settings, db_pool_size=1, db_statement_timeout_ms=500) as database:
        with caplog.at_level(logging.WARNING, logger="users_api.db.database"):
            async with asyncio.timeout(10):
                with pytest.raises(DatabaseUnavailable):
                    await database.run(hung)
        assert "closing a connection held over 2 s" in caplog.text
        assert database.in_use() == 0
        assert await database.run(fetch("SELECT 1"), transaction=False) == 1


async def test_the_watchdog_replaces_every_connection_after_the_recycle_time(
    settings: Settings, direct_database_url: str
) -> None:
    """DB_POOL_RECYCLE: every connection is replaced at its next use (a new backend).
    Directly: behind a pooler the backends are the pooler's to keep or replace."""
    direct = {"database_url": direct_database_url}
    async with open_database(settings, db_pool_size=2, db_pool_recycle=1, **direct) as database:
        before = await backend_pids(database)
        await asyncio.sleep(2.2)
        after = await backend_pids(database)
        assert before.isdisjoint(after)


async def test_an_unreachable_replica_is_logged_as_that_replica_once(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """A replica that refuses connections was logged as DATABASE_URL ("cannot tell
    whether DATABASE_URL is a pooler", "cannot connect to the database", each second),
    and never as skipped; the primary still answers."""
    caplog.set_level(logging.INFO)
    async with open_database(
        settings, database_replica_urls=(UNREACHABLE,), db_pgbouncer="auto"
    ) as database:
        assert database.replicas is not None
        await database.replicas.check()
        assert await database.run(fetch("SELECT 1")) == 1
    said = caplog.text
    assert "cannot tell whether DATABASE_URL" not in said  # the primary may be a pooler
    assert "to the database" not in said
    assert "cannot tell whether replica 127.0.0.1:1/none is a pooler" in said
    assert "cannot connect to replica 127.0.0.1:1/none" in said
    assert said.count("replica 127.0.0.1:1/none skipped") == 1
