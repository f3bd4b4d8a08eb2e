"""Hot paths: statements SQLAlchemy compiles once, run straight on asyncpg's own pool.

The requests every client repeats are a few statements each: a read or a profile PATCH
is one (`users/reads.py`, `users/quick_update.py`), a registration two around the hash
(`users/creation.py`), a login one short transaction (`auth/login.py`). Through the ORM
or Core's DB-API adaptation layer a statement costs about 150 µs of Python on top of
asyncpg (bench/README.md has the profile), and the implicit BEGIN the layer sends adds
a round trip. Here the statement is written with SQLAlchemy, compiled to PostgreSQL's
`$n` form once, and asyncpg runs it as a cached prepared statement. A single statement
needs no explicit transaction: PostgreSQL runs it atomically, in one snapshot, so the
request is still one transaction. Everything else (the full rules of a change, deletes,
refresh tokens) keeps the session and the engine's pool.

The connections come from asyncpg's pool, not the engine's: SQLAlchemy's pool runs its
checkout and its return each in a new greenlet, which cost ~45 µs of CPU per request
here, twice a primary-key read's own (bench/README.md). asyncpg's pool is opened with
the engine's URL and connection arguments, holds DB_POOL_SIZE connections (more under
DB_MAX_OVERFLOW), and keeps each connection's session as it is between requests: the
statements here leave nothing behind (no SET, no session locks, transactions in `async
with`), so the reset query asyncpg would send on every release is skipped. Faults are
translated here into the 503s the ORM path gives.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeAlias

import asyncpg
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement

from users_api.config import Settings
from users_api.db.engine import connect_arguments, fill_pool
from users_api.errors import DatabaseUnavailable, sqlstate_fault

log = logging.getLogger(__name__)

# At shutdown, as long as uvicorn's graceful shutdown lets requests in flight finish.
_CLOSE_WAIT_SECONDS = 10.0

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


class DirectPool:
    """asyncpg's pool of connections for the statements of this module's kind."""

    def __init__(self, pool: asyncpg.Pool, *, timeout: float, pre_ping: bool) -> None:
        self._pool = pool
        self._timeout = timeout
        self._pre_ping = pre_ping

    @classmethod
    async def open(cls, engine: AsyncEngine, settings: Settings) -> DirectPool:
        """Open DB_POOL_SIZE connections now, so the first burst does not pay for them
        (best effort, as `fill_pool` says)."""
        pool: asyncpg.Pool = await asyncpg.create_pool(
            min_size=0,  # connected below, where a failure is only logged
            max_size=settings.db_pool_size + settings.db_max_overflow,
            max_inactive_connection_lifetime=max(settings.db_pool_recycle, 0),
            reset=_keep_session,
            **driver_arguments(engine, settings),
        )
        direct = cls(pool, timeout=settings.db_pool_timeout, pre_ping=settings.db_pool_pre_ping)
        await fill_pool(settings.db_pool_size, pool.acquire, pool.release)
        return direct

    async def expire(self) -> None:
        """Replace every connection before its next use (after a failover, say)."""
        await self._pool.expire_connections()

    def checked_out(self) -> int:
        """Connections lent and not yet given back (as SQLAlchemy's pool says it)."""
        lent: int = self._pool.get_size() - self._pool.get_idle_size()
        return lent

    async def close(self) -> None:
        """Wait a while for connections in use to come back, then close; end the rest."""
        try:
            async with asyncio.timeout(_CLOSE_WAIT_SECONDS):
                await self._pool.close()
        except TimeoutError:
            self._pool.terminate()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[DriverConnection]:
        """A connection for a statement or a short transaction, returned on exit.

        A connection that broke under a statement is closed, so the pool opens a new
        one; a lost or slow database becomes a 503 with Retry-After, and so does a pool
        with no connection free within DB_POOL_TIMEOUT.
        """
        connection = await self._acquire()
        try:
            yield connection
        except _DRIVER_ERRORS as exc:
            fault = sqlstate_fault(getattr(exc, "sqlstate", None))
            if isinstance(exc, _CONNECTION_FAULTS) or _closed(connection):
                with contextlib.suppress(asyncpg.InterfaceError):  # see _closed
                    connection.terminate()
                fault = fault or DatabaseUnavailable()
            if fault is None:
                raise  # a bug, not an outage: the 500 handler logs it
            raise fault from exc
        finally:
            await self._pool.release(connection)

    async def _acquire(self) -> DriverConnection:
        connection = await self._take()
        if self._pre_ping and not await _answers(connection):
            with contextlib.suppress(asyncpg.InterfaceError):  # see _closed
                connection.terminate()  # half-open: the pool opens a new one in its place
            await self._pool.release(connection)
            connection = await self._take()
        return connection

    async def _take(self) -> DriverConnection:
        # A timeout costs two asyncio.timeout scopes (acquire and release): 5 µs on top of
        # asyncpg's 11 µs for a checkout and return, measured. When a connection is free
        # there is nothing to wait for. (Should the one taken need reconnecting,
        # DB_CONNECT_TIMEOUT bounds that.)
        timeout = None if self._pool.get_idle_size() else self._timeout
        try:
            connection: DriverConnection = await self._pool.acquire(timeout=timeout)
        except TimeoutError as exc:  # all in use, or a connect that did not finish
            log.warning("no database connection free within %.1f s", self._timeout)
            raise DatabaseUnavailable from exc
        except Exception as exc:  # refused, unreachable, starting up, out of slots
            raise DatabaseUnavailable from exc
        return connection


def _closed(connection: DriverConnection) -> bool:
    """Whether the connection is gone. asyncpg gives a connection the server closed back
    to the pool at once, and its proxy then refuses every call: gone too."""
    try:
        closed: bool = connection.is_closed()
    except asyncpg.InterfaceError:
        return True
    return closed


async def _answers(connection: DriverConnection) -> bool:
    """DB_POOL_PRE_PING: a round trip before use, for peers that vanish without closing."""
    try:
        await connection.execute("SELECT 1")
    except _DRIVER_ERRORS:
        return False
    return True


async def _keep_session(_connection: DriverConnection) -> None:
    """Release without asyncpg's reset query: the session carries nothing to undo."""


def driver_arguments(engine: AsyncEngine, settings: Settings) -> dict[str, Any]:
    """`asyncpg.connect` arguments for the engine's URL, with the engine's connect_args.

    The dialect reads the URL as it does for the engine (a socket folder in `host`,
    `ssl=`...); what only SQLAlchemy's adapter takes is left out.
    """
    _, from_url = engine.dialect.create_connect_args(engine.url)
    arguments = {**from_url, **connect_arguments(settings)}
    return {name: value for name, value in arguments.items() if name in _CONNECT_PARAMETERS}


_CONNECT_PARAMETERS = frozenset(inspect.signature(asyncpg.connect).parameters)

# TimeoutError: asyncpg's command_timeout, for a server that stopped answering.
_CONNECTION_FAULTS = (asyncpg.InterfaceError, OSError, TimeoutError)
# InternalClientError: what asyncpg may raise on a connection the server just closed.
_DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InternalClientError, *_CONNECTION_FAULTS)
