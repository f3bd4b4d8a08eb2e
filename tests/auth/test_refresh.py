"""Refresh tokens: rotation, reuse detection, logout, expiry; stored only as hashes."""

from __future__ import annotations

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.auth.helpers import PASSWORD, bearer, register_and_login
from tests.conftest import login

REFRESH = "/api/v1/auth/refresh"
ME = "/api/v1/users/me"


async def _refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post(REFRESH, json={"refresh_token": token})


async def test_rotation_gives_a_working_new_pair(client: httpx.AsyncClient) -> None:
    _, first = await register_and_login(client, "ada")
    response = await _refresh(client, first["refresh_token"])
    assert response.status_code == 200, response.text
    second = response.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["token_type"] == "bearer"
    assert (await client.get(ME, headers=bearer(second["access_token"]))).status_code == 200
    third = await _refresh(client, second["refresh_token"])
    assert third.status_code == 200


async def test_reuse_kills_the_whole_family_but_not_other_logins(
    client: httpx.AsyncClient,
) -> None:
    _, stolen = await register_and_login(client, "ada")
    other_login = await login(client, "ada", PASSWORD)
    rotated = (await _refresh(client, stolen["refresh_token"])).json()

    reused = await _refresh(client, stolen["refresh_token"])
    assert reused.status_code == 401
    assert reused.headers["content-type"] == "application/problem+json"
    # The descendant issued by the legitimate rotation is dead too.
    assert (await _refresh(client, rotated["refresh_token"])).status_code == 401
    # Another login of the same user is a different family and lives on.
    assert (await _refresh(client, other_login["refresh_token"])).status_code == 200


async def test_logout_ends_that_login(client: httpx.AsyncClient) -> None:
    _, tokens = await register_and_login(client, "ada")
    other = await login(client, "ada", PASSWORD)
    response = await client.post(
        "/api/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]}
    )
    assert response.status_code == 204
    assert (await _refresh(client, tokens["refresh_token"])).status_code == 401
    assert (await _refresh(client, other["refresh_token"])).status_code == 200
    # Logging out an unknown token says nothing about it.
    unknown = await client.post("/api/v1/auth/logout", json={"refresh_token": "nope"})
    assert unknown.status_code == 204


async def test_expired_refresh_token(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    _, tokens = await register_and_login(client, "ada")
    async with engine.begin() as connection:
        await connection.execute(
            text("UPDATE refresh_tokens SET expires_at = now() - interval '1 second'")
        )
    assert (await _refresh(client, tokens["refresh_token"])).status_code == 401


async def test_tokens_are_stored_only_as_hashes(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    _, tokens = await register_and_login(client, "ada")
    async with engine.connect() as connection:
        stored = (await connection.execute(text("SELECT token_hash FROM refresh_tokens"))).scalars()
        hashes = list(stored)
    assert len(hashes) == 1
    assert tokens["refresh_token"] not in hashes
    assert len(hashes[0]) == 64


async def test_bad_refresh_bodies(client: httpx.AsyncClient) -> None:
    assert (await _refresh(client, "garbage")).status_code == 401
    missing = await client.post(REFRESH, json={})
    assert missing.status_code == 422
    extra = await client.post(REFRESH, json={"refresh_token": "x", "user_id": "y"})
    assert extra.status_code == 422
