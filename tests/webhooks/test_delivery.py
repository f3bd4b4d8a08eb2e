"""Delivery to a real receiver that verifies every signature with `standardwebhooks`:
retried through failures and an outage with the same `webhook-id`, in event order per
endpoint, never twice with two senders, refused at send time when the target is not
public, disabled after the last attempt, sent again on request."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.operations.test_metrics import scrape, value
from tests.webhooks.conftest import emit, eventually, register
from tests.webhooks.receiver import Receiver
from users_api.outbox.sender import Sender
from users_api.security.mfa import SecretBox
from users_api.security.secret import resolve_secret_key
from users_api.webhooks.delivery import WebhookSender, wait_after
from users_api.webhooks.queries import KIND
from users_api.webhooks.service import BOX_INFO

WEBHOOKS = "/api/v1/webhooks"


async def _deliveries(client: httpx.AsyncClient, endpoint_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"{WEBHOOKS}/{endpoint_id}/deliveries")
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_an_event_arrives_signed_in_the_standard_shape(
    app: FastAPI, admin_client: httpx.AsyncClient, receiver: Receiver
) -> None:
    endpoint_id = await register(admin_client, receiver)
    event_id = await emit(app, "user.created", fields=["email"])
    await eventually(lambda: len(receiver.delivered()) == 1)
    [received] = receiver.all()
    assert received.verified
    assert received.path == "/hooks"
    assert received.webhook_id == event_id
    assert received.headers["content-type"] == "application/json"
    assert abs(int(received.headers["webhook-timestamp"]) - time.time()) < 60
    document = received.document
    assert set(document) == {"type", "timestamp", "data"}
    assert document["type"] == "user.created"
    assert document["data"]["id"] == event_id
    assert document["data"]["data"] == {"fields": ["email"]}
    assert document["timestamp"] == document["data"]["occurred_at"]
    # the contract's one spelling of a time, as the audit list writes the same event's
    audit = await admin_client.get("/api/v1/audit-events")
    [listed] = [item for item in audit.json()["items"] if item["id"] == event_id]
    assert document["timestamp"] == listed["occurred_at"]
    assert document["timestamp"].endswith("Z")
    await eventually(lambda: _has_deliveries(admin_client, endpoint_id, 1))
    [delivery] = await _deliveries(admin_client, endpoint_id)
    assert delivery["event_id"] == event_id
    assert delivery["attempt"] == 1
    assert delivery["status_code"] == 200
    assert delivery["error"] is None
    assert delivery["next_retry_at"] is None


async def _has_deliveries(client: httpx.AsyncClient, endpoint_id: str, count: int) -> bool:
    return len(await _deliveries(client, endpoint_id)) >= count


OUTCOMES = ("delivered", "failed", "disabled", "rejected")


async def _attempts_counted(client: httpx.AsyncClient) -> dict[str, float]:
    """`users_api_webhook_deliveries_total` in `/metrics`, by outcome."""
    text = await scrape(client)
    name = "users_api_webhook_deliveries_total"
    return {outcome: value(text, name, outcome=outcome) for outcome in OUTCOMES}


async def _counted_since(
    client: httpx.AsyncClient, before: dict[str, float], expected: dict[str, int]
) -> bool:
    after = await _attempts_counted(client)
    moved = {outcome: after[outcome] - before[outcome] for outcome in OUTCOMES}
    return moved == {outcome: expected.get(outcome, 0) for outcome in OUTCOMES}


async def test_only_the_events_an_endpoint_asked_for_go_to_it(
    app: FastAPI, admin_client: httpx.AsyncClient, receiver: Receiver
) -> None:
    await register(admin_client, receiver, events=["group.*", "user.deleted"])
    await emit(app, "user.created")
    wanted = [await emit(app, "group.created"), await emit(app, "user.deleted")]
    await eventually(lambda: len(receiver.delivered()) == 2)
    await asyncio.sleep(0.3)
    assert [item.webhook_id for item in receiver.all()] == wanted


async def test_failures_are_retried_with_the_same_webhook_id(
    app: FastAPI, admin_client: httpx.AsyncClient, receiver: Receiver
) -> None:
    endpoint_id = await register(admin_client, receiver)
    receiver.plan = [503, 500]
    counted = await _attempts_counted(admin_client)
    event_id = await emit(app)
    await eventually(lambda: len(receiver.delivered()) == 1)
    attempts = receiver.all()
    assert [item.status for item in attempts] == [503, 500, 200]
    assert {item.webhook_id for item in attempts} == {event_id}
    assert all(item.verified for item in attempts)
    await eventually(lambda: _has_deliveries(admin_client, endpoint_id, 3))
    log = list(reversed(await _deliveries(admin_client, endpoint_id)))
    assert [(item["attempt"], item["status_code"]) for item in log] == [
        (1, 503),
        (2, 500),
        (3, 200),
    ]
    assert log[0]["error"] == "HTTP 503"
    assert log[0]["next_retry_at"] is not None
    assert log[2]["next_retry_at"] is None
    expected = {"failed": 2, "delivered": 1}
    await eventually(lambda: _counted_since(admin_client, counted, expected))


async def test_a_4xx_is_final_and_the_endpoint_stays_enabled(
    app: FastAPI, admin_client: httpx.AsyncClient, receiver: Receiver
) -> None:
    endpoint_id = await register(admin_client, receiver)
    receiver.plan = [400]
    counted = await _attempts_counted(admin_client)
    first = await emit(app)
    second = await emit(app)
    await eventually(lambda: len(receiver.delivered()) == 1)
    assert [(item.webhook_id, item.status) for item in receiver.all()] == [
        (first, 400),
        (second, 200),
    ]
    endpoint = (await admin_client.get(f"{WEBHOOKS}/{endpoint_id}")).json()
    assert endpoint["enabled"] is True
    expected = {"rejected": 1, "delivered": 1}
    await eventually(lambda: _counted_since(admin_client, counted, expected))


async def test_every_event_arrives_after_the_receiver_was_down(
    app: FastAPI, admin_client: httpx.AsyncClient, receiver: Receiver
) -> None:
    endpoint_id = await register(admin_client, receiver)
    receiver.stop()
    sent = [await emit(app, number=number) for number in range(3)]
    await eventually(lambda: _has_deliveries(admin_client, endpoint_id, 2))
    refused = await _deliveries(admin_client, endpoint_id)
    assert all(item["status_code"] is None for item in refused)
    assert "ConnectError" in refused[0]["error"]
    # Only the first event was tried: the others wait for it.
    assert {item["event_id"] for item in refused} == {sent[0]}
    receiver.start()  # the same port
    await eventually(lambda: len(receiver.delivered()) == 3)
    assert [item.webhook_id for item in receiver.delivered()] == sent
    assert all(item.verified for item in receiver.all())


async def test_an_endpoints_events_arrive_in_order_while_one_is_retried(
    app: FastAPI, admin_client: httpx.AsyncClient, receiver: Receiver
) -> None:
    await register(admin_client, receiver)
    receiver.plan = [500, 500, 500]
    sent = [await emit(app, number=number) for number in range(5)]
    await eventually(lambda: len(receiver.delivered()) == 5)
    order = [item.webhook_id for item in receiver.all()]
    assert order == [sent[0]] * 4 + sent[1:]


@pytest.mark.parametrize("changes", [{"webhook_timeout_seconds": 1.5}])
async def test_a_slow_receiver_times_out_and_slows_no_request(
    app: FastAPI, admin_client: httpx.AsyncClient, receiver: Receiver
) -> None:
    endpoint_id = await register(admin_client, receiver)
    receiver.delay = 2.5
    await emit(app)
    await eventually(lambda: receiver.arrived == 1)  # the sender waits on the receiver now
    started = time.monotonic()
    assert (await admin_client.get("/api/v1/users/me")).status_code == 200
    assert time.monotonic() - started < 0.75  # the sender waits up to 1.5 s meanwhile
    await eventually(lambda: _has_deliveries(admin_client, endpoint_id, 1))
    [timed_out] = await _deliveries(admin_client, endpoint_id)
    assert timed_out["error"] == "no answer within 1.5 s"
    assert timed_out["status_code"] is None
    assert timed_out["next_retry_at"] is not None
    receiver.delay = 0
    await eventually(lambda: any(item["status_code"] == 200 for item in receiver_log(receiver)))


def receiver_log(receiver: Receiver) -> list[dict[str, Any]]:
    return [{"status_code": item.status} for item in receiver.delivered()]


@pytest.mark.parametrize("changes", [{"webhook_max_attempts": 3}])
async def test_an_endpoint_is_disabled_after_its_last_attempt(
    app: FastAPI, admin_client: httpx.AsyncClient, receiver: Receiver, engine: AsyncEngine
) -> None:
    endpoint_id = await register(admin_client, receiver)
    receiver.plan = [500] * 3
    counted = await _attempts_counted(admin_client)
    first = await emit(app)
    later = await emit(app)
    await eventually(lambda: _disabled(admin_client, endpoint_id))
    await eventually(lambda: _counted_since(admin_client, counted, {"failed": 2, "disabled": 1}))
    await asyncio.sleep(0.3)
    assert len(receiver.all()) == 3  # the later event is not sent to a disabled endpoint
    assert later not in {item.webhook_id for item in receiver.all()}
    log = await _deliveries(admin_client, endpoint_id)
    assert [item["attempt"] for item in log] == [3, 2, 1]
    assert log[0]["next_retry_at"] is None
    # Nothing queued is lost: both events wait for the endpoint.
    assert await _pending(engine) == 2
    ignored = await emit(app)  # while it is disabled, nothing is queued for it
    await asyncio.sleep(0.3)
    assert await _pending(engine) == 2
    # Turned on again, it gets what waited, in order (attempts counted afresh), then
    # what comes next.
    response = await admin_client.patch(f"{WEBHOOKS}/{endpoint_id}", json={"enabled": True})
    assert response.status_code == 200, response.text
    latest = await emit(app)
    await eventually(lambda: len(receiver.delivered()) == 3)
    assert [item.webhook_id for item in receiver.delivered()] == [first, later, latest]
    assert ignored not in {item.webhook_id for item in receiver.all()}
    assert all(item.verified for item in receiver.all())
    await eventually(lambda: _has_deliveries(admin_client, endpoint_id, 6))
    log = await _deliveries(admin_client, endpoint_id)
    assert [(item["event_id"], item["attempt"], item["status_code"]) for item in log[:3]] == [
        (latest, 1, 200),
        (later, 1, 200),
        (first, 1, 200),
    ]
    assert await _pending(engine) == 0


async def test_events_queued_for_an_endpoint_an_admin_disables_wait_for_it(
    app: FastAPI, admin_client: httpx.AsyncClient, receiver: Receiver, engine: AsyncEngine
) -> None:
    endpoint_id = await register(admin_client, receiver)
    receiver.stop()  # the first event is retried, the second waits behind it
    sent = [await emit(app, number=number) for number in range(2)]
    await eventually(lambda: _has_deliveries(admin_client, endpoint_id, 1))
    off = await admin_client.patch(f"{WEBHOOKS}/{endpoint_id}", json={"enabled": False})
    assert off.status_code == 200, off.text
    receiver.start()
    await asyncio.sleep(0.5)  # past the retry's wait: the attempt due finds it disabled
    assert receiver.all() == []
    assert await _pending(engine) == 2
    on = await admin_client.patch(f"{WEBHOOKS}/{endpoint_id}", json={"enabled": True})
    assert on.status_code == 200, on.text
    await eventually(lambda: len(receiver.delivered()) == 2)
    assert [item.webhook_id for item in receiver.delivered()] == sent


@pytest.mark.parametrize("changes", [{"outbox_poll_seconds": 60}])
async def test_an_endpoints_backlog_goes_out_without_waiting_for_the_poll(
    app: FastAPI, admin_client: httpx.AsyncClient, receiver: Receiver
) -> None:
    """An endpoint's events go out one after the other, each as soon as the one before
    it was delivered: not one per poll (41 events took 41 s at a 1 s poll)."""
    await register(admin_client, receiver)
    sent = [await emit(app, number=number) for number in range(20)]
    await eventually(lambda: len(receiver.delivered()) == 20, seconds=15)
    assert [item.webhook_id for item in receiver.delivered()] == sent


async def _pending(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        pending = await connection.execute(
            text("SELECT count(*) FROM outbox WHERE kind = :kind AND delivered_at IS NULL"),
            {"kind": KIND},
        )
    count: int = pending.scalar_one()
    return count


async def _disabled(client: httpx.AsyncClient, endpoint_id: str) -> bool:
    endpoint = (await client.get(f"{WEBHOOKS}/{endpoint_id}")).json()
    return endpoint["enabled"] is False


async def test_a_delivered_event_is_sent_again_on_request(
    app: FastAPI, admin_client: httpx.AsyncClient, receiver: Receiver
) -> None:
    endpoint_id = await register(admin_client, receiver)
    event_id = await emit(app)
    await eventually(lambda: len(receiver.delivered()) == 1)
    retry = f"{WEBHOOKS}/{endpoint_id}/deliveries/{event_id}/retry"
    response = await admin_client.post(retry)
    assert response.status_code == 202, response.text
    assert response.json() == {"endpoint_id": endpoint_id, "event_id": event_id}
    await eventually(lambda: len(receiver.delivered()) == 2)
    first, again = receiver.delivered()
    assert again.webhook_id == first.webhook_id == event_id
    assert again.verified
    assert again.document["data"] == first.document["data"]
    unknown = await admin_client.post(f"{WEBHOOKS}/{endpoint_id}/deliveries/{endpoint_id}/retry")
    assert unknown.status_code == 404
    await admin_client.patch(f"{WEBHOOKS}/{endpoint_id}", json={"enabled": False})
    disabled = await admin_client.post(retry)
    assert disabled.status_code == 409
    assert disabled.json()["code"] == "conflict"


async def test_a_target_that_is_not_public_at_send_time_is_refused(
    app: FastAPI, admin_client: httpx.AsyncClient, receiver: Receiver
) -> None:
    """Registered while it was allowed (or while its name pointed elsewhere): the
    sender checks the address again and sends nothing to a loopback one."""
    endpoint_id = await register(admin_client, receiver)
    sender: Sender = app.state.outbox
    await sender.stop()  # this test's own sender, which allows no private target
    strict = Sender(app.state.db, {KIND: _sender(app, allow_private=False).deliver})
    await emit(app)
    await strict.deliver_due()
    assert receiver.all() == []
    [refused] = await _deliveries(admin_client, endpoint_id)
    assert refused["status_code"] is None
    assert refused["error"].startswith("refused: 127.0.0.1")
    assert refused["next_retry_at"] is not None
    sender.start()


def _sender(app: FastAPI, **changes: Any) -> WebhookSender:
    settings = app.state.settings
    service = app.state.webhooks
    options: dict[str, Any] = {
        "box": service.box,
        "schedule": settings.webhook_retry_schedule,
        "max_attempts": settings.webhook_max_attempts,
        "allow_private": settings.webhook_allow_private,
        "timeout": settings.webhook_timeout_seconds,
    }
    return WebhookSender(app.state.db, **(options | changes))


async def test_a_secret_sealed_under_the_previous_key_signs_and_is_sealed_again(
    app: FastAPI, admin_client: httpx.AsyncClient, receiver: Receiver, engine: AsyncEngine
) -> None:
    endpoint_id = await register(admin_client, receiver)
    sender: Sender = app.state.outbox
    await sender.stop()
    old_key = resolve_secret_key(app.state.settings)
    new_key = b"the rotated secret key, at least 32 bytes long"
    rotated = SecretBox(new_key, [old_key], info=BOX_INFO)
    await emit(app)
    await Sender(app.state.db, {KIND: _sender(app, box=rotated).deliver}).deliver_due()
    [received] = receiver.delivered()
    assert received.verified
    async with engine.connect() as connection:
        result = await connection.execute(text("SELECT secret FROM webhook_endpoints"))
        stored = result.scalar_one()
    secret, current = SecretBox(new_key, info=BOX_INFO).open(stored, uuid.UUID(endpoint_id))
    assert current
    assert secret == receiver.secret
    sender.start()


async def test_two_senders_deliver_each_attempt_once(
    app: FastAPI, admin_client: httpx.AsyncClient
) -> None:
    receivers = [Receiver() for _ in range(3)]
    for receiver in receivers:
        receiver.start()
    try:
        for receiver in receivers:
            await register(admin_client, receiver)
        sender: Sender = app.state.outbox
        await sender.stop()
        sent = [await emit(app, number=number) for number in range(10)]
        senders = [
            Sender(app.state.db, {KIND: _sender(app).deliver}, poll_seconds=0.01) for _ in range(2)
        ]
        for each in senders:
            each.start()
        try:
            await eventually(lambda: all(len(r.all()) == 10 for r in receivers), seconds=20)
            await asyncio.sleep(0.3)
        finally:
            for each in senders:
                await each.stop()
        for receiver in receivers:
            assert [item.webhook_id for item in receiver.all()] == sent  # once each, in order
            assert all(item.verified for item in receiver.all())
        sender.start()
    finally:
        for receiver in receivers:
            receiver.stop()


def test_the_wait_follows_the_schedule_with_jitter() -> None:
    schedule = (5.0, 30.0, 120.0)
    for attempt, seconds in [(1, 5.0), (2, 30.0), (3, 120.0), (4, 120.0), (9, 120.0)]:
        waits = {wait_after(attempt, schedule).total_seconds() for _ in range(50)}
        assert all(0.8 * seconds <= wait <= 1.2 * seconds for wait in waits)
        assert len(waits) > 1  # jittered
