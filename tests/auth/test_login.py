"""Failed logins: one answer for every failure, and throttling kept in PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from ipaddress import ip_network
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.auth.helpers import PASSWORD, app_with, register
from tests.conftest import login
from tests.resilience.helpers import wait_until_blocked
from users_api.config import Settings

TOKEN = "/api/v1/auth/token"


async def _attempt(
    client: httpx.AsyncClient, username: str, password: str, *, forwarded_for: str | None = None
) -> httpx.Response:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return await client.post(
        TOKEN, data={"username": username, "password": password}, headers=headers
    )


def _comparable(response: httpx.Response) -> tuple[int, dict[str, Any], dict[str, str]]:
    """The answer less what differs for every request: its date and id."""
    varying = {"date", "content-length", "x-request-id"}
    headers = {k: v for k, v in response.headers.items() if k not in varying}
    body = response.json()
    assert body.pop("request_id") == response.headers["x-request-id"]
    return response.status_code, body, headers


async def test_same_answer_for_every_failure(
    client: httpx.AsyncClient, admin_client: httpx.AsyncClient
) -> None:
    await register(client, "ada")
    inactive = await register(client, "bob")
    response = await admin_client.patch(
        f"/api/v1/users/{inactive['id']}", json={"is_active": False}
    )
    assert response.status_code == 200

    wrong_password = await _attempt(client, "ada", "not the password at all")
    unknown_user = await _attempt(client, "nobody", PASSWORD)
    inactive_user = await _attempt(client, "bob", PASSWORD)

    assert wrong_password.status_code == 401
    assert wrong_password.headers["content-type"] == "application/problem+json"
    assert _comparable(wrong_password) == _comparable(unknown_user) == _comparable(inactive_user)


async def test_missing_form_fields_are_422(client: httpx.AsyncClient) -> None:
    response = await client.post(TOKEN, data={"username": "ada"})
    assert response.status_code == 422
    assert response.json()["errors"]


async def test_account_throttle_blocks_even_the_right_password(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    await register(client, "ada")
    for _ in range(5):
        assert (await _attempt(client, "ada", "wrong password here")).status_code == 401
    blocked = await _attempt(client, "ada", PASSWORD)
    assert blocked.status_code == 429, blocked.text
    retry_after = int(blocked.headers["retry-after"])
    assert 1 <= retry_after <= 900
    assert blocked.headers["content-type"] == "application/problem+json"
    # Other accounts from the same address are not affected.
    await register(client, "bob")
    await login(client, "bob", PASSWORD)

    # Once the window has passed (moved back in time rather than waited for), it opens.
    async with engine.begin() as connection:
        await connection.execute(
            text("UPDATE login_failures SET failed_at = failed_at - interval '15 minutes'")
        )
    await login(client, "ada", PASSWORD)


async def test_account_throttle_counts_email_and_username_together(
    client: httpx.AsyncClient,
) -> None:
    await register(client, "ada")
    for name in ("ada", "ADA@example.com", "ada", "ada@example.com", "Ada"):
        assert (await _attempt(client, name, "wrong password here")).status_code == 401
    assert (await _attempt(client, "ada@example.com", PASSWORD)).status_code == 429


async def test_unknown_accounts_are_throttled_too(client: httpx.AsyncClient) -> None:
    for _ in range(5):
        assert (await _attempt(client, "ghost", "wrong password here")).status_code == 401
    assert (await _attempt(client, "ghost", "wrong password here")).status_code == 429


async def test_address_throttle(settings: Settings) -> None:
    async with app_with(settings, login_failures_per_address=3) as client:
        for name in ("one", "two", "three"):
            assert (await _attempt(client, name, "wrong password here")).status_code == 401
        blocked = await _attempt(client, "four", "wrong password here")
        assert blocked.status_code == 429
        assert int(blocked.headers["retry-after"]) >= 1


async def test_forwarded_for_counts_only_behind_a_trusted_proxy(settings: Settings) -> None:
    # The test transport's peer address is 127.0.0.1.
    async with app_with(settings, login_failures_per_address=2) as untrusting:
        for address in ("203.0.113.1", "203.0.113.2"):
            response = await _attempt(untrusting, "x", "wrong password", forwarded_for=address)
            assert response.status_code == 401
        # Spoofed headers do not escape the peer's own budget.
        response = await _attempt(untrusting, "y", "wrong password", forwarded_for="203.0.113.3")
        assert response.status_code == 429

    async with app_with(
        settings, login_failures_per_address=2, trusted_proxies=(ip_network("127.0.0.1/32"),)
    ) as behind_proxy:
        for _ in range(2):
            response = await _attempt(
                behind_proxy, "z", "wrong password", forwarded_for="198.51.100.7"
            )
            assert response.status_code == 401
        blocked = await _attempt(behind_proxy, "w", "wrong password", forwarded_for="198.51.100.7")
        assert blocked.status_code == 429
        # A different client behind the same proxy has its own budget.
        other = await _attempt(behind_proxy, "v", "wrong password", forwarded_for="198.51.100.8")
        assert other.status_code == 401


async def test_concurrent_failures_never_exceed_the_limit(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    import asyncio

    await register(client, "ada")
    responses = await asyncio.gather(
        *(_attempt(client, "ada", "wrong password here") for _ in range(12))
    )
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [401] * 5 + [429] * 7
    async with engine.connect() as connection:
        stored = await connection.scalar(text("SELECT count(*) FROM login_failures"))
    assert stored == 5


@pytest.mark.parametrize(
    ("name", "change", "status"),
    [
        # what a password change does to the row
        ("renewed", "UPDATE users SET auth_version = auth_version + 1 WHERE id = $1", 401),
        ("benched", "UPDATE users SET is_active = false WHERE id = $1", 401),
        ("renamed", "UPDATE users SET full_name = 'Ada' WHERE id = $1", 200),
    ],
)
async def test_a_change_landing_during_the_login_decides_whether_tokens_are_issued(
    client: httpx.AsyncClient, direct_database_url: str, name: str, change: str, status: int
) -> None:
    """The login checked the password it read before the hash: a password change or a
    deactivation committed meanwhile leaves it without tokens, any other change not.
    The test's row lock holds the login at its last statement while the change lands."""
    user = await register(client, name)
    dsn = make_url(direct_database_url).set(drivername="postgresql")
    holder = await asyncpg.connect(dsn.render_as_string(hide_password=False))
    try:
        await holder.execute("BEGIN")
        await holder.execute("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", uuid.UUID(user["id"]))
        attempt = asyncio.create_task(_attempt(client, name, PASSWORD))
        await wait_until_blocked(holder)
        await holder.execute(change, uuid.UUID(user["id"]))
        await holder.execute("COMMIT")
        response = await attempt
    finally:
        await holder.close()
    assert response.status_code == status, response.text
    if status == 401:  # the answer to any failed login: nothing tells this one apart
        wrong = await _attempt(client, name, "not the password at all")
        assert _comparable(response) == _comparable(wrong)
