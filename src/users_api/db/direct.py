"""Hot paths: statements SQLAlchemy compiles once, run straight on a pooled asyncpg connection.

The requests every client repeats are a few statements each: a read or a profile PATCH
is one (`users/reads.py`, `users/quick_update.py`), a registration two around the hash
(`users/creation.py`), a login one short transaction (`auth/login.py`). Through the ORM
or Core's DB-API adaptation layer a statement costs about 150 µs of Python on top of
asyncpg (bench/README.md has the profile), and the implicit BEGIN the layer sends adds
a round trip. Here the statement is written with SQLAlchemy, compiled to PostgreSQL's
`$n` form once, and asyncpg runs it as a cached prepared statement. A single statement
needs no explicit transaction: PostgreSQL runs it atomically, in one snapshot, so the
request is still one transaction. Everything else (the full rules of a change, deletes,
refresh tokens) keeps the session.

The connection comes from the engine's pool, so there is one pool, one set of settings,
one place that connects; faults are translated here into the 503s the ORM path gives.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeAlias

import asyncpg
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement
from sqlalchemy.util import greenlet_spawn

from users_api.errors import DatabaseUnavailable, sqlstate_fault

_DIALECT = PGDialect_asyncpg()  # type: ignore[no-untyped-call]  # SQLAlchemy leaves it untyped

DriverConnection: TypeAlias = "asyncpg.Connection[asyncpg.Record]"


@dataclass(frozen=True, slots=True)
class Statement:
    """SQL in asyncpg's `$n` form, and the bind parameter each `$n` stands for."""

    sql: str
    names: tuple[str, ...]

    def args(self, values: Mapping[str, Any]) -> list[Any]:
        return [values[name] for name in self.names]


def compile_statement(statement: ClauseElement) -> Statement:
    """Compile once (at import, or once per query shape) and reuse for every request."""
    compiled = statement.compile(dialect=_DIALECT)
    assert isinstance(compiled, SQLCompiler)  # a statement, so SQL with positions
    return Statement(sql=str(compiled), names=tuple(compiled.positiontup or ()))


@asynccontextmanager
async def driver_connection(engine: AsyncEngine) -> AsyncIterator[DriverConnection]:
    """The asyncpg connection of a pooled connection, returned to the pool on exit.

    Taken straight from the pool (no `Connection` object, no events), which is all a
    statement run by asyncpg needs: the same pool, checkout check and limits as sessions.

    A connection that broke under a statement is invalidated, so the pool replaces it;
    like the session's faults, a lost or slow database becomes a 503 with Retry-After.
    """
    try:
        pooled = await engine.raw_connection()
    except PoolTimeoutError:
        raise  # the pool is busy, not the database: its own 503
    except Exception as exc:  # refused, unreachable, starting up, out of connections
        raise DatabaseUnavailable from exc
    driver: DriverConnection = pooled.driver_connection
    try:
        yield driver
    except _DRIVER_ERRORS as exc:
        fault = sqlstate_fault(getattr(exc, "sqlstate", None))
        if driver.is_closed() or isinstance(exc, _CONNECTION_FAULTS):
            await greenlet_spawn(pooled.invalidate, exc)
            fault = fault or DatabaseUnavailable()
        if fault is None:
            raise  # a bug, not an outage: the 500 handler logs it
        raise fault from exc
    finally:
        await greenlet_spawn(pooled.close)


# TimeoutError: asyncpg's command_timeout, for a server that stopped answering.
_CONNECTION_FAULTS = (asyncpg.InterfaceError, OSError, TimeoutError)
# InternalClientError: what asyncpg may raise on a connection the server just closed.
_DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InternalClientError, *_CONNECTION_FAULTS)
