"""An app that delivers webhooks fast (a short WEBHOOK_RETRY_SCHEDULE, a fast-polling
sender, loopback targets allowed), a real receiver, and helpers to queue events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from uuid_utils.compat import uuid7

from tests.webhooks.receiver import Receiver
from users_api.app import create_app
from users_api.config import Settings
from users_api.db.database import Unit
from users_api.events.writer import SYSTEM, Event, build_writer
from users_api.outbox.sender import Sender

FAST: dict[str, Any] = {
    "outbox_poll_seconds": 0.05,
    "webhook_retry_schedule": (0.1,),
    "webhook_allow_private": True,
    "webhook_timeout_seconds": 2.0,
    "db_pool_size": 5,
}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    receiver.start()
    yield receiver
    receiver.stop()


def webhook_settings(settings: Settings, **changes: Any) -> Settings:
    return settings.model_copy(update=FAST | changes)


@pytest.fixture
def changes() -> dict[str, Any]:
    """Settings a test module changes beyond FAST (override the fixture)."""
    return {}


@pytest.fixture
async def app(settings: Settings, changes: dict[str, Any]) -> AsyncIterator[FastAPI]:
    """This directory's app (the `admin` and `admin_client` fixtures use it)."""
    app = create_app(webhook_settings(settings, **changes))
    async with app.router.lifespan_context(app):
        yield app


async def register(
    client: httpx.AsyncClient, receiver: Receiver, events: list[str] | None = None
) -> str:
    """An endpoint for `receiver`, whose secret the receiver then verifies with; by
    default it wants the `user.*` events `emit` writes (not the `webhook.*` ones that
    managing endpoints writes)."""
    response = await client.post(
        "/api/v1/webhooks", json={"url": receiver.url, "events": events or ["user.*"]}
    )
    assert response.status_code == 201, response.text
    receiver.secret = response.json()["secret"]
    endpoint_id: str = response.json()["id"]
    return endpoint_id


async def emit(app: FastAPI, event_type: str = "user.created", **data: Any) -> str:
    """An event written by the events writer in its own transaction, as a change writes
    it; its id."""
    writer = build_writer()

    async def write(unit: Unit) -> Event:
        return await writer.write(
            unit, event_type, actor=SYSTEM, subject_type="user", subject_id=uuid7(), data=data
        )

    event = await app.state.db.run(write)
    sender: Sender = app.state.outbox
    sender.wake()
    return str(event.id)


async def eventually(check: Callable[[], Awaitable[bool] | bool], seconds: float = 10) -> None:
    """Wait until `check()` holds; fail after `seconds`."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        outcome = check()
        if not isinstance(outcome, bool):
            outcome = await outcome
        if outcome:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the condition did not hold in time")
        await asyncio.sleep(0.02)
