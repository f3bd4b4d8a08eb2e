"""The one place that creates an engine, and what its connections and asyncpg's pool share."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.util import greenlet_spawn

from users_api.config import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

APPLICATION_NAME = "users-api"
COMMAND_TIMEOUT_MARGIN_SECONDS = 5.0


def create_engine(settings: Settings) -> AsyncEngine:
    """The engine of the ORM sessions, its pool sized by DB_SESSION_POOL_SIZE."""
    engine = create_async_engine(
        settings.sqlalchemy_url,
        pool_size=settings.db_session_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        pool_recycle=settings.db_pool_recycle,
        pool_pre_ping=settings.db_pool_pre_ping,
        echo=settings.db_echo,
        connect_args=connect_arguments(settings),
    )
    event.listen(engine.sync_engine, "checkout", _refuse_closed_connection)
    return engine


def connect_arguments(settings: Settings) -> dict[str, Any]:
    """What every connection is opened with, by either pool (see db/direct.py).

    `statement_timeout` is set per connection so one runaway query cannot hold a pooled
    connection forever; asyncpg's `command_timeout`, a little longer, bounds the wait on
    the client side too, for a server that stopped answering altogether (a frozen host
    cancels nothing). `application_name` makes our backends easy to find in
    `pg_stat_activity`.
    """
    return {
        "server_settings": {
            "application_name": APPLICATION_NAME,
            "statement_timeout": str(settings.db_statement_timeout_ms),
        },
        "timeout": settings.db_connect_timeout,
        "command_timeout": _command_timeout(settings),
    }


def _refuse_closed_connection(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Drop a pooled connection the server has closed, before a request gets it.

    A restarted or stopping PostgreSQL closes its sockets, and asyncpg notices at once:
    checking `is_closed()` costs nothing, where a pre-ping costs round trips on every
    checkout. The pool answers DisconnectionError by opening a fresh connection. What
    this cannot see (a peer that vanished without closing) fails its statement, and the
    connection is invalidated then.
    """
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("the server closed this connection")


def _command_timeout(settings: Settings) -> float | None:
    if settings.db_statement_timeout_ms == 0:
        return None  # statements may run forever by choice: so may their wait
    return settings.db_statement_timeout_ms / 1000 + COMMAND_TIMEOUT_MARGIN_SECONDS


async def open_pool(engine: AsyncEngine, size: int) -> None:
    """Open the pool's connections now, so that the first burst of requests does not pay
    for connection set-up and the database sees one steady set of backends from the start.
    """
    await fill_pool(size, engine.raw_connection, lambda pooled: greenlet_spawn(pooled.close))


async def fill_pool(
    size: int, take: Callable[[], Awaitable[T]], give_back: Callable[[T], Awaitable[object]]
) -> None:
    """Take `size` connections at once and give them back, still connected; either pool.

    Best effort: a database that is not up yet is no reason not to start (requests then
    get 503s until it is); the pool opens connections on demand as before.
    """
    taken = await asyncio.gather(*(take() for _ in range(size)), return_exceptions=True)
    failures = [outcome for outcome in taken if isinstance(outcome, BaseException)]
    if failures:  # unreachable, refused, starting up
        log.warning(
            "opened %d of %d pooled connections: %s", size - len(failures), size, failures[0]
        )
    for connection in taken:
        if not isinstance(connection, BaseException):
            await give_back(connection)
