"""Events past AUDIT_RETENTION_DAYS are removed by the service itself, in batches."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from uuid_utils.compat import uuid7

from tests.events.helpers import events
from users_api.cluster.retention import Pruner, prune
from users_api.config import Settings
from users_api.db.database import Database
from users_api.events.queries import PRUNE
from users_api.events.service import audit_retention
from users_api.users.models import UNIQUE_FIELDS


async def _seed_ages(engine: AsyncEngine, days: Sequence[float]) -> None:
    now = datetime.now(UTC)
    rows = [
        {
            "id": uuid7(),
            "occurred_at": now - timedelta(days=age),
            "data": json.dumps({"age": age}),
        }
        for age in days
    ]
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO events (id, type, occurred_at, actor_type, subject_type, data) "
                "VALUES (:id, 'user.updated', :occurred_at, 'system', 'user', "
                "CAST(:data AS jsonb))"
            ),
            rows,
        )


async def _ages(engine: AsyncEngine) -> list[float]:
    return sorted(event["data"]["age"] for event in await events(engine))


async def test_prune_removes_only_what_is_past_retention_in_batches(
    app: FastAPI, engine: AsyncEngine
) -> None:
    await _seed_ages(engine, [400, 366, 365.5, 300, 1, 0] + [500] * 12)
    removed = await prune(app.state.db, PRUNE, older_than=timedelta(days=365), batch=5)
    assert removed == 15  # three full batches of 5, then one short batch
    assert await _ages(engine) == [0, 1, 300]
    assert await prune(app.state.db, PRUNE, older_than=timedelta(days=365)) == 0


async def test_two_pruners_at_once_remove_each_event_once(
    app: FastAPI, engine: AsyncEngine
) -> None:
    await _seed_ages(engine, [400] * 50 + [2])
    counts = await asyncio.gather(
        prune(app.state.db, PRUNE, older_than=timedelta(days=30), batch=7),
        prune(app.state.db, PRUNE, older_than=timedelta(days=30), batch=7),
    )
    assert sum(counts) == 50
    assert await _ages(engine) == [2]


async def test_the_app_prunes_in_the_background(settings: Settings, engine: AsyncEngine) -> None:
    """The lifespan's pruner, with AUDIT_RETENTION_DAYS, on its own."""
    await _seed_ages(engine, [11, 9])
    db = await Database.open(settings, unique_fields=UNIQUE_FIELDS)
    pruner = Pruner(db, [audit_retention(10)], every_seconds=0.05)
    pruner.start()
    try:
        for _ in range(100):
            if await _ages(engine) == [9]:
                break
            await asyncio.sleep(0.05)
    finally:
        await pruner.stop()
        await db.close()
    assert await _ages(engine) == [9]


async def test_zero_days_keeps_events(settings: Settings, engine: AsyncEngine) -> None:
    await _seed_ages(engine, [5000])
    db = await Database.open(settings, unique_fields=UNIQUE_FIELDS)
    pruner = Pruner(db, [audit_retention(0)], every_seconds=0.01)
    pruner.start()
    await asyncio.sleep(0.1)
    await pruner.stop()
    await db.close()
    assert await _ages(engine) == [5000]


def test_the_setting() -> None:
    assert Settings.model_fields["audit_retention_days"].default == 365
