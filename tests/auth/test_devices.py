"""The caller's sessions (devices): listed newest first, and each can be ended, its
tokens, access tokens included, dying at once."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import jwt
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.auth.helpers import PASSWORD, bearer, register_and_login

SESSIONS = "/api/v1/auth/sessions"
ME = "/api/v1/users/me"
REFRESH = "/api/v1/auth/refresh"


def _sid(tokens: dict[str, Any]) -> str:
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    return str(claims["sid"])


async def _login(client: httpx.AsyncClient, agent: str | bytes) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/auth/token",
        data={"username": "ada", "password": PASSWORD},
        headers=[(b"User-Agent", agent if isinstance(agent, bytes) else agent.encode())],
    )
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens


async def test_the_caller_sees_their_live_sessions_newest_first(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    _, first = await register_and_login(client, "ada")
    phone = await _login(client, "Phone/1.0")
    laptop = await _login(client, "Laptop/2.0")
    _, bob = await register_and_login(client, "bob")
    ended = await _login(client, "Old/0.1")
    await client.post("/api/v1/auth/logout", json={"refresh_token": ended["refresh_token"]})
    expired = await _login(client, "Expired/0.1")
    async with engine.begin() as connection:  # its tokens all expired: not live
        await connection.execute(
            text("UPDATE sessions SET expires_at = now() - interval '1 second' WHERE id = :id"),
            {"id": _sid(expired)},
        )

    response = await client.get(SESSIONS, headers=bearer(phone["access_token"]))

    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    items = response.json()["items"]
    assert [item["id"] for item in items] == [_sid(laptop), _sid(phone), _sid(first)]
    assert [item["current"] for item in items] == [False, True, False]
    assert set(items[0]) == {
        "id",
        "created_at",
        "last_used_at",
        "user_agent",
        "ip_address",
        "current",
    }
    assert items[0]["user_agent"] == "Laptop/2.0"
    assert items[0]["ip_address"] == "127.0.0.1"
    assert items[0]["created_at"].endswith("Z")
    bobs = (await client.get(SESSIONS, headers=bearer(bob["access_token"]))).json()["items"]
    assert [item["id"] for item in bobs] == [_sid(bob)]


async def test_a_user_agent_is_kept_as_the_text_the_client_sent(
    client: httpx.AsyncClient,
) -> None:
    """UTF-8 beyond ASCII reads as itself (not as Latin-1 mojibake); bytes that are no
    UTF-8 are kept as Latin-1, as they came."""
    await register_and_login(client, "ada")
    utf8 = await _login(client, "Brücke/1.0 (Zürich; 東京)".encode())
    latin1 = await _login(client, "Br\xfccke/2.0".encode("latin-1"))
    response = await client.get(SESSIONS, headers=bearer(utf8["access_token"]))
    assert response.status_code == 200, response.text
    agents = {item["id"]: item["user_agent"] for item in response.json()["items"]}
    assert agents[_sid(utf8)] == "Brücke/1.0 (Zürich; 東京)"
    assert agents[_sid(latin1)] == "Brücke/2.0"


async def test_a_refresh_uses_the_session_and_extends_it(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    _, tokens = await register_and_login(client, "ada")
    query = text("SELECT last_used_at, expires_at FROM sessions WHERE id = :id")
    async with engine.connect() as connection:
        before = (await connection.execute(query, {"id": _sid(tokens)})).one()
    # A read writes nothing to the session.
    assert (await client.get(ME, headers=bearer(tokens["access_token"]))).status_code == 200
    async with engine.connect() as connection:
        assert (await connection.execute(query, {"id": _sid(tokens)})).one() == before
    refreshed = await client.post(REFRESH, json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200
    async with engine.connect() as connection:
        after = (await connection.execute(query, {"id": _sid(tokens)})).one()
        token_expiry = await connection.scalar(
            text("SELECT max(expires_at) FROM refresh_tokens WHERE family_id = :id"),
            {"id": _sid(tokens)},
        )
    assert after.last_used_at > before.last_used_at
    assert after.expires_at > before.expires_at
    assert after.expires_at == token_expiry  # alive exactly as long as its newest token


async def test_ending_a_session_kills_its_tokens_at_once(client: httpx.AsyncClient) -> None:
    _, here = await register_and_login(client, "ada")
    stolen = await _login(client, "Stolen/1.0")
    as_here = bearer(here["access_token"])

    response = await client.delete(f"{SESSIONS}/{_sid(stolen)}", headers=as_here)

    assert response.status_code == 204, response.text
    # Its access token, seconds old, is refused now; so is its refresh token.
    assert (await client.get(ME, headers=bearer(stolen["access_token"]))).status_code == 401
    refreshed = await client.post(REFRESH, json={"refresh_token": stolen["refresh_token"]})
    assert refreshed.status_code == 401
    assert (await client.get(ME, headers=as_here)).status_code == 200
    items = (await client.get(SESSIONS, headers=as_here)).json()["items"]
    assert [item["id"] for item in items] == [_sid(here)]
    # Ended once; a second time it is no live session of the caller's.
    again = await client.delete(f"{SESSIONS}/{_sid(stolen)}", headers=as_here)
    assert again.status_code == 404


async def test_ending_ones_own_current_session_signs_out(client: httpx.AsyncClient) -> None:
    _, tokens = await register_and_login(client, "ada")
    as_ada = bearer(tokens["access_token"])
    assert (await client.delete(f"{SESSIONS}/{_sid(tokens)}", headers=as_ada)).status_code == 204
    assert (await client.get(ME, headers=as_ada)).status_code == 401
    assert (await client.get(SESSIONS, headers=as_ada)).status_code == 401


async def test_someone_elses_session_is_not_found(client: httpx.AsyncClient) -> None:
    _, ada = await register_and_login(client, "ada")
    _, bob = await register_and_login(client, "bob")
    as_ada = bearer(ada["access_token"])
    for session_id in (_sid(bob), str(uuid.uuid4())):
        response = await client.delete(f"{SESSIONS}/{session_id}", headers=as_ada)
        assert response.status_code == 404, response.text
        assert response.json()["code"] == "not-found"
    assert (await client.get(ME, headers=bearer(bob["access_token"]))).status_code == 200
    bad = await client.delete(f"{SESSIONS}/not-a-uuid", headers=as_ada)
    assert bad.status_code == 422


async def test_sessions_need_a_caller(client: httpx.AsyncClient) -> None:
    assert (await client.get(SESSIONS)).status_code == 401
    response = await client.delete(f"{SESSIONS}/{uuid.uuid4()}")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
