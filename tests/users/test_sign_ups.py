"""Sign-up floods (issue 13, item 3): a sign-up that cannot succeed costs no hash, and
sign-ups by anyone but an admin are counted per client address (REGISTRATIONS_PER_ADDRESS
an hour, then 429 with Retry-After), in PostgreSQL, so every worker shares the count."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import BASE_URL, login
from tests.users.helpers import USERS, assert_conflict, assert_problem
from users_api.app import create_app
from users_api.config import Settings
from users_api.security.passwords import Passwords

PASSWORD = "a perfectly fine password"
HOUR = 3600


def body(name: str, **changes: Any) -> dict[str, Any]:
    return {"email": f"{name}@example.com", "username": name, "password": PASSWORD, **changes}


@asynccontextmanager
async def served(settings: Settings, **changes: Any) -> AsyncIterator[FastAPI]:
    """Another app (another worker: its own pool, of a few connections: the server's are
    shared with the whole run) over the same database."""
    app = create_app(settings.model_copy(update={"db_pool_size": 4, **changes}))
    async with app.router.lifespan_context(app):
        yield app


@asynccontextmanager
async def client_at(app: FastAPI, address: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose requests come from `address`."""
    transport = httpx.ASGITransport(app=app, client=(address, 50_000), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        yield client


@pytest.fixture
def hashes(app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The passwords the users service hashes."""
    passwords: Passwords = app.state.users.passwords
    seen: list[str] = []
    real = passwords.hash

    async def counting(password: str) -> str:
        seen.append(password)
        return await real(password)

    monkeypatch.setattr(passwords, "hash", counting)
    return seen


def assert_throttled(response: httpx.Response, *, at_most: int = HOUR) -> int:
    problem = assert_problem(response, 429)
    assert problem["type"].endswith("too-many-sign-ups"), problem
    wait = int(response.headers["retry-after"])
    assert 1 <= wait <= at_most
    return wait


# --- a sign-up that cannot succeed ---------------------------------------------------


@pytest.mark.parametrize(
    ("taken", "field"),
    [
        ({"email": "ADA@example.com"}, "email"),
        ({"username": "ADA"}, "username"),
        ({"email": "ada@example.com", "username": "ada"}, "email"),
    ],
)
async def test_a_taken_email_or_username_is_409_before_the_hash(
    app: FastAPI, hashes: list[str], taken: dict[str, str], field: str
) -> None:
    async with client_at(app, "192.0.2.1") as client:
        assert (await client.post(USERS, json=body("ada"))).status_code == 201
        hashes.clear()
        response = await client.post(USERS, json=body("eve", **taken, password="another fine pw!"))
    assert_conflict(response, field)
    assert hashes == []


async def test_an_admin_creating_a_taken_name_gets_409_before_the_hash(
    admin_client: httpx.AsyncClient, hashes: list[str]
) -> None:
    assert (await admin_client.post(USERS, json=body("ada"))).status_code == 201
    hashes.clear()
    response = await admin_client.post(USERS, json=body("eve", username="Ada"))
    assert_conflict(response, "username")
    assert hashes == []


# --- the count per client address -----------------------------------------------------


async def test_the_default_is_20_sign_ups_an_hour_per_address(app: FastAPI) -> None:
    async with client_at(app, "198.51.100.7") as client:
        for n in range(20):
            response = await client.post(USERS, json=body(f"user{n:02}"))
            assert response.status_code == 201, (n, response.text)
        wait = assert_throttled(await client.post(USERS, json=body("one_more")))
    assert wait > HOUR - 60
    async with client_at(app, "198.51.100.8") as elsewhere:
        assert (await elsewhere.post(USERS, json=body("elsewhere"))).status_code == 201


async def test_sign_ups_that_fail_count_too_and_a_throttled_one_costs_no_hash(
    settings: Settings, hashes: list[str]
) -> None:
    """409s and weak passwords count (each cost a look-up or an estimate, and a 409
    answers whether an address is registered); the 429 comes before anything else."""
    async with served(settings, registrations_per_address=3) as app:
        hashing: list[str] = []
        passwords: Passwords = app.state.users.passwords
        real = passwords.hash

        async def counting(password: str) -> str:
            hashing.append(password)
            return await real(password)

        passwords.hash = counting  # type: ignore[method-assign]  # this app alone
        async with client_at(app, "192.0.2.9") as client:
            assert (await client.post(USERS, json=body("ada"))).status_code == 201
            assert_conflict(await client.post(USERS, json=body("ada")), "email")
            weak = await client.post(USERS, json=body("eve", password="qwertyuiopas"))
            assert weak.status_code == 422
            hashing.clear()
            assert_throttled(await client.post(USERS, json=body("bob")))
            assert_throttled(await client.post(USERS, json=body("ada")))  # not 409
        assert hashing == []


async def test_racing_sign_ups_from_one_address_cannot_pass_the_limit(
    settings: Settings, engine: AsyncEngine
) -> None:
    """Counted under the address's lock: 12 at once with room for 4 make 4 users."""
    async with (
        served(settings, registrations_per_address=4) as app,
        client_at(app, "203.0.113.5") as client,
    ):
        responses = await asyncio.gather(
            *(client.post(USERS, json=body(f"racer{n:02}")) for n in range(12))
        )
    assert sorted(response.status_code for response in responses) == [201] * 4 + [429] * 8
    async with engine.connect() as connection:
        made = await connection.scalar(text("SELECT count(*) FROM users"))
    assert made == 4


async def test_every_worker_shares_the_count(settings: Settings) -> None:
    async with (
        served(settings, registrations_per_address=2) as first,
        served(settings, registrations_per_address=2) as second,
        client_at(first, "192.0.2.20") as one,
        client_at(second, "192.0.2.20") as two,
    ):
        assert (await one.post(USERS, json=body("ada"))).status_code == 201
        assert (await two.post(USERS, json=body("bea"))).status_code == 201
        assert_throttled(await one.post(USERS, json=body("cid")))
        assert_throttled(await two.post(USERS, json=body("dee")))


async def test_an_admin_s_creations_are_not_counted(settings: Settings, admin: Any) -> None:
    async with (
        served(settings, registrations_per_address=1) as app,
        client_at(app, "192.0.2.30") as client,
    ):
        tokens = await login(client, admin.username, "admin password that is long")
        as_admin = {"Authorization": f"Bearer {tokens['access_token']}"}
        for name in ("ada", "bea", "cid"):
            response = await client.post(USERS, json=body(name), headers=as_admin)
            assert response.status_code == 201, response.text
        # The address's one sign-up is still there for anyone else...
        assert (await client.post(USERS, json=body("dee"))).status_code == 201
        # ... and a signed-in user who is no admin counts like anyone.
        mine = await login(client, "dee", PASSWORD)
        as_dee = {"Authorization": f"Bearer {mine['access_token']}"}
        assert_throttled(await client.post(USERS, json=body("eve"), headers=as_dee))


async def test_retry_after_is_when_a_counted_sign_up_leaves_the_hour(
    settings: Settings, engine: AsyncEngine
) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO sign_up_attempts (client_address, attempted_at) VALUES "
                "('192.0.2.40', now() - interval '2 hours'), "  # gone: older than the hour
                "('192.0.2.40', now() - interval '59 minutes'), "
                "('192.0.2.40', now() - interval '30 minutes')"
            )
        )
    async with (
        served(settings, registrations_per_address=2) as app,
        client_at(app, "192.0.2.40") as client,
    ):
        wait = assert_throttled(await client.post(USERS, json=body("ada")))
    # Two in the hour, the older 59 minutes ago: in a minute there is room for one more.
    assert 55 <= wait <= 61
    async with engine.connect() as connection:
        kept = await connection.scalar(
            text("SELECT count(*) FROM sign_up_attempts WHERE client_address = '192.0.2.40'")
        )
    assert kept == 2  # the refused sign-up is not counted, the one of two hours ago forgotten


async def test_expired_sign_ups_are_forgotten(settings: Settings, engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO sign_up_attempts (client_address, attempted_at) "
                "SELECT '192.0.2.50', now() - interval '61 minutes' FROM generate_series(1, 5)"
            )
        )
    async with (
        served(settings, registrations_per_address=1) as app,
        client_at(app, "192.0.2.50") as client,
    ):
        assert (await client.post(USERS, json=body("ada"))).status_code == 201
    async with engine.connect() as connection:
        kept = await connection.scalar(
            text("SELECT count(*) FROM sign_up_attempts WHERE client_address = '192.0.2.50'")
        )
    assert kept == 1
