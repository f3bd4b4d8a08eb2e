"""Each change of state has its event, committed with it: actor, subject, request id,
client address and the names of what changed."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pyotp
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.auth.helpers import PASSWORD, bearer, register, register_and_login
from tests.conftest import ADMIN_PASSWORD, Admin, asgi_client, login
from tests.events.helpers import events, one_event
from users_api.db.database import Unit
from users_api.users.service import UserService

USERS = "/api/v1/users"
REQUEST_ID = "audit-test-1"


def _as(tokens: dict[str, Any]) -> dict[str, str]:
    return bearer(tokens["access_token"]) | {"X-Request-ID": REQUEST_ID}


def _is(event: dict[str, Any], *, actor: tuple[str, Any], subject: Any) -> None:
    assert (event["actor_type"], event["actor_id"]) == (
        actor[0],
        None if actor[1] is None else uuid.UUID(str(actor[1])),
    )
    assert event["subject_type"] == "user"
    assert event["subject_id"] == (None if subject is None else uuid.UUID(str(subject)))


async def test_a_sign_up_is_created_by_the_new_user_with_request_id_and_address(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    response = await client.post(
        USERS,
        json={"email": "ada@example.com", "username": "ada", "password": PASSWORD},
        headers={"X-Request-ID": REQUEST_ID},
    )
    assert response.status_code == 201, response.text
    user_id = response.json()["id"]
    event = await one_event(engine, "user.created")
    _is(event, actor=("user", user_id), subject=user_id)
    assert event["request_id"] == REQUEST_ID
    assert event["ip_address"] == "127.0.0.1"  # httpx's ASGI transport's client
    assert event["data"] == {"is_admin": False, "is_active": True}
    assert event["occurred_at"] is not None


async def test_start_up_and_the_cli_act_as_the_system(
    app: FastAPI, admin: Admin, engine: AsyncEngine
) -> None:
    created = await one_event(engine, "user.created")
    _is(created, actor=("system", None), subject=admin.id)
    assert created["request_id"] is None
    assert created["ip_address"] is None
    assert created["data"] == {"is_admin": True, "is_active": True}
    users: UserService = app.state.users
    async with asgi_client(app) as client:
        ada = await register(client, "ada")
    await users.set_admin("ada", admin=True)
    promoted = await one_event(engine, "user.updated")
    _is(promoted, actor=("system", None), subject=ada["id"])
    assert promoted["data"] == {"fields": ["is_admin"]}


async def test_an_admin_creates_updates_deactivates_and_deletes(
    admin_client: httpx.AsyncClient, admin: Admin, engine: AsyncEngine
) -> None:
    headers = {"X-Request-ID": REQUEST_ID}
    response = await admin_client.post(
        USERS,
        json={"email": "bob@example.com", "username": "bob", "password": PASSWORD},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    bo = response.json()["id"]
    created = (await events(engine, "user.created"))[-1]
    _is(created, actor=("user", admin.id), subject=bo)

    name = await admin_client.patch(f"{USERS}/{bo}", json={"full_name": "Bo"}, headers=headers)
    assert name.status_code == 200, name.text
    updated = await one_event(engine, "user.updated")
    _is(updated, actor=("user", admin.id), subject=bo)
    assert updated["data"] == {"fields": ["full_name"]}
    assert updated["request_id"] == REQUEST_ID
    assert updated["ip_address"] == "127.0.0.1"

    same = await admin_client.patch(f"{USERS}/{bo}", json={"full_name": "Bo"})
    assert same.status_code == 200, same.text
    assert len(await events(engine, "user.updated")) == 1  # nothing changed: no event

    off = await admin_client.patch(
        f"{USERS}/{bo}", json={"is_active": False, "username": "bobby"}, headers=headers
    )
    assert off.status_code == 200, off.text
    updated = (await events(engine, "user.updated"))[-1]
    assert updated["data"] == {"fields": ["is_active", "username"]}
    deactivated = await one_event(engine, "user.deactivated")
    _is(deactivated, actor=("user", admin.id), subject=bo)

    on = await admin_client.patch(f"{USERS}/{bo}", json={"is_active": True})
    assert on.status_code == 200, on.text
    _is(await one_event(engine, "user.activated"), actor=("user", admin.id), subject=bo)

    verified = await admin_client.patch(f"{USERS}/{bo}", json={"email_verified": True})
    assert verified.status_code == 200, verified.text
    _is(await one_event(engine, "user.email_verified"), actor=("user", admin.id), subject=bo)

    gone = await admin_client.delete(f"{USERS}/{bo}", headers=headers)
    assert gone.status_code == 204, gone.text
    deleted = await one_event(engine, "user.deleted")
    _is(deleted, actor=("user", admin.id), subject=bo)
    assert deleted["request_id"] == REQUEST_ID


async def test_own_password_change_is_password_changed_not_updated(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    ada, tokens = await register_and_login(client, "ada")
    response = await client.patch(
        f"{USERS}/{ada['id']}",
        json={"password": "an entirely new passphrase", "current_password": PASSWORD},
        headers=_as(tokens),
    )
    assert response.status_code == 200, response.text
    changed = await one_event(engine, "user.password_changed")
    _is(changed, actor=("user", ada["id"]), subject=ada["id"])
    assert changed["data"] == {}
    assert changed["request_id"] == REQUEST_ID
    assert await events(engine, "user.updated") == []


async def test_reset_and_verification_are_the_token_holders(
    app: FastAPI, client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """What the mailed-token routes call (`accounts.service`): the user service's own
    methods, with the token's user found in the same transaction."""
    ada = await register(client, "ada")
    users: UserService = app.state.users

    async def find(unit: Unit) -> uuid.UUID:
        return uuid.UUID(ada["id"])

    await users.set_password(find, "an entirely new passphrase")
    reset = await one_event(engine, "user.password_reset")
    _is(reset, actor=("user", ada["id"]), subject=ada["id"])
    assert await events(engine, "user.password_changed") == []
    await users.mark_verified(find)
    _is(
        await one_event(engine, "user.email_verified"), actor=("user", ada["id"]), subject=ada["id"]
    )


async def test_logins_succeed_fail_and_are_throttled(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    ada = await register(client, "ada")
    await login(client, "ada", PASSWORD)
    succeeded = await one_event(engine, "auth.login_succeeded")
    _is(succeeded, actor=("user", ada["id"]), subject=ada["id"])
    assert set(succeeded["data"]) == {"session_id"}
    assert succeeded["ip_address"] == "127.0.0.1"

    token = "/api/v1/auth/token"
    headers = {"X-Request-ID": REQUEST_ID}
    wrong = await client.post(token, data={"username": "ada", "password": "nope"}, headers=headers)
    assert wrong.status_code == 401
    failed = await one_event(engine, "auth.login_failed")
    _is(failed, actor=("user", None), subject=ada["id"])  # not an act of Ada's
    assert failed["data"] == {"reason": "wrong_password"}
    assert failed["request_id"] == REQUEST_ID

    nobody = await client.post(token, data={"username": "nobody", "password": "nope"})
    assert nobody.status_code == 401
    unknown = (await events(engine, "auth.login_failed"))[-1]
    _is(unknown, actor=("user", None), subject=None)
    assert unknown["data"] == {"reason": "unknown_user"}

    for _ in range(6):  # past LOGIN_FAILURES_PER_ACCOUNT (5)
        last = await client.post(token, data={"username": "ada", "password": "nope"})
    assert last.status_code == 429
    throttled = await events(engine, "auth.login_throttled")
    assert throttled
    _is(throttled[-1], actor=("user", None), subject=ada["id"])


async def test_refresh_reuse_logout_and_ended_sessions(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    ada, tokens = await register_and_login(client, "ada")
    refresh = "/api/v1/auth/refresh"
    rotated = await client.post(refresh, json={"refresh_token": tokens["refresh_token"]})
    assert rotated.status_code == 200
    reused = await client.post(refresh, json={"refresh_token": tokens["refresh_token"]})
    assert reused.status_code == 401
    event = await one_event(engine, "auth.refresh_reused")
    _is(event, actor=("user", ada["id"]), subject=ada["id"])
    assert set(event["data"]) == {"session_id"}

    second = await login(client, "ada", PASSWORD)
    out = await client.post("/api/v1/auth/logout", json={"refresh_token": second["refresh_token"]})
    assert out.status_code == 204
    again = await client.post(
        "/api/v1/auth/logout", json={"refresh_token": second["refresh_token"]}
    )
    assert again.status_code == 204
    ended = await one_event(engine, "auth.session_ended")  # once: the second ended nothing
    _is(ended, actor=("user", ada["id"]), subject=ada["id"])

    third = await login(client, "ada", PASSWORD)
    await login(client, "ada", PASSWORD)
    sessions = await client.get("/api/v1/auth/sessions", headers=bearer(third["access_token"]))
    other = next(s for s in sessions.json()["items"] if not s["current"])
    response = await client.delete(
        f"/api/v1/auth/sessions/{other['id']}", headers=bearer(third["access_token"])
    )
    assert response.status_code == 204, response.text
    assert (await events(engine, "auth.session_ended"))[-1]["data"] == {"session_id": other["id"]}
    everything = await client.post("/api/v1/auth/logout-all", headers=bearer(third["access_token"]))
    assert everything.status_code == 204, everything.text
    assert (await events(engine, "auth.session_ended"))[-1]["data"] == {"all": True}


async def test_admin_login_is_one_event_per_login(
    admin_client: httpx.AsyncClient, admin: Admin, engine: AsyncEngine
) -> None:
    succeeded = await one_event(engine, "auth.login_succeeded")
    _is(succeeded, actor=("user", admin.id), subject=admin.id)
    assert ADMIN_PASSWORD not in str(succeeded)


async def test_an_admins_mfa_reset_is_the_admins(
    app: FastAPI, admin_client: httpx.AsyncClient, admin: Admin, engine: AsyncEngine
) -> None:
    async with asgi_client(app) as client:
        ada, tokens = await register_and_login(client, "ada")
        as_ada = bearer(tokens["access_token"])
        enrolment = await client.post(
            "/api/v1/auth/mfa/totp", json={"current_password": PASSWORD}, headers=as_ada
        )
        assert enrolment.status_code == 200, enrolment.text
        code = pyotp.TOTP(enrolment.json()["secret"]).now()
        confirmed = await client.post(
            "/api/v1/auth/mfa/totp/confirm", json={"code": code}, headers=as_ada
        )
        assert confirmed.status_code == 200, confirmed.text
    response = await admin_client.delete(f"{USERS}/{ada['id']}/mfa")
    assert response.status_code == 204, response.text
    disabled = await one_event(engine, "user.mfa_disabled")
    _is(disabled, actor=("user", admin.id), subject=ada["id"])
    again = await admin_client.delete(f"{USERS}/{ada['id']}/mfa")
    assert again.status_code == 204, again.text
    assert len(await events(engine, "user.mfa_disabled")) == 1  # it was off: no change
