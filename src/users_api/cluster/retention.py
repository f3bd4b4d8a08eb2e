"""Retention: rows past their time are removed by the service itself, once a period in
the whole cluster per kind of row, a batch at a time.

Each batch is its own short transaction (no long lock, no burst of WAL), oldest rows
first, and skips rows another pruner holds (SKIP LOCKED): several workers, or a run
that overlaps the next, remove each row once and never wait on each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import DateTime, Integer, bindparam, delete, func, select
from sqlalchemy.orm import InstrumentedAttribute

from users_api.cluster.jobs import periodically
from users_api.db.database import Database, Unit
from users_api.db.statements import Statement, compile_statement
from users_api.errors import DatabaseUnavailable

PRUNE_BATCH = 5000
PRUNE_EVERY_SECONDS = 3600.0
log = logging.getLogger(__name__)


def expired_batch(key: InstrumentedAttribute[Any], stamp: InstrumentedAttribute[Any]) -> Statement:
    """DELETE one batch of the rows whose `stamp` is before `cutoff` (oldest first, at
    most `batch`, none that another pruner holds) and count them. `key` is the table's
    primary key; an index on `stamp` keeps a batch cheap however large the table."""
    expired = (
        select(key)
        .where(stamp < bindparam("cutoff", type_=DateTime(timezone=True)))
        .order_by(stamp)
        .limit(bindparam("batch", type_=Integer))
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    table = key.class_
    pruned = delete(table).where(key.in_(expired)).returning(key).cte("pruned")
    return compile_statement(select(func.count()).select_from(pruned))


async def prune(
    db: Database, statement: Statement, *, older_than: timedelta, batch: int = PRUNE_BATCH
) -> int:
    """Remove what `statement` (an `expired_batch`) finds older than `older_than`, batch
    by batch; how many rows went."""
    cutoff = datetime.now(UTC) - older_than
    removed = 0

    async def one_batch(unit: Unit) -> int:
        count: int = await unit.value(statement, cutoff=cutoff, batch=batch)
        return count

    while True:
        count = await db.run(one_batch)
        removed += count
        if count < batch:
            return removed
        await asyncio.sleep(0)  # let requests in between batches


@dataclass(frozen=True, slots=True)
class Retention:
    """What is kept how long: `name` is the periodic job's (its cluster lease) and says
    in the log what went; `days` 0 keeps the rows for ever."""

    name: str
    statement: Statement
    days: int


@dataclass(slots=True)
class Pruner:
    """Every retention's job, started and stopped by the app's lifespan."""

    db: Database
    retentions: Sequence[Retention]
    every_seconds: float = PRUNE_EVERY_SECONDS
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        for retention in self.retentions:
            if retention.days > 0:
                job = periodically(
                    self.db, retention.name, self.every_seconds, self._job(retention)
                )
                self._tasks.append(asyncio.create_task(job, name=retention.name))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    def _job(self, retention: Retention) -> Any:
        async def prune_once() -> None:
            try:
                removed = await prune(
                    self.db, retention.statement, older_than=timedelta(days=retention.days)
                )
            except DatabaseUnavailable:
                return  # logged by the database; the next period tries again
            if removed:
                log.info("%s: removed %d rows past their retention", retention.name, removed)

        return prune_once
