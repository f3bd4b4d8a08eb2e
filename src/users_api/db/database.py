"""The one way requests reach PostgreSQL: one pool per worker, one unit of work.

Every request runs its statements through `Database.run`: it borrows a connection from
asyncpg's pool, opens a transaction when the work has more than one statement (a single
statement is its own transaction in PostgreSQL, and skipping BEGIN/COMMIT saves two
round trips), and turns every database fault into the same domain error everywhere:

- no connection free within DB_POOL_TIMEOUT, refused, unreachable, a connection that
  broke under a statement: 503 `database-unavailable` (the broken connection is closed,
  so the pool opens a new one);
- a statement or lock timeout: 503 `database-timeout`;
- a deadlock or serialization failure: the work runs once more on a fresh transaction,
  then 409 `concurrent-change`;
- a unique index named in `unique_fields`: 409 naming the field.

Anything else is a bug and stays one (a 500 that leaks nothing). asyncpg's own pool is
used rather than SQLAlchemy's: its checkout and return cost ~11 µs of CPU against ~55
µs (bench/README.md). Connections keep their session between requests: the work here
leaves nothing behind (no SET, no session locks), so the pool's reset query is skipped.

Behind PgBouncer in transaction mode (DB_PGBOUNCER, `pooler.py`) a session is no
longer ours between transactions: asyncpg's statement cache is off (its statements are
unnamed and parsed again with every execution, in the same message batch), every unit
of work is a transaction, even a lone statement, and it sets its statement timeout
itself (`SET LOCAL`, in the same round trip as its BEGIN). When the server already
enforces a statement timeout at least as strict, per role or database (`ALTER ROLE app
SET statement_timeout = '5s'`), lone statements skip that transaction: two round trips
fewer on every hot read.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeAlias, TypeVar

import asyncpg
from sqlalchemy.engine import URL, make_url

from users_api.config import Settings
from users_api.db.replicas import Replica, Replicas
from users_api.db.statements import Statement
from users_api.errors import (
    ConcurrentChange,
    Conflict,
    DatabaseTimeout,
    DatabaseUnavailable,
    DomainError,
)
from users_api.metrics import STATEMENT_FAULTS

log = logging.getLogger(__name__)
T = TypeVar("T")

APPLICATION_NAME = "users-api"
HOLD_MARGIN_SECONDS = 5.0
WATCH_SECONDS = 1
# At shutdown, as long as uvicorn's graceful shutdown lets requests in flight finish.
_CLOSE_WAIT_SECONDS = 10.0

DriverConnection: TypeAlias = "asyncpg.Connection[asyncpg.Record]"
Record: TypeAlias = asyncpg.Record


class Unit:
    """The statements of one unit of work, on its one connection."""

    __slots__ = ("_committed", "connection")

    def __init__(self, connection: DriverConnection) -> None:
        self.connection = connection
        self._committed: list[Callable[[], None]] = []

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Call `callback` once this unit's work is committed (never when it rolls back,
        nor for an attempt retried after a concurrent change): e.g. counting what it
        wrote."""
        self._committed.append(callback)

    def committed(self) -> None:
        """Called by `Database` after the commit: run the `on_commit` callbacks."""
        callbacks, self._committed = self._committed, []
        for callback in callbacks:
            callback()

    async def one(self, statement: Statement, **values: Any) -> Record | None:
        return await self.connection.fetchrow(statement.sql, *statement.args(values))

    async def all(self, statement: Statement, **values: Any) -> list[Record]:
        records: list[Record] = await self.connection.fetch(statement.sql, *statement.args(values))
        return records

    async def value(self, statement: Statement, **values: Any) -> Any:
        return await self.connection.fetchval(statement.sql, *statement.args(values))

    async def execute(self, statement: Statement, **values: Any) -> None:
        await self.connection.execute(statement.sql, *statement.args(values))


Work: TypeAlias = Callable[[Unit], Awaitable[T]]


class Database:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        timeout: float,
        pre_ping: bool,
        unique_fields: Mapping[str, str],
        hold_limit: float | None = None,
        recycle: float | None = None,
        begin: str | None = None,
        name: str = "the database",
    ) -> None:
        """`begin`: behind a pooler, the SQL that opens every unit of work (`_begin`);
        `name`: what its logs call it (a replica names itself, not DATABASE_URL)."""
        self._pool = pool
        self._name = name
        self._begin = begin
        # Behind a pooler, whether a lone statement may run without a transaction of its
        # own: the server's own statement_timeout (set per role or database) is at least
        # as strict as DB_STATEMENT_TIMEOUT_MS. Two round trips saved (`_timeout_is_kept`).
        self._lone_bare = False
        self._size = pool.get_max_size()
        # Connections taken through `_take` and not yet given back, each with the
        # watchdog's tick when it was taken: a dict's length is also the O(1) count.
        self._lent: dict[DriverConnection, int] = {}
        self._timeout = timeout
        self._pre_ping = pre_ping
        self._unique_fields = unique_fields
        self._hold_limit = hold_limit
        self._recycle = recycle
        self._tick = 0
        self._watchdog: asyncio.Task[None] | None = None
        self.replicas: Replicas | None = None

    @classmethod
    async def open(
        cls, settings: Settings, *, unique_fields: Mapping[str, str], name: str | None = None
    ) -> Database:
        """Open DB_POOL_SIZE connections now, so the first burst does not pay for them.

        Best effort: a database that is not up yet is no reason not to start (requests
        then get 503s until it is); the pool opens connections on demand as before.
        """
        from users_api.db.pooler import behind_pooler

        pooled = await behind_pooler(settings, name=name or "DATABASE_URL")
        pool: asyncpg.Pool = await asyncpg.create_pool(
            min_size=0,  # connected below, where a failure is only logged
            max_size=settings.db_pool_size + settings.db_max_overflow,
            max_inactive_connection_lifetime=_idle_lifetime(settings),
            reset=_keep_session,
            init=_echo_statements if settings.db_echo else None,
            **connect_arguments(settings, pooled=pooled),
        )
        database = cls(
            pool,
            timeout=settings.db_pool_timeout,
            pre_ping=settings.db_pool_pre_ping,
            unique_fields=unique_fields,
            hold_limit=hold_limit(settings),
            recycle=settings.db_pool_recycle if settings.db_pool_recycle > 0 else None,
            begin=_begin(settings) if pooled else None,
            **({"name": name} if name else {}),
        )
        await database._fill(settings.db_pool_size)
        if pooled:
            database._lone_bare = await database._timeout_is_kept(settings.db_statement_timeout_ms)
        database._watchdog = asyncio.create_task(database._watch(), name="database watchdog")
        if settings.database_replica_urls:
            database.replicas = await _open_replicas(settings)
        return database

    @property
    def replicated(self) -> bool:
        """Whether reads may go to replicas (DATABASE_REPLICA_URLS)."""
        return self.replicas is not None

    async def read(self, work: Work[T], *, transaction: bool = False) -> T:
        """Run `work`, a read that may be a moment old, on a replica if one may answer
        (db/replicas.py), else on the primary as `run` would. Never for what decides
        access: the caller's token, roles and revocation are read with `run`."""
        if self.replicas is not None:
            done, result = await self.replicas.read(work, transaction=transaction)
            if done:
                return result  # type: ignore[return-value]  # a T when done
        return await self.run(work, transaction=transaction)

    async def run(self, work: Work[T], *, transaction: bool = True) -> T:
        """Run `work` on one connection: in a transaction, or as lone statements.

        Committed before this returns, so before any response is sent; rolled back when
        `work` raises. A transaction the database aborted in favour of a concurrent one
        is run once more from the start: nothing of it was applied.
        """
        for attempt in (1, 2):
            connection = await self._acquire()
            try:
                if self._begin is not None and (transaction or not self._lone_bare):
                    return await self._run_pinned(work, connection, self._begin)
                unit = Unit(connection)
                if not transaction:
                    result = await work(unit)
                else:
                    async with connection.transaction():
                        result = await work(unit)
                unit.committed()
                return result
            except _DRIVER_ERRORS as exc:
                fault = self._fault(exc, connection)
                _noted(fault, exc)
                if isinstance(fault, ConcurrentChange) and attempt == 1:
                    log.info("retrying after a concurrent change: %s", type(exc).__name__)
                    continue
                if fault is None:
                    raise  # a bug, not an outage: the 500 handler logs it
                raise fault from exc
            finally:
                await self._give_back(connection)
        raise AssertionError("unreachable: the second attempt returns or raises")

    async def _timeout_is_kept(self, wanted_ms: int) -> bool:
        """Whether the server's own `statement_timeout` (the role's or the database's:
        we never set one for the session behind a pooler) is on and at most `wanted_ms`
        (or both are off). False when it cannot be read."""
        try:
            connection = await self._pool.acquire(timeout=self._timeout)
        except Exception:  # unreachable: per transaction, as if it were not kept
            return False
        try:
            server_ms = await connection.fetchval(
                "SELECT setting::bigint FROM pg_settings WHERE name = 'statement_timeout'"
            )
        except _DRIVER_ERRORS:
            return False
        finally:
            await self._pool.release(connection)
        kept = server_ms == 0 if wanted_ms == 0 else 0 < server_ms <= wanted_ms
        if kept:
            log.info("the server keeps the statement timeout: lone statements run bare")
        return bool(kept)

    @staticmethod
    async def _run_pinned(work: Work[T], connection: DriverConnection, begin: str) -> T:
        """Behind a pooler: one transaction, opened with its settings in one round trip.

        PgBouncer gives the server connection to another client at the end of every
        transaction, so nothing may be left to the next one: a transaction that did not
        commit is rolled back here, and a connection still inside one after that (the
        rollback itself failed) is closed rather than pooled.
        """
        await connection.execute(begin)
        unit = Unit(connection)
        try:
            result = await work(unit)
        except BaseException:
            with contextlib.suppress(*_DRIVER_ERRORS):
                if not _closed(connection) and connection.is_in_transaction():
                    await connection.execute("ROLLBACK")
            with contextlib.suppress(asyncpg.InterfaceError):  # see _closed
                if not _closed(connection) and connection.is_in_transaction():
                    connection.terminate()
            raise
        await connection.execute("COMMIT")
        unit.committed()
        return result

    def _fault(self, exc: BaseException, connection: DriverConnection) -> DomainError | None:
        """The domain error for a driver error, or None for a bug."""
        if isinstance(exc, asyncpg.UniqueViolationError):
            field = self._unique_fields.get(exc.constraint_name or "")
            return Conflict.taken(field) if field else None
        sqlstate = getattr(exc, "sqlstate", None)
        if sqlstate in _CONCURRENCY_FAILURES:
            return ConcurrentChange()
        if sqlstate in _TIMEOUT_SQLSTATES:
            return DatabaseTimeout()
        broken = isinstance(exc, _CONNECTION_FAULTS) or _closed(connection)
        if broken:
            with contextlib.suppress(asyncpg.InterfaceError):  # see _closed
                connection.terminate()
        if broken or sqlstate in _UNAVAILABLE_SQLSTATES or (sqlstate or "").startswith("08"):
            return DatabaseUnavailable()  # class 08: connection exceptions
        return None

    async def _acquire(self) -> DriverConnection:
        connection = await self._take()
        if self._pre_ping and not await _answers(connection):
            with contextlib.suppress(asyncpg.InterfaceError):  # see _closed
                connection.terminate()  # half-open: the pool opens a new one in its place
            await self._give_back(connection)
            connection = await self._take()
        return connection

    async def _take(self) -> DriverConnection:
        # A timeout costs two asyncio.timeout scopes (acquire and release): 5 µs on top of
        # asyncpg's 11 µs for a checkout and return, measured. While fewer connections are
        # lent than the pool holds, one is free or can be opened, and there is nothing to
        # wait for (a reconnect is bounded by DB_CONNECT_TIMEOUT). Counted here: asking
        # the pool (`get_idle_size`) walks every connection, 6 µs for 20.
        timeout = None if len(self._lent) < self._size else self._timeout
        try:
            connection: DriverConnection = await self._pool.acquire(timeout=timeout)
        except TimeoutError as exc:  # all in use, or a connect that did not finish
            log.warning("no connection to %s free within %.1f s", self._name, self._timeout)
            STATEMENT_FAULTS.labels(DatabaseUnavailable.code).inc()
            raise DatabaseUnavailable from exc
        except Exception as exc:  # refused, unreachable, starting up, out of slots
            log.warning("cannot connect to %s: %s", self._name, type(exc).__name__)
            STATEMENT_FAULTS.labels(DatabaseUnavailable.code).inc()
            raise DatabaseUnavailable from exc
        self._lent[connection] = self._tick
        return connection

    async def _give_back(self, connection: DriverConnection) -> None:
        del self._lent[connection]
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            # Given up on (a timeout such as /readyz's): its statement may still be under
            # way on a server that does not answer, and the reset a release does would
            # wait for that server. Closed instead; the pool opens another in its place.
            with contextlib.suppress(asyncpg.InterfaceError):  # see _closed
                connection.terminate()
        await self._pool.release(connection)

    async def _watch(self) -> None:
        """Once a second, for the whole pool, what asyncpg would do with two timers per
        request (a `command_timeout` per statement, an idle timer per returned
        connection): together ~50,000 instructions of a ~500,000-instruction read,
        counted with callgrind (bench/README.md).

        - A connection held past `hold_limit` seconds (DB_STATEMENT_TIMEOUT_MS plus a
          margin) is closed: the server stopped answering altogether (a frozen host
          cancels no statement), and its request gets a 503 instead of waiting forever.
        - Every DB_POOL_RECYCLE seconds every connection is replaced at its next use.
        """
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            self._tick += 1
            seconds = self._tick * WATCH_SECONDS
            if self._recycle is not None and seconds % self._recycle < WATCH_SECONDS:
                await self._pool.expire_connections()
            if self._hold_limit is None:
                continue
            for connection, taken in list(self._lent.items()):
                if (self._tick - taken) * WATCH_SECONDS > self._hold_limit:
                    log.warning("closing a connection held over %.0f s", self._hold_limit)
                    with contextlib.suppress(asyncpg.InterfaceError):  # see _closed
                        connection.terminate()

    async def _fill(self, size: int) -> None:
        taken = await asyncio.gather(
            *(self._pool.acquire() for _ in range(size)), return_exceptions=True
        )
        failures = [outcome for outcome in taken if isinstance(outcome, BaseException)]
        if failures:  # unreachable, refused, starting up
            log.warning(
                "opened %d of %d pooled connections to %s: %s",
                size - len(failures),
                size,
                self._name,
                failures[0],
            )
        for connection in taken:
            if not isinstance(connection, BaseException):
                await self._pool.release(connection)

    def in_use(self) -> int:
        """Connections lent and not yet given back."""
        return len(self._lent)

    def pool_state(self) -> tuple[int, int, int]:
        """Connections in use, idle, and callers waiting for one (for `/metrics`).

        asyncpg counts no waiters: they are the getters of its queue of free slots.
        """
        queue = getattr(self._pool, "_queue", None)
        waiting = len(getattr(queue, "_getters", ()) or ())
        return len(self._lent), self._pool.get_idle_size(), waiting

    async def expire(self) -> None:
        """Replace every connection before its next use (after a failover, say)."""
        await self._pool.expire_connections()

    async def close(self) -> None:
        """Wait a while for connections in use to come back, then close; end the rest."""
        if self.replicas is not None:
            await self.replicas.close()
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        try:
            async with asyncio.timeout(_CLOSE_WAIT_SECONDS):
                await self._pool.close()
        except TimeoutError:
            self._pool.terminate()


def connect_arguments(
    settings: Settings, *, pooled: bool = False, url: str | None = None
) -> dict[str, Any]:
    """`asyncpg.connect` arguments for DATABASE_URL (or `url`) and the DB_* settings.

    `statement_timeout` is set per connection so one runaway query cannot hold a pooled
    connection forever (the watchdog, `Database._watch`, bounds the wait on the client
    side too). `application_name` makes our backends easy to find in
    `pg_stat_activity`. The URL is read as SQLAlchemy's dialect reads it (a socket folder
    in `host`, `ssl=`...), keeping only what asyncpg takes.

    `pooled` (behind PgBouncer in transaction mode): no statement cache, so statements
    are unnamed and parsed again with each execution (unless DB_PGBOUNCER=prepared: a
    PgBouncer >= 1.21 keeps them), and no `statement_timeout` at
    start-up, which PgBouncer refuses and which would not follow the transactions to
    the server connections they get (`_begin` sets it per transaction instead).
    """
    from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg

    dialect = PGDialect_asyncpg()  # type: ignore[no-untyped-call]  # untyped in SQLAlchemy
    parsed = make_url(url or settings.require_database_url())
    _, from_url = dialect.create_connect_args(parsed)  # type: ignore[no-untyped-call]  # as above
    server_settings = {"application_name": APPLICATION_NAME}
    if not pooled:
        server_settings["statement_timeout"] = str(settings.db_statement_timeout_ms)
    arguments = {
        **from_url,
        "server_settings": server_settings,
        "timeout": settings.db_connect_timeout,
    }
    if pooled and settings.db_pgbouncer != "prepared":
        arguments["statement_cache_size"] = 0
    return {name: value for name, value in arguments.items() if name in _CONNECT_PARAMETERS}


async def _open_replicas(settings: Settings) -> Replicas:
    """A pool per replica, as the primary's; checked once before the first request."""
    opened = []
    for url in settings.database_replica_urls:
        own = settings.model_copy(update={"database_url": url, "database_replica_urls": ()})
        where = _where(make_url(url))
        db = await Database.open(own, unique_fields={}, name=f"replica {where}")
        opened.append(Replica(where, db))
    replicas = Replicas(opened, max_lag=settings.replica_max_lag_seconds)
    await replicas.check()
    replicas.start()
    return replicas


def _where(url: URL) -> str:
    """host:port/database, for logs: no credentials."""
    host = url.host or str(url.query.get("host", ""))
    return f"{host}:{url.port or 5432}/{url.database}"


def _begin(settings: Settings) -> str:
    """What opens a unit of work behind a pooler: BEGIN and the statement timeout, sent
    as one simple query (one round trip)."""
    return f"BEGIN; SET LOCAL statement_timeout = {settings.db_statement_timeout_ms}"


def _idle_lifetime(settings: Settings) -> float:
    """Seconds an idle connection lives, 0 for ever. asyncpg closes idle connections by
    a timer it arms at every release; with no overflow the pool is fixed, nothing idle
    needs closing, and the watchdog recycles (`Database._watch`). Overflow connections,
    opened for a burst, are closed again after DB_POOL_RECYCLE seconds idle."""
    if settings.db_max_overflow == 0 or settings.db_pool_recycle <= 0:
        return 0
    return settings.db_pool_recycle


def hold_limit(settings: Settings) -> float | None:
    """How long a unit of work may hold its connection before the watchdog closes it: a
    statement's whole allowance and a margin; None when statements may run forever."""
    if settings.db_statement_timeout_ms == 0:
        return None  # statements may run forever by choice: so may their wait
    return settings.db_statement_timeout_ms / 1000 + HOLD_MARGIN_SECONDS


def _noted(fault: DomainError | None, exc: BaseException) -> None:
    """Each database fault, logged and counted (`users_api_db_statement_faults_total`);
    a bug is logged by the 500 handler, and counted here as `bug`."""
    code = "bug" if fault is None else fault.code
    STATEMENT_FAULTS.labels(code).inc()
    if fault is not None and not isinstance(fault, Conflict):
        log.warning("database fault: %s: %s", code, type(exc).__name__)


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


async def _echo_statements(connection: DriverConnection) -> None:
    """DB_ECHO: every statement of the connection logged (`users_api.sql`, info) with its
    time; its SQL only, never the values bound to it, which may be secrets."""
    connection.add_query_logger(_log_statement)


def _log_statement(record: asyncpg.connection.LoggedQuery) -> None:
    failed = f" failed: {type(record.exception).__name__}" if record.exception else ""
    _sql_log.info("%s (%.2f ms)%s", record.query, record.elapsed * 1000, failed)


_sql_log = logging.getLogger("users_api.sql")


async def _keep_session(_connection: DriverConnection) -> None:
    """Release without asyncpg's reset query: the session carries nothing to undo."""


_CONNECT_PARAMETERS = frozenset(inspect.signature(asyncpg.connect).parameters)

# TimeoutError: a connect that did not finish within DB_CONNECT_TIMEOUT.
_CONNECTION_FAULTS = (asyncpg.InterfaceError, OSError, TimeoutError)
# InternalClientError: what asyncpg may raise on a connection the server just closed.
_DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InternalClientError, *_CONNECTION_FAULTS)

# SQLSTATEs that say "not now" rather than "never": the same request may well succeed a
# moment later, so they are a 503 with Retry-After, not a 500.
_TIMEOUT_SQLSTATES = frozenset(
    {
        "57014",  # query_canceled: statement_timeout (DB_STATEMENT_TIMEOUT_MS) or a cancel
        "55P03",  # lock_not_available: lock_timeout, or NOWAIT
    }
)
_UNAVAILABLE_SQLSTATES = frozenset(
    {
        "57P01",  # admin_shutdown: the server is stopping (pg_ctl stop -m fast)
        "57P02",  # crash_shutdown: another backend crashed
        "57P03",  # cannot_connect_now: the server is starting up or shutting down
        "53300",  # too_many_connections
    }
)
# A transaction the database aborted in favour of a concurrent one: nothing of it was
# applied, and the same work again may well succeed.
_CONCURRENCY_FAILURES = frozenset({"40001", "40P01"})  # serialization_failure, deadlock
