"""A wrong `current_password` is a failed login of that account, and shares its throttle."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.auth.helpers import PASSWORD, bearer, register_and_login
from tests.conftest import login

TOKEN = "/api/v1/auth/token"
NEW = "another fine password"


async def _change(client: httpx.AsyncClient, url: str, token: str, current: str) -> httpx.Response:
    return await client.patch(
        url, headers=bearer(token), json={"password": NEW, "current_password": current}
    )


async def test_wrong_current_passwords_are_throttled_as_failed_logins(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    ada, tokens = await register_and_login(client, "ada")
    url, token = f"/api/v1/users/{ada['id']}", tokens["access_token"]
    for _ in range(5):
        wrong = await _change(client, url, token, "not my password at all")
        assert wrong.status_code == 403, wrong.text
    async with engine.connect() as connection:  # each refusal committed its failure
        assert await connection.scalar(text("SELECT count(*) FROM login_failures")) == 5

    # Past the limit: 429 even for the right password, here and at the token endpoint.
    blocked = await _change(client, url, token, PASSWORD)
    assert blocked.status_code == 429, blocked.text
    assert blocked.headers["content-type"] == "application/problem+json"
    assert 1 <= int(blocked.headers["retry-after"]) <= 900
    login_blocked = await client.post(TOKEN, data={"username": "ada", "password": PASSWORD})
    assert login_blocked.status_code == 429

    # Once the window has passed, the right password changes it.
    async with engine.begin() as connection:
        await connection.execute(
            text("UPDATE login_failures SET failed_at = failed_at - interval '15 minutes'")
        )
    assert (await _change(client, url, token, PASSWORD)).status_code == 200
    await login(client, "ada", NEW)


async def test_failed_logins_throttle_the_current_password(client: httpx.AsyncClient) -> None:
    ada, tokens = await register_and_login(client, "ada")
    for _ in range(5):
        response = await client.post(TOKEN, data={"username": "ada", "password": "wrong one!"})
        assert response.status_code == 401
    blocked = await _change(client, f"/api/v1/users/{ada['id']}", tokens["access_token"], PASSWORD)
    assert blocked.status_code == 429, blocked.text


async def test_racing_wrong_answers_never_exceed_the_limit(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """Guesses sent in parallel are counted one by one, under the account's lock."""
    ada, tokens = await register_and_login(client, "ada")
    url, token = f"/api/v1/users/{ada['id']}", tokens["access_token"]
    guesses = [_change(client, url, token, f"guess number {n}") for n in range(8)]
    logins = [client.post(TOKEN, data={"username": "ada", "password": "wrong"}) for _ in range(4)]
    responses = await asyncio.gather(*guesses, *logins)
    statuses = [response.status_code for response in responses]
    assert statuses.count(429) == 7, statuses
    async with engine.connect() as connection:
        assert await connection.scalar(text("SELECT count(*) FROM login_failures")) == 5


async def test_a_missing_current_password_is_no_guess(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    ada, tokens = await register_and_login(client, "ada")
    response = await client.patch(
        f"/api/v1/users/{ada['id']}", headers=bearer(tokens["access_token"]), json={"password": NEW}
    )
    assert response.status_code == 403
    async with engine.connect() as connection:
        assert await connection.scalar(text("SELECT count(*) FROM login_failures")) == 0
