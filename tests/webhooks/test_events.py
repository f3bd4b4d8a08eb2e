"""Events reach webhooks through the events writer, in the event's transaction: a change
that rolls back sends nothing; an endpoint disabled after its last attempt is an event
itself, sent to the endpoints that want it."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from uuid_utils.compat import uuid7

from tests.conftest import Admin
from tests.webhooks.conftest import emit, eventually, register
from tests.webhooks.receiver import Receiver
from users_api.db.database import Unit
from users_api.events.writer import SYSTEM, build_writer


class Forced(Exception):
    """The change fails after its event was written."""


async def test_an_event_that_rolls_back_sends_nothing(
    app: FastAPI, admin_client: httpx.AsyncClient, receiver: Receiver, engine: AsyncEngine
) -> None:
    await register(admin_client, receiver)
    writer = build_writer()

    async def change_that_fails(unit: Unit) -> None:
        await writer.write(
            unit, "user.deleted", actor=SYSTEM, subject_type="user", subject_id=uuid7()
        )
        raise Forced

    with pytest.raises(Forced):
        await app.state.db.run(change_that_fails)
    committed = await emit(app, "user.created")
    await eventually(lambda: len(receiver.delivered()) == 1)
    await asyncio.sleep(0.3)
    assert [item.webhook_id for item in receiver.all()] == [committed]
    async with engine.connect() as connection:
        queued = await connection.execute(text("SELECT count(*) FROM outbox"))
        assert queued.scalar_one() == 1


@pytest.mark.parametrize("changes", [{"webhook_max_attempts": 2}])
async def test_a_disabled_endpoint_is_an_event_sent_to_those_who_want_it(
    app: FastAPI, admin_client: httpx.AsyncClient, receiver: Receiver, engine: AsyncEngine
) -> None:
    failing = await register(admin_client, receiver, events=["user.*"])
    receiver.plan = [500, 500]
    watcher = Receiver()
    watcher.start()
    try:
        await register(admin_client, watcher, events=["webhook.*"])
        await emit(app, "user.created")
        await eventually(lambda: len(watcher.delivered()) == 1)
        [notice] = watcher.delivered()
        assert notice.verified
        assert notice.document["type"] == "webhook.disabled"
        data = notice.document["data"]
        assert data["subject"] == {"type": "webhook", "id": failing}
        assert data["actor"] == {"type": "system", "id": None}
        assert data["data"] == {"attempts": 2, "error": "HTTP 500"}
    finally:
        watcher.stop()
    async with engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT type, subject_id::text FROM events WHERE type = 'webhook.disabled'")
        )
        assert rows.all() == [("webhook.disabled", failing)]


async def test_a_change_through_the_api_reaches_the_endpoint(
    app: FastAPI, admin_client: httpx.AsyncClient, receiver: Receiver
) -> None:
    await register(admin_client, receiver, events=["user.created"])
    created = await admin_client.post(
        "/api/v1/users",
        json={"email": "ada@example.com", "username": "ada", "password": "a long password here"},
        headers={"X-Request-ID": "create-ada"},
    )
    assert created.status_code == 201, created.text
    await eventually(lambda: len(receiver.delivered()) == 1)
    [received] = receiver.delivered()
    assert received.verified
    event = received.document["data"]
    assert received.document["type"] == event["type"] == "user.created"
    assert event["subject"] == {"type": "user", "id": created.json()["id"]}
    assert event["request_id"] == "create-ada"
    assert "password" not in received.body.decode()


async def test_a_profile_change_and_its_event_reach_the_endpoint_as_one(
    app: FastAPI, admin_client: httpx.AsyncClient, receiver: Receiver, engine: AsyncEngine
) -> None:
    """A name change is one statement with its event and fan-out (events/writer.py): the
    endpoint gets the event the audit log holds; a stale If-Match writes neither."""
    await register(admin_client, receiver, events=["user.updated"])
    created = await admin_client.post(
        "/api/v1/users",
        json={"email": "ada@example.com", "username": "ada", "password": "a long password here"},
    )
    path = f"/api/v1/users/{created.json()['id']}"
    changed = await admin_client.patch(
        path, json={"full_name": "Ada L"}, headers={"If-Match": '"1"', "X-Request-ID": "rename"}
    )
    assert changed.status_code == 200, changed.text
    stale = await admin_client.patch(path, json={"full_name": "Ada X"}, headers={"If-Match": '"1"'})
    assert stale.status_code == 412
    app.state.outbox.wake()
    await eventually(lambda: len(receiver.delivered()) == 1)
    await asyncio.sleep(0.3)
    [received] = receiver.delivered()
    assert received.verified
    audit = await admin_client.get("/api/v1/audit-events", params={"type": "user.updated"})
    [event] = audit.json()["items"]
    sent = received.document["data"]
    assert sent["id"] == event["id"]
    assert sent["data"] == event["data"] == {"fields": ["full_name"]}
    assert sent["request_id"] == event["request_id"] == "rename"
    assert sent["subject"] == event["subject"] == {"type": "user", "id": created.json()["id"]}
    async with engine.connect() as connection:
        same = await connection.scalar(
            text(
                "SELECT users.xmin = events.xmin FROM users, events"
                " WHERE users.username = 'ada' AND events.type = 'user.updated'"
            )
        )
    assert same  # one transaction wrote both


async def test_an_endpoints_changes_are_events_of_their_admin(
    app: FastAPI,
    admin: Admin,
    admin_client: httpx.AsyncClient,
    receiver: Receiver,
) -> None:
    """Registering, changing and deleting an endpoint is audited like any change, without
    its URL (a receiver's token may ride in it) or secret; an endpoint that wants
    `webhook.*` hears of the others, not of its own creation."""
    watching = await register(admin_client, receiver, events=["webhook.*"])
    other = await admin_client.post(
        "/api/v1/webhooks",
        json={"url": "https://8.8.8.8/hook?token=receivers-own-token", "events": ["user.*"]},
        headers={"X-Request-ID": "register-other"},
    )
    assert other.status_code == 201, other.text
    path = f"/api/v1/webhooks/{other.json()['id']}"
    same = await admin_client.patch(path, json={"events": ["user.*"]})
    assert same.status_code == 200
    assert same.json()["version"] == other.json()["version"]  # no change, no new version
    assert same.json()["updated_at"] == other.json()["updated_at"]
    changed = await admin_client.patch(path, json={"enabled": False, "description": "off"})
    assert changed.status_code == 200
    assert (await admin_client.delete(path)).status_code == 204
    audit = await admin_client.get("/api/v1/audit-events", params={"type": "webhook.*"})
    items = list(reversed(audit.json()["items"]))
    assert [(item["type"], item["subject"]["id"], item["data"]) for item in items] == [
        ("webhook.created", watching, {"events": ["webhook.*"]}),
        ("webhook.created", other.json()["id"], {"events": ["user.*"]}),
        ("webhook.updated", other.json()["id"], {"fields": ["description", "enabled"]}),
        ("webhook.deleted", other.json()["id"], {}),
    ]
    assert {item["actor"]["id"] for item in items} == {str(admin.id)}
    assert {item["subject"]["type"] for item in items} == {"webhook"}
    assert items[1]["request_id"] == "register-other"
    assert "receivers-own-token" not in audit.text
    assert other.json()["secret"] not in audit.text
    app.state.outbox.wake()
    await eventually(lambda: len(receiver.delivered()) == 3)
    await asyncio.sleep(0.3)
    assert [item.document["type"] for item in receiver.all()] == [
        "webhook.created",
        "webhook.updated",
        "webhook.deleted",
    ]


async def test_a_deleted_endpoint_leaves_nothing_queued(
    app: FastAPI, admin_client: httpx.AsyncClient, receiver: Receiver, engine: AsyncEngine
) -> None:
    endpoint_id = await register(admin_client, receiver, events=["user.*"])
    receiver.stop()
    await emit(app, "user.created")
    await emit(app, "user.deleted")
    await admin_client.patch(f"/api/v1/webhooks/{endpoint_id}", json={"enabled": False})
    await asyncio.sleep(0.5)  # the first event's next attempt finds it disabled: held
    assert (await admin_client.delete(f"/api/v1/webhooks/{endpoint_id}")).status_code == 204
    async with engine.connect() as connection:
        left = await connection.scalar(
            text("SELECT count(*) FROM outbox WHERE delivered_at IS NULL")
        )
    assert left == 0
