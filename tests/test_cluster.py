"""Once per cluster, not once per worker: leases in `cluster_leases` (cluster/jobs.py).

Workers are separate processes in production; here each stands as a holder of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from users_api.cluster.jobs import Lease, periodically
from users_api.config import Settings
from users_api.db.database import Database, Unit
from users_api.db.migrations import upgrade_on
from users_api.outbox.sender import Sender, enqueue


@pytest.fixture
async def db(settings: Settings, fresh_database_url: str) -> AsyncIterator[Database]:
    """A database of its own: the session's app has a sender (and leases) of its own on
    the shared one, which would take these tests' rows."""
    engine = create_async_engine(fresh_database_url)
    async with engine.begin() as connection:
        await upgrade_on(connection)
    await engine.dispose()
    database = await Database.open(
        settings.model_copy(update={"db_pool_size": 4, "database_url": fresh_database_url}),
        unique_fields={},
    )
    try:
        yield database
    finally:
        await database.close()


async def test_a_held_lease_is_one_workers_until_it_runs_out(db: Database) -> None:
    first, second = Lease(db, "job", 0.5, "worker-1"), Lease(db, "job", 0.5, "worker-2")
    assert await first.hold() is True
    assert await second.hold() is False
    assert await first.hold() is True  # renewed
    await asyncio.sleep(0.7)  # the first worker died: nobody renewed it
    assert await second.hold() is True
    assert await first.hold() is False


async def test_a_claim_is_once_per_period_in_the_whole_cluster(db: Database) -> None:
    leases = [Lease(db, "sweep", 60, f"worker-{n}") for n in range(5)]
    outcomes = await asyncio.gather(*(lease.claim() for lease in leases))
    assert sorted(outcomes) == [False] * 4 + [True]
    assert not any(await asyncio.gather(*(lease.claim() for lease in leases)))


async def test_a_periodic_job_runs_once_per_period_whatever_the_workers(db: Database) -> None:
    runs: list[float] = []

    async def job() -> None:
        runs.append(asyncio.get_running_loop().time())

    workers = [
        asyncio.create_task(periodically(db, "tick", 0.5, job, holder=f"worker-{n}"))
        for n in range(4)
    ]
    await asyncio.sleep(1.8)
    for worker in workers:
        worker.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    # Four workers each running it every period would make 16; once per period: ~4.
    assert 2 <= len(runs) <= 5, runs


async def test_only_the_lease_holders_outbox_sender_polls(db: Database) -> None:
    delivered: dict[str, int] = {"worker-1": 0, "worker-2": 0}

    def handler(name: str) -> Any:
        async def deliver(payload: Any, attempt: int) -> None:
            delivered[name] += 1

        return deliver

    senders = [
        Sender(
            db,
            {"test": handler(name)},
            poll_seconds=0.05,
            lease=Lease(db, "outbox-sender", 30, name),
        )
        for name in delivered
    ]
    senders[0].start()
    await asyncio.sleep(0.2)  # worker-1 holds the lease now
    senders[1].start()

    async def write(unit: Unit) -> None:
        for number in range(10):
            await enqueue(unit, "test", {"n": number})

    await db.run(write)
    for _ in range(100):
        if delivered["worker-1"] == 10:
            break
        await asyncio.sleep(0.05)
    for sender in senders:
        await sender.stop()
    assert delivered == {"worker-1": 10, "worker-2": 0}
