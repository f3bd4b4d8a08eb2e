"""Each login is a session: its access tokens carry its id, and die the moment it ends."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.auth.helpers import PASSWORD, bearer, register_and_login
from tests.conftest import login
from users_api.config import Settings

ME = "/api/v1/users/me"
REFRESH = "/api/v1/auth/refresh"


def _sid(tokens: dict[str, Any]) -> uuid.UUID:
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    return uuid.UUID(claims["sid"])


async def _sessions(engine: AsyncEngine) -> dict[uuid.UUID, dict[str, Any]]:
    async with engine.connect() as connection:
        rows = await connection.execute(text("SELECT * FROM sessions"))
        return {row.id: row._asdict() for row in rows}


async def _works(client: httpx.AsyncClient, tokens: dict[str, Any]) -> bool:
    response = await client.get(ME, headers=bearer(tokens["access_token"]))
    assert response.status_code in (200, 401), response.text
    return response.status_code == 200


async def test_a_login_is_a_session_its_tokens_carry(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    user, first = await register_and_login(client, "ada")
    second = await client.post(
        "/api/v1/auth/token",
        data={"username": "ada", "password": PASSWORD},
        headers={"User-Agent": "Phone/1.0 \x00" + "x" * 600},
    )
    assert second.status_code == 200, second.text
    refreshed = await client.post(REFRESH, json={"refresh_token": first["refresh_token"]})

    assert _sid(first) != _sid(second.json())
    assert _sid(refreshed.json()) == _sid(first)  # a refresh stays in its session
    sessions = await _sessions(engine)
    assert set(sessions) == {_sid(first), _sid(second.json())}
    session = sessions[_sid(first)]
    assert str(session["user_id"]) == user["id"]
    assert session["ip_address"] == "127.0.0.1"  # the test transport's peer
    assert session["user_agent"].startswith("python-httpx/")
    assert session["ended_at"] is None
    assert session["last_used_at"] > session["created_at"]  # the refresh used it
    phone = sessions[_sid(second.json())]["user_agent"]
    assert phone.startswith("Phone/1.0 x")  # without the NUL
    assert len(phone) == 512
    async with engine.connect() as connection:
        families = await connection.execute(text("SELECT DISTINCT family_id FROM refresh_tokens"))
        assert set(families.scalars()) == set(sessions)


@pytest.mark.parametrize("how", ["logout", "reuse"])
async def test_ending_a_session_kills_its_access_tokens_at_once(
    client: httpx.AsyncClient, engine: AsyncEngine, how: str
) -> None:
    ada, doomed = await register_and_login(client, "ada")
    other = await login(client, "ada", PASSWORD)  # another device: lives on
    rotated = (await client.post(REFRESH, json={"refresh_token": doomed["refresh_token"]})).json()
    assert await _works(client, doomed)
    assert await _works(client, rotated)

    if how == "logout":
        response = await client.post(
            "/api/v1/auth/logout", json={"refresh_token": rotated["refresh_token"]}
        )
        assert response.status_code == 204
    else:  # a copy of the used-up refresh token comes back: theft
        response = await client.post(REFRESH, json={"refresh_token": doomed["refresh_token"]})
        assert response.status_code == 401

    for dead in (doomed, rotated):  # not in 15 minutes: now
        assert not await _works(client, dead)
        as_dead = bearer(dead["access_token"])
        patched = await client.patch(
            f"/api/v1/users/{ada['id']}", headers=as_dead, json={"full_name": "Ghost"}
        )
        assert patched.status_code == 401
        listed = await client.get("/api/v1/users", headers=as_dead)
        assert listed.status_code == 401  # not signed in, before "not an admin"
        out = await client.post("/api/v1/auth/logout-all", headers=as_dead)
        assert out.status_code == 401
    refreshed = await client.post(REFRESH, json={"refresh_token": rotated["refresh_token"]})
    assert refreshed.status_code == 401
    assert await _works(client, other)
    assert (await client.post(REFRESH, json={"refresh_token": other["refresh_token"]})).is_success
    sessions = await _sessions(engine)
    assert sessions[_sid(doomed)]["ended_at"] is not None
    assert sessions[_sid(other)]["ended_at"] is None


@pytest.mark.parametrize("how", ["logout-all", "password"])
async def test_every_session_of_the_user_ends(
    client: httpx.AsyncClient, engine: AsyncEngine, how: str
) -> None:
    ada, tokens = await register_and_login(client, "ada")
    other = await login(client, "ada", PASSWORD)
    _, bob = await register_and_login(client, "bob")
    as_ada = bearer(tokens["access_token"])
    if how == "logout-all":
        response = await client.post("/api/v1/auth/logout-all", headers=as_ada)
    else:
        response = await client.patch(
            f"/api/v1/users/{ada['id']}",
            headers=as_ada,
            json={"password": "a brand new password", "current_password": PASSWORD},
        )
    assert response.is_success, response.text
    sessions = await _sessions(engine)
    assert sessions[_sid(tokens)]["ended_at"] is not None
    assert sessions[_sid(other)]["ended_at"] is not None
    assert sessions[_sid(bob)]["ended_at"] is None
    assert not await _works(client, tokens)
    assert not await _works(client, other)
    assert await _works(client, bob)


async def test_a_token_must_name_a_live_session_of_its_user(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    _, ada = await register_and_login(client, "ada")
    _, bob = await register_and_login(client, "bob")
    assert settings.secret_key is not None
    key = settings.secret_key.get_secret_value().encode()
    claims = jwt.decode(ada["access_token"], options={"verify_signature": False})

    def forged(**changes: Any) -> dict[str, str]:
        payload = {name: value for name, value in (claims | changes).items() if value is not None}
        return bearer(jwt.encode(payload, key, algorithm="HS256"))

    assert (await client.get(ME, headers=forged())).status_code == 200  # the key is ours
    for headers in (
        forged(sid=None),  # no session at all: a token issued before sessions
        forged(sid="not-a-uuid"),
        forged(sid=str(uuid.uuid4())),  # no such session
        forged(sid=str(_sid(bob))),  # a live session, of someone else
    ):
        response = await client.get(ME, headers=headers)
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"] == "Bearer"
