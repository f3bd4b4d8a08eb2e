"""The background sender: delivers due outbox rows, one channel handler per `kind`.

Any number of senders (workers, replicas) may run against one outbox: each claims rows
with `FOR UPDATE SKIP LOCKED` and a lease (`queries.CLAIM`), so a row is handed to one
sender at a time. Given a cluster `Lease`, only the sender of the worker holding it
polls (`cluster/jobs.py`), so N workers do not poll N times; correctness never rests on
that lease, only on the rows' own. A delivery that fails is tried again after an
exponential back-off; one that succeeds is recorded at once. A sender that dies between
delivering and recording leaves the row to be delivered again when its lease runs out:
at worst twice, never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from users_api.cluster.jobs import Lease
from users_api.db.database import Database, Record, Unit
from users_api.errors import DatabaseUnavailable
from users_api.outbox import queries as q

log = logging.getLogger(__name__)

# Delivers one payload (the int: which attempt this is, from 1), or raises: the message
# stays in the outbox and is tried again.
Handler = Callable[[Mapping[str, Any], int], Awaitable[None]]


class RetryAfter(Exception):  # an instruction to the sender, raised as an error
    """Raised by a handler that chooses its own wait before the next attempt (webhooks'
    schedule), instead of the sender's back-off."""

    def __init__(self, reason: str, delay: timedelta) -> None:
        super().__init__(reason)
        self.delay = delay


class Parked(Exception):  # an instruction to the sender, raised as an error
    """Raised by a handler whose message cannot go out now and must not be dropped (its
    webhook endpoint is disabled): the message waits, undelivered, with every later one
    of its sequence, until `resume` is called for that sequence."""


BATCH = 20
# Longer than any one delivery may take (each handler bounds its own), so a row is not
# taken by a second sender while the first is still delivering it.
LEASE = timedelta(minutes=5)
MAX_DELAY_SECONDS = 3600.0
# How long a stopping sender tries to hand its claimed rows back.
RELEASE_SECONDS = 5.0


def back_off(attempts: int, *, base: float) -> timedelta:
    """The wait after the `attempts`-th failed delivery: base, then doubled, at most an hour."""
    return timedelta(seconds=min(base * 2 ** max(attempts - 1, 0), MAX_DELAY_SECONDS))


@dataclass(slots=True)
class Sender:
    """One per app, started and stopped by its lifespan."""

    db: Database
    handlers: Mapping[str, Handler]
    poll_seconds: float = 1.0
    retry_seconds: float = 5.0
    # Once per cluster: only the holder of this lease polls (None: every sender does).
    lease: Lease | None = None
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    # Rows this sender has claimed and not yet recorded, and the one being delivered.
    _held: set[int] = field(default_factory=set)
    _delivering: int | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox sender")

    def wake(self) -> None:
        """Look for due rows now (a message was just committed), not at the next poll."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop between deliveries or during one, then hand back the rows of the batch it
        held: due again at once (a restart or a deploy does not hold a password-reset
        mail for the lease's 5 minutes). An interrupted delivery may not have happened:
        it is sent again."""
        if self._task is None:
            return
        task, self._task = self._task, None
        # Cancel until it has ended: once in CI, under load, a shut-down waited here for
        # ever on a sender that outlived its one cancel (the lost cancel not pinned down).
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await self._release()

    async def _release(self) -> None:
        if not self._held:
            return
        ids, delivering = sorted(self._held), self._delivering
        self._held.clear()
        self._delivering = None
        try:
            async with asyncio.timeout(RELEASE_SECONDS):
                await self.db.run(
                    _record(q.RELEASE, ids=ids, delivering=delivering), transaction=False
                )
        except Exception as exc:  # the database is down or slow: the leases run out instead
            log.warning(
                "outbox: %d claimed messages not handed back (%s: %s); due again when their"
                " lease ends",
                len(ids),
                type(exc).__name__,
                exc,
            )

    async def _run(self) -> None:
        while True:
            try:
                held = self.lease is None or await self.lease.hold()
                delivered = await self.deliver_due() if held else 0
            except DatabaseUnavailable:
                delivered = 0  # logged by the database; try again at the next poll
            except Exception:
                log.exception("outbox sender failed; trying again")
                delivered = 0
            if delivered:
                # More may be due: a claim takes one message per sequence (the next waits
                # for the one before), so an endpoint's backlog goes out one claim each.
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_seconds):
                    await self._wake.wait()
            self._wake.clear()

    async def deliver_due(self) -> int:
        """Claim and deliver one batch of due rows; how many were claimed."""
        claimed = await self.db.run(_claim, transaction=False)
        # a batch left by an error waits out its lease; this one is handed back at a stop
        self._held = {row["id"] for row in claimed}
        for row in claimed:
            self._delivering = row["id"]
            await self._deliver(row)
            self._held.discard(row["id"])
        self._delivering = None
        return len(claimed)

    async def _deliver(self, row: Record) -> None:
        kind, attempts = row["kind"], row["attempts"]
        handler = self.handlers.get(kind)
        try:
            if handler is None:
                raise LookupError(f"no handler for outbox messages of kind {kind!r}")
            await handler(json.loads(row["payload"]), attempts)  # asyncpg reads jsonb as text
        except Parked as exc:
            log.warning("outbox %s message %d held back: %s", kind, row["id"], exc)
            await self.db.run(_record(q.PARK, id=row["id"], error=str(exc)), transaction=False)
            return
        except Exception as exc:
            if isinstance(exc, RetryAfter):
                delay = exc.delay
            else:
                delay = back_off(attempts, base=self.retry_seconds)
            error = f"{type(exc).__name__}: {exc}"[:1000]
            log.warning(
                "outbox %s message %d not delivered (attempt %d), next in %.0f s: %s",
                kind,
                row["id"],
                attempts,
                delay.total_seconds(),
                error,
            )
            await self.db.run(
                _record(q.FAILED, id=row["id"], delay=delay, error=error), transaction=False
            )
            return
        log.info("outbox %s message %d delivered (attempt %d)", kind, row["id"], attempts)
        await self.db.run(_record(q.DELIVERED, id=row["id"]), transaction=False)


async def _claim(unit: Unit) -> list[Record]:
    return await unit.all(q.CLAIM, limit=BATCH, lease=LEASE)


def _record(statement: Any, **values: Any) -> Callable[[Unit], Awaitable[None]]:
    async def record(unit: Unit) -> None:
        await unit.execute(statement, **values)

    return record


async def enqueue(
    unit: Unit, kind: str, payload: Mapping[str, Any], *, sequence_key: str | None = None
) -> None:
    """Write a message in `unit`'s transaction: it exists if, and only if, that commits.
    Messages of one `sequence_key` are delivered one at a time, in the order written."""
    await unit.execute(
        q.ENQUEUE, kind=kind, payload=json.dumps(dict(payload)), sequence_key=sequence_key
    )


async def resume(unit: Unit, sequence_key: str) -> None:
    """Make the sequence's parked message (`Parked`) due again, in `unit`'s transaction;
    the ones behind it follow in order. Wake the sender once it commits."""
    await unit.execute(q.RESUME, sequence_key=sequence_key)


async def discard(unit: Unit, sequence_key: str) -> None:
    """Drop the sequence's undelivered messages, in `unit`'s transaction."""
    await unit.execute(q.DISCARD, sequence_key=sequence_key)


async def backlog(db: Database) -> tuple[int, Any]:
    """Messages not yet delivered, and when the oldest was written (None: none)."""

    async def read(unit: Unit) -> tuple[int, Any]:
        record = await unit.one(q.BACKLOG)
        assert record is not None  # an aggregate: one row always
        return record[0], record[1]

    return await db.run(read, transaction=False)
