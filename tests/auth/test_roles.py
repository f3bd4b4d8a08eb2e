"""Who may do what: admins and users kept apart, no mass assignment, the last admin."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.auth.helpers import PASSWORD, app_with, bearer, register, register_and_login
from tests.conftest import ADMIN_PASSWORD, Admin, login
from users_api.config import Settings

USERS = "/api/v1/users"


async def test_users_see_only_themselves(client: httpx.AsyncClient) -> None:
    ada, ada_tokens = await register_and_login(client, "ada")
    bob = await register(client, "bob")
    as_ada = bearer(ada_tokens["access_token"])
    assert (await client.get(f"{USERS}/{ada['id']}", headers=as_ada)).status_code == 200
    for method, body in (("GET", None), ("PATCH", {"full_name": "x"}), ("DELETE", None)):
        response = await client.request(method, f"{USERS}/{bob['id']}", headers=as_ada, json=body)
        assert response.status_code == 404, (method, response.text)
    listing = await client.get(USERS, headers=as_ada)
    assert listing.status_code == 403
    assert (await client.get(USERS)).status_code == 401
    # Who may list is answered before what the cursor says.
    bad_cursor = {"cursor": "not-a-cursor"}
    assert (await client.get(USERS, params=bad_cursor, headers=as_ada)).status_code == 403
    assert (await client.get(USERS, params=bad_cursor)).status_code == 401


async def test_anonymous_cannot_read_or_change(client: httpx.AsyncClient) -> None:
    bob = await register(client, "bob")
    for method in ("GET", "PATCH", "DELETE"):
        response = await client.request(method, f"{USERS}/{bob['id']}", json={})
        assert response.status_code == 401, method
        assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("field", ["is_admin", "is_active"])
async def test_non_admins_cannot_set_admin_fields(
    field: str, client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    body = {"email": "eve@example.com", "username": "eve", "password": PASSWORD, field: True}
    assert (await client.post(USERS, json=body)).status_code == 403
    ada, tokens = await register_and_login(client, "ada")
    as_ada = bearer(tokens["access_token"])
    assert (await client.post(USERS, json=body, headers=as_ada)).status_code == 403
    response = await client.patch(f"{USERS}/{ada['id']}", json={field: True}, headers=as_ada)
    assert response.status_code == 403
    # Nothing was set: no eve, and ada as registered.
    async with engine.connect() as connection:
        rows = (
            await connection.execute(
                text("SELECT username, is_admin, is_active, version FROM users")
            )
        ).all()
    assert [tuple(row) for row in rows] == [("ada", False, True, 1)]


async def test_admins_may_set_admin_fields(admin_client: httpx.AsyncClient) -> None:
    response = await admin_client.post(
        USERS,
        json={
            "email": "op@example.com",
            "username": "operator",
            "password": PASSWORD,
            "is_admin": True,
        },
    )
    assert response.status_code == 201, response.text
    assert response.json()["is_admin"] is True


@pytest.mark.parametrize(
    "extra",
    [
        {"id": "01900000-0000-7000-8000-000000000000"},
        {"version": 7},
        {"password_hash": "x"},
        {"created_at": "2020-01-01T00:00:00Z"},
        {"auth_version": 3},
    ],
)
async def test_mass_assignment_is_refused(extra: dict[str, Any], client: httpx.AsyncClient) -> None:
    body = {"email": "eve@example.com", "username": "eve", "password": PASSWORD} | extra
    response = await client.post(USERS, json=body)
    assert response.status_code == 422
    ada, tokens = await register_and_login(client, "ada")
    patched = await client.patch(
        f"{USERS}/{ada['id']}", json=extra, headers=bearer(tokens["access_token"])
    )
    assert patched.status_code == 422


async def test_own_password_change_needs_the_current_one(client: httpx.AsyncClient) -> None:
    ada, tokens = await register_and_login(client, "ada")
    url, as_ada = f"{USERS}/{ada['id']}", bearer(tokens["access_token"])
    new = {"password": "another fine password"}
    assert (await client.patch(url, json=new, headers=as_ada)).status_code == 403
    wrong = new | {"current_password": "not my password"}
    assert (await client.patch(url, json=wrong, headers=as_ada)).status_code == 403
    await login(client, "ada", PASSWORD)  # the refusals changed nothing
    right = new | {"current_password": PASSWORD}
    assert (await client.patch(url, json=right, headers=as_ada)).status_code == 200
    await login(client, "ada", "another fine password")


async def test_admin_resets_a_password_without_the_current_one(
    client: httpx.AsyncClient, admin_client: httpx.AsyncClient
) -> None:
    ada = await register(client, "ada")
    response = await admin_client.patch(
        f"{USERS}/{ada['id']}", json={"password": "reset by the admin"}
    )
    assert response.status_code == 200
    login = await client.post(
        "/api/v1/auth/token", data={"username": "ada", "password": "reset by the admin"}
    )
    assert login.status_code == 200


async def test_admin_changing_own_password_needs_the_current_one(
    admin_client: httpx.AsyncClient, admin: Admin
) -> None:
    url, new = f"{USERS}/{admin.id}", {"password": "a new admin password"}
    assert (await admin_client.patch(url, json=new)).status_code == 403
    await login(admin_client, admin.username, ADMIN_PASSWORD)  # unchanged
    right = new | {"current_password": ADMIN_PASSWORD}
    response = await admin_client.patch(url, json=right)
    assert response.status_code == 200, response.text
    await login(admin_client, admin.username, "a new admin password")


async def test_registration_closed(settings: Settings, admin_client: httpx.AsyncClient) -> None:
    body = {"email": "eve@example.com", "username": "eve", "password": PASSWORD}
    async with app_with(settings, allow_registration=False) as closed:
        assert (await closed.post(USERS, json=body)).status_code == 401
        token = admin_client.headers["Authorization"]
        created = await closed.post(USERS, json=body, headers={"Authorization": token})
        assert created.status_code == 201


async def test_the_last_active_admin_stays(admin_client: httpx.AsyncClient, admin: Admin) -> None:
    url = f"{USERS}/{admin.id}"
    for change in ({"is_admin": False}, {"is_active": False}):
        response = await admin_client.patch(url, json=change)
        assert response.status_code == 409, response.text
        assert response.headers["content-type"] == "application/problem+json"
    assert (await admin_client.delete(url)).status_code == 409
    # With a second admin, the first may step down.
    second = await admin_client.post(
        USERS,
        json={
            "email": "op@example.com",
            "username": "operator",
            "password": PASSWORD,
            "is_admin": True,
        },
    )
    assert second.status_code == 201
    assert (await admin_client.patch(url, json={"is_admin": False})).status_code == 200


async def test_two_admins_demoting_each_other_leave_one(
    client: httpx.AsyncClient, admin_client: httpx.AsyncClient, admin: Admin, engine: AsyncEngine
) -> None:
    second = await admin_client.post(
        USERS,
        json={"email": "op@example.com", "username": "operator", "password": PASSWORD},
    )
    assert second.status_code == 201
    second_id = second.json()["id"]
    op_tokens = (
        await client.post("/api/v1/auth/token", data={"username": "operator", "password": PASSWORD})
    ).json()
    as_op = bearer(op_tokens["access_token"])
    for _ in range(5):
        async with engine.begin() as connection:
            await connection.execute(text("UPDATE users SET is_admin = true"))
        results = await asyncio.gather(
            admin_client.patch(f"{USERS}/{second_id}", json={"is_admin": False}),
            client.patch(f"{USERS}/{admin.id}", json={"is_admin": False}, headers=as_op),
        )
        statuses = sorted(response.status_code for response in results)
        # One demotion wins; the other is refused: 409 (last admin), or 404 when the
        # winner had already demoted the loser, who as a non-admin no longer sees others.
        assert statuses in ([200, 404], [200, 409]), [r.text for r in results]
        async with engine.connect() as connection:
            admins = await connection.scalar(
                text("SELECT count(*) FROM users WHERE is_admin AND is_active")
            )
        assert admins == 1
