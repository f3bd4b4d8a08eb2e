"""DELIVERY_RETENTION_DAYS: old webhook attempts and delivered outbox messages go; what
is recent, and every message still to deliver however old, stays."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from uuid_utils.compat import uuid7

from users_api.cluster.retention import Pruner, Retention, prune
from users_api.config import Settings
from users_api.db.database import Database
from users_api.outbox.queries import PRUNE_DELIVERED
from users_api.users.models import UNIQUE_FIELDS
from users_api.webhooks.queries import PRUNE_DELIVERIES


async def _seed(
    engine: AsyncEngine, attempts: Sequence[int], messages: Sequence[tuple[int, bool]]
) -> None:
    """Attempts `days` old, and outbox messages (`days` old, delivered or not)."""
    now = datetime.now(UTC)
    async with engine.begin() as connection:
        endpoint = uuid7()
        await connection.execute(
            text(
                "INSERT INTO webhook_endpoints (id, url, event_types, secret)"
                " VALUES (:id, 'https://hooks.example/x', '{*}', '\\x00')"
            ),
            {"id": endpoint},
        )
        for days in attempts:
            await connection.execute(
                text(
                    "INSERT INTO webhook_deliveries (endpoint_id, event_id, attempt,"
                    " status_code, attempted_at) VALUES (:endpoint, :event, 1, :days, :at)"
                ),
                {
                    "endpoint": endpoint,
                    "event": uuid7(),
                    "days": days,
                    "at": now - timedelta(days=days),
                },
            )
        for days, delivered in messages:
            at = now - timedelta(days=days)
            await connection.execute(
                text(
                    "INSERT INTO outbox (kind, payload, created_at, next_attempt_at, attempts,"
                    " delivered_at) VALUES ('mail', CAST(:payload AS jsonb), :at, :at, 1,"
                    " :delivered)"
                ),
                {
                    "payload": f'{{"days": {days}}}',
                    "at": at,
                    "delivered": at if delivered else None,
                },
            )


async def _left(engine: AsyncEngine) -> tuple[list[int], list[tuple[int, bool]]]:
    async with engine.connect() as connection:
        attempts = await connection.execute(text("SELECT status_code FROM webhook_deliveries"))
        messages = await connection.execute(
            text("SELECT (payload->>'days')::int, delivered_at IS NOT NULL FROM outbox")
        )
        return sorted(row[0] for row in attempts), sorted((row[0], row[1]) for row in messages)


async def test_old_attempts_and_delivered_messages_go_in_batches(
    app: FastAPI, engine: AsyncEngine
) -> None:
    await _seed(engine, [40] * 12 + [2], [(40, True)] * 9 + [(40, False), (2, True)])
    db = app.state.db
    assert await prune(db, PRUNE_DELIVERIES, older_than=timedelta(days=30), batch=5) == 12
    assert await prune(db, PRUNE_DELIVERED, older_than=timedelta(days=30), batch=4) == 9
    assert await _left(engine) == ([2], [(2, True), (40, False)])


async def test_the_app_prunes_them_once_in_the_background(
    settings: Settings, engine: AsyncEngine
) -> None:
    """Two apps' pruners side by side (two workers): each row goes once, and a message
    not yet delivered stays however old it is."""
    await _seed(engine, [31, 29], [(31, True), (31, False), (29, True)])
    retentions = [
        Retention("delivery-retention", PRUNE_DELIVERIES, 30),
        Retention("outbox-retention", PRUNE_DELIVERED, 30),
    ]
    dbs = [await Database.open(settings, unique_fields=UNIQUE_FIELDS) for _ in range(2)]
    pruners = [Pruner(db, retentions, every_seconds=0.05) for db in dbs]
    for pruner in pruners:
        pruner.start()
    try:
        for _ in range(100):
            if await _left(engine) == ([29], [(29, True), (31, False)]):
                break
            await asyncio.sleep(0.05)
    finally:
        for pruner in pruners:
            await pruner.stop()
        for db in dbs:
            await db.close()
    assert await _left(engine) == ([29], [(29, True), (31, False)])


def test_the_setting() -> None:
    assert Settings.model_fields["delivery_retention_days"].default == 30
