"""Once per cluster: what every worker starts, but only one runs at a time.

Every worker of every replica builds the same app and starts the same background jobs.
Two kinds need to run once for the whole cluster, whatever the number of workers:

- a standing job such as the outbox sender: `Lease.hold()` before each round, and only
  the holder works; it renews the lease as it goes, and when it dies another worker
  takes over once the lease has run out;
- a periodic job such as a retention sweep: `periodically(...)` runs it once per period
  in the whole cluster, on whichever worker claims that period first.

Both rest on one row per job name (`cluster_leases`) claimed by a single statement, so
they work through PgBouncer in transaction mode, where session-level advisory locks do
not. The holder is this process: every app within one process (the tests build many)
shares its leases.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta

from users_api.cluster import queries as q
from users_api.db.database import Database, Unit
from users_api.errors import DatabaseUnavailable

log = logging.getLogger(__name__)

# This process, for as long as it lives: the host and pid for people, a random part so a
# recycled pid on a restarted container is not taken for its predecessor.
HOLDER = f"{socket.gethostname()[:64]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


@dataclass(slots=True)
class Lease:
    """The lease on `name`, `seconds` long, as this process sees it."""

    db: Database
    name: str
    seconds: float
    holder: str = HOLDER
    # Until when (this process's monotonic clock) the lease is surely still ours without
    # asking: a third of its length after it was last taken or renewed.
    _sure_until: float = field(default=0.0, init=False)

    async def hold(self) -> bool:
        """Take the lease or renew it if it is ours; whether this process holds it now.
        A database that cannot answer means no: better idle a round than run twice.

        Renewed at most every third of its length: a busy outbox sender asked before
        every batch, two statements of each sign-up's five went to renewing the lease."""
        if time.monotonic() < self._sure_until:
            return True
        held = await self._take(renew=True)
        self._sure_until = time.monotonic() + self.seconds / 3 if held else 0.0
        return held

    async def claim(self) -> bool:
        """Take the lease only if it is free or has run out, even from ourselves: once
        per `seconds` in the whole cluster."""
        return await self._take(renew=False)

    async def _take(self, *, renew: bool) -> bool:
        values = {
            "name": self.name,
            "holder": self.holder,
            "seconds": timedelta(seconds=self.seconds),
            "renew": renew,
        }

        async def take(unit: Unit) -> bool:
            return await unit.one(q.TAKE, **values) is not None

        try:
            return await self.db.run(take, transaction=False)
        except DatabaseUnavailable:
            return False


async def periodically(
    db: Database,
    name: str,
    every: float,
    job: Callable[[], Awaitable[object]],
    *,
    holder: str = HOLDER,
) -> None:
    """Run `job` once every `every` seconds in the whole cluster, until cancelled.

    Each worker looks once a period (plus a little, so they do not all ask at once) and
    the first to claim the period runs it. A failure is logged; the next period runs.
    """
    lease = Lease(db, name, every, holder)
    while True:
        if await lease.claim():
            try:
                await job()
            except Exception:
                log.exception("periodic job %s failed; it runs again next period", name)
        await asyncio.sleep(every * (1 + 0.1 * (os.getpid() % 7) / 7))


def start_periodically(
    db: Database, name: str, every: float, job: Callable[[], Awaitable[object]]
) -> Callable[[], Awaitable[None]]:
    """`periodically` as a task; returns what stops it (for the app's lifespan):

    stop = start_periodically(db, "audit-retention", 3600, sweep)
    ...
    await stop()
    """
    task = asyncio.create_task(periodically(db, name, every, job), name=f"periodic {name}")

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return stop
