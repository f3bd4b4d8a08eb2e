"""An event exists exactly when its change does: a failure after the change's statement
(in the same transaction) leaves neither; and no event ever holds a secret."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pyotp
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.auth.helpers import PASSWORD, bearer, register, register_and_login
from tests.conftest import ADMIN_PASSWORD, Admin, login
from tests.events.helpers import events, one_event
from users_api.db.database import Unit
from users_api.events.writer import Event, EventWriter

USERS = "/api/v1/users"


@pytest.fixture
async def refusing_trigger(engine: AsyncEngine) -> AsyncIterator[None]:
    """Events of type `user.updated` or `user.deleted` fail in the database, as any
    statement after the change's may."""
    async with engine.begin() as connection:
        await connection.execute(
            text(
                """
                CREATE FUNCTION refuse_event() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN RAISE EXCEPTION 'refused by the test'; END $$
                """
            )
        )
        await connection.execute(
            text(
                "CREATE TRIGGER refuse_event BEFORE INSERT ON events FOR EACH ROW "
                "WHEN (NEW.type IN ('user.updated', 'user.deleted')) "
                "EXECUTE FUNCTION refuse_event()"
            )
        )
    yield
    async with engine.begin() as connection:
        await connection.execute(text("DROP TRIGGER refuse_event ON events"))
        await connection.execute(text("DROP FUNCTION refuse_event()"))


async def _full_name(engine: AsyncEngine, user_id: str) -> Any:
    async with engine.connect() as connection:
        result = await connection.execute(
            text("SELECT full_name FROM users WHERE id = :id"), {"id": user_id}
        )
        return result.scalar_one_or_none()


@pytest.mark.usefixtures("refusing_trigger")
async def test_a_failed_event_rolls_its_change_back(
    admin_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    ada = await register(admin_client, "ada")
    response = await admin_client.patch(f"{USERS}/{ada['id']}", json={"full_name": "Ada L"})
    assert response.status_code == 500
    assert await _full_name(engine, ada["id"]) is None  # the change is not there
    assert await events(engine, "user.updated") == []
    gone = await admin_client.delete(f"{USERS}/{ada['id']}")
    assert gone.status_code == 500
    assert await _full_name(engine, ada["id"]) is None
    assert len(await events(engine, "user.created")) == 2  # the admin's and ada's: still there
    assert await events(engine, "user.deleted") == []
    async with engine.connect() as connection:
        count = await connection.scalar(text("SELECT count(*) FROM users WHERE username = 'ada'"))
    assert count == 1


async def test_a_failing_subscriber_rolls_the_change_and_its_event_back(
    app: FastAPI, admin_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """A subscriber runs in the event's transaction: what it writes commits with it, and
    its failure undoes both (the webhook fan-out's guarantee)."""
    writer: EventWriter = app.state.events
    seen: list[Event] = []

    async def subscriber(unit: Unit, event: Event) -> None:
        seen.append(event)
        if event.type == "user.updated":
            raise RuntimeError("refused by the test")

    writer.subscribe(subscriber)
    try:
        ada = await register(admin_client, "ada")
        response = await admin_client.patch(f"{USERS}/{ada['id']}", json={"full_name": "Ada L"})
    finally:
        writer.unsubscribe(subscriber)
    assert response.status_code == 500
    assert await _full_name(engine, ada["id"]) is None
    assert await events(engine, "user.updated") == []
    assert [event.type for event in seen] == ["user.created", "user.updated"]
    created = (await events(engine, "user.created"))[-1]
    assert seen[0].id == created["id"]
    assert seen[0].as_json()["subject"] == {"type": "user", "id": ada["id"]}


async def test_mfa_on_and_off(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    ada, tokens = await register_and_login(client, "ada")
    as_ada = bearer(tokens["access_token"])
    enrolment = await client.post(
        "/api/v1/auth/mfa/totp", json={"current_password": PASSWORD}, headers=as_ada
    )
    assert enrolment.status_code == 200, enrolment.text
    totp = pyotp.TOTP(enrolment.json()["secret"])
    confirmed = await client.post(
        "/api/v1/auth/mfa/totp/confirm", json={"code": totp.now()}, headers=as_ada
    )
    assert confirmed.status_code == 200, confirmed.text
    enabled = await one_event(engine, "user.mfa_enabled")
    assert (enabled["actor_type"], str(enabled["actor_id"])) == ("user", ada["id"])
    assert str(enabled["subject_id"]) == ada["id"]
    assert enabled["data"] == {}
    assert await events(engine, "user.updated") == []
    # The two-step sign-in: a wrong code fails, the right one succeeds.
    step = await client.post("/api/v1/auth/token", data={"username": "ada", "password": PASSWORD})
    mfa_token = step.json()["mfa_token"]
    wrong_code = f"{(int(totp.now()) + 1) % 1_000_000:06d}"
    wrong = await client.post(
        "/api/v1/auth/mfa/verify", json={"mfa_token": mfa_token, "code": wrong_code}
    )
    assert wrong.status_code in (400, 401, 403), wrong.text
    failed = await one_event(engine, "auth.login_failed")
    assert failed["data"] == {"reason": "wrong_code"}
    assert (failed["actor_type"], failed["actor_id"], str(failed["subject_id"])) == (
        "user",
        None,
        ada["id"],
    )
    # the confirmation's code is used up: the recovery codes sign in too
    recovery = confirmed.json()["recovery_codes"][0]
    right = await client.post(
        "/api/v1/auth/mfa/verify", json={"mfa_token": mfa_token, "code": recovery}
    )
    assert right.status_code == 200, right.text
    succeeded = (await events(engine, "auth.login_succeeded"))[-1]
    assert succeeded["data"]["mfa"] is True
    off = await client.request(
        "DELETE",
        "/api/v1/auth/mfa",
        json={"current_password": PASSWORD, "code": confirmed.json()["recovery_codes"][1]},
        headers=as_ada,
    )
    assert off.status_code == 204, off.text
    disabled = await one_event(engine, "user.mfa_disabled")
    assert str(disabled["subject_id"]) == ada["id"]


async def test_no_event_holds_a_secret(
    admin_client: httpx.AsyncClient, admin: Admin, engine: AsyncEngine
) -> None:
    """Every kind of change, then the whole table searched for what was secret in it."""
    ada, tokens = await register_and_login(admin_client, "ada")
    new_password = "an entirely new passphrase"
    changed = await admin_client.patch(
        f"{USERS}/{ada['id']}",
        json={"password": new_password, "current_password": PASSWORD},
        headers=bearer(tokens["access_token"]),
    )
    assert changed.status_code == 200, changed.text
    fresh = await login(admin_client, "ada", new_password)
    await admin_client.post("/api/v1/auth/token", data={"username": "ada", "password": "guess"})
    await admin_client.post("/api/v1/auth/refresh", json={"refresh_token": fresh["refresh_token"]})
    await admin_client.post("/api/v1/auth/refresh", json={"refresh_token": fresh["refresh_token"]})
    async with engine.connect() as connection:
        hashes = (await connection.execute(text("SELECT password_hash FROM users"))).scalars()
        secrets = [*hashes, PASSWORD, new_password, ADMIN_PASSWORD, "guess"]
        secrets += [tokens["access_token"], tokens["refresh_token"], fresh["refresh_token"]]
        rows = (await connection.execute(text("SELECT to_jsonb(events) FROM events"))).scalars()
        dumped = json.dumps(list(rows))
    assert len(await events(engine)) >= 8
    for secret in secrets:
        assert secret not in dumped


async def test_the_writer_refuses_data_that_names_a_secret(
    app: FastAPI, admin: Admin, engine: AsyncEngine
) -> None:
    writer: EventWriter = app.state.events
    from users_api.events.writer import SYSTEM

    async def write(unit: Unit) -> None:
        await writer.write(
            unit,
            "user.updated",
            actor=SYSTEM,
            subject_type="user",
            subject_id=admin.id,
            data={"fields": ["x"], "nested": {"password": "x"}},
        )

    with pytest.raises(ValueError, match="password"):
        await app.state.db.run(write)

    async def unknown(unit: Unit) -> None:
        await writer.write(
            unit, "user.exploded", actor=SYSTEM, subject_type="user", subject_id=None
        )

    with pytest.raises(ValueError, match="unknown event type"):
        await app.state.db.run(unknown)
    assert await events(engine, "user.updated") == []
