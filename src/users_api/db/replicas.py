"""Read replicas (DATABASE_REPLICA_URLS): reads that may be a moment old, and
read-your-writes without sticky sessions.

- `Database.read(work)` runs `work` on a usable replica, else on the primary. Only reads
  that may be a moment old go there (the users list now); whatever decides access (the
  caller's token, roles, revocation) is read with `Database.run`, on the primary.
- A replica is usable while it answers and lags at most REPLICA_MAX_LAG_SECONDS: a
  monitor asks each one every second (`pg_last_wal_replay_lsn()` and the age of its last
  replayed transaction). One that is down, lagging, or fails a read is skipped until a
  later check finds it well again; the read that failed runs again on the primary, so a
  replica failure never fails a request.
- Every answer to a write carries `X-Consistency-Token`: the primary's WAL position
  after the commit (`ConsistencyTokens`). A read that sends it back is answered from a
  replica only if that replica has replayed at least that far (the monitor's last
  reading, else asked in the read's own transaction), else from the primary: a client
  never misses its own change.

The token travels from the request to `Database.read` in a context variable, so the
services need no new parameter: the one an ASGI layer (`ConsistencyTokens`) sets.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from users_api.errors import DatabaseUnavailable, DomainError

if TYPE_CHECKING:
    from users_api.db.database import Database, Unit

log = logging.getLogger(__name__)
T = TypeVar("T")

HEADER = "X-Consistency-Token"
MONITOR_SECONDS = 1.0
# How long a replica that failed a read is left alone before the monitor may bring it
# back (the monitor's own checks decide after that).
BENCH_SECONDS = 5.0
# The WAL position a read must see; None: any usable replica will do.
required_position: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "required_position", default=None
)

_LSN = re.compile(r"([0-9A-F]{1,8})/([0-9A-F]{1,8})", re.IGNORECASE)
# How far behind: nothing, when it has replayed all it received and is still receiving
# (a WAL receiver runs: the view shows its row to every role, details to privileged
# ones); else the age of the last transaction it replayed. A replica cut off from its
# primary has replayed all it received too: it counted as current for ever, and served
# reads of any age.
_STATE = """
SELECT pg_last_wal_replay_lsn()::text,
       CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn()
                 AND EXISTS (SELECT FROM pg_stat_wal_receiver) THEN 0
            ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END
"""
_REPLAYED = "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn"
_WRITTEN = "SELECT pg_current_wal_insert_lsn()::text"


def parse_position(token: str | None) -> int | None:
    """An LSN (`16/B374D848`) as a number; None for anything else (then the read goes
    where it would without one: a token is a hint, never a reason to refuse)."""
    if token is None:
        return None
    match = _LSN.fullmatch(token.strip())
    if match is None:
        return None
    return (int(match[1], 16) << 32) | int(match[2], 16)


def format_position(position: int) -> str:
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"


@dataclass(slots=True, eq=False)
class Replica:
    """One replica, as the monitor last saw it."""

    name: str  # for logs: host and port, no credentials
    db: Database
    replayed: int = 0
    usable: bool = False
    benched_until: float = 0.0
    checked: bool = False  # once: a replica down from the start is said to be skipped


@dataclass(slots=True)
class Replicas:
    """The replicas of one worker, each with its own small pool, and their monitor."""

    replicas: Sequence[Replica]
    max_lag: float
    _next: int = 0
    _monitor: asyncio.Task[None] | None = field(default=None)

    def start(self) -> None:
        self._monitor = asyncio.create_task(self._watch(), name="replica monitor")

    async def close(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        for replica in self.replicas:
            await replica.db.close()

    async def check(self) -> None:
        """Ask every replica how far it has replayed and how far behind it is."""
        await asyncio.gather(*(self._check(replica) for replica in self.replicas))

    async def _check(self, replica: Replica) -> None:
        async def state(unit: Unit) -> tuple[str | None, float | None]:
            record = await unit.connection.fetchrow(_STATE)
            assert record is not None
            return record[0], record[1]

        try:
            replayed, lag = await replica.db.run(state, transaction=False)
        except DomainError as exc:  # unavailable, timed out
            self._set(replica, usable=False, why=exc.code)
            return
        position = parse_position(replayed)
        if position is None:  # not in recovery: a promoted replica is no replica
            self._set(replica, usable=False, why="not a standby")
            return
        replica.replayed = position
        if time.monotonic() < replica.benched_until:
            return
        well = lag is not None and float(lag) <= self.max_lag
        self._set(replica, usable=well, why=None if well else f"lagging {float(lag or 0):.1f} s")

    def _set(self, replica: Replica, *, usable: bool, why: str | None) -> None:
        if usable != replica.usable or not replica.checked:
            if usable:
                log.info("replica %s in use", replica.name)
            else:
                log.warning("replica %s skipped: %s", replica.name, why)
        replica.usable = usable
        replica.checked = True

    async def _watch(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # a check never stops the monitor
                await self.check()
            await asyncio.sleep(MONITOR_SECONDS)

    def _candidates(self) -> list[Replica]:
        """The usable replicas, a different one first each time (round robin)."""
        usable = [replica for replica in self.replicas if replica.usable]
        if not usable:
            return []
        self._next = (self._next + 1) % len(usable)
        return usable[self._next :] + usable[: self._next]

    async def read(
        self, work: Callable[[Unit], Awaitable[T]], *, transaction: bool = False
    ) -> tuple[bool, T | None]:
        """(True, result) from a replica that may answer, or (False, None): ask the
        primary. A replica that fails is benched, and the next one is tried.
        `transaction`: `work` reads one snapshot (a count and its page)."""
        position = required_position.get()
        for replica in self._candidates():
            # The monitor's reading may be behind the replica: then ask it, in the
            # read's own transaction (one statement more).
            check = position is not None and replica.replayed < position
            attempt = _attempt(work, format_position(position) if check and position else None)
            try:
                done, result = await replica.db.run(attempt, transaction=check or transaction)
            except DatabaseUnavailable as exc:  # down, timed out: benched
                replica.benched_until = time.monotonic() + BENCH_SECONDS
                self._set(replica, usable=False, why=exc.code)
                continue
            except DomainError:  # the work's own refusal, maybe on data not replayed yet:
                return False, None  # the primary answers (and refuses, if it still does)
            if done:
                return True, result
        return False, None


def _attempt(
    work: Callable[[Unit], Awaitable[T]], position: str | None
) -> Callable[[Unit], Awaitable[tuple[bool, T | None]]]:
    """`work`, after making sure the replica has replayed up to `position` (if any)."""

    async def attempt(unit: Unit) -> tuple[bool, T | None]:
        if position is not None and not await unit.connection.fetchval(_REPLAYED, position):
            return False, None
        return True, await work(unit)

    return attempt


class ConsistencyTokens:
    """The ASGI layer of read-your-writes (installed whether or not replicas are).

    A request's `X-Consistency-Token` becomes the position its reads must see; every
    answer to a write (POST, PUT, PATCH, DELETE) that succeeded gets the primary's WAL
    position, read after the commit (the handler has committed before it answers), in
    the same header.
    """

    _WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})

    def __init__(self, app: ASGIApp, *, position: Callable[[], Awaitable[str | None]]) -> None:
        self.app = app
        self.position = position

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent: str | None = None
        for name, value in scope["headers"]:
            if name == b"x-consistency-token":
                sent = value.decode("latin-1")
        required_position.set(parse_position(sent))
        if scope["method"] not in self._WRITES:
            await self.app(scope, receive, send)
            return

        async def send_with_token(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] < 400:
                token = await self.position()
                if token is not None:
                    headers = list(message.get("headers", []))
                    headers.append((b"x-consistency-token", token.encode()))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_token)


async def written_position(db: Database) -> str | None:
    """The primary's WAL position now: past every commit made before this call. None
    when the primary cannot say (then the client gets no token, and reads may be a
    moment old, as without one)."""

    async def read(unit: Unit) -> str:
        return str(await unit.connection.fetchval(_WRITTEN))

    try:
        return await db.run(read, transaction=False)
    except DomainError:
        return None
