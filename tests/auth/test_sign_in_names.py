"""Sign-in names that Unicode case rules make awkward, on a database that applies them.

With the libc locales PostgreSQL usually runs on, `lower()` maps one character to one
character; an ICU database applies Unicode's full case mapping, under which `İ`
(U+0130) lower-cases to two characters (`i` and a combining dot). Python's `str.lower`
does that too, and differs from the libc locales: a name must find its user whatever the
database's rules are, so only PostgreSQL lowers it, on both sides.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tests import databases
from tests.auth.helpers import PASSWORD, app_with, bearer
from tests.conftest import login
from users_api.config import Settings
from users_api.db.migrations import upgrade_on

TOKEN = "/api/v1/auth/token"
ICU = "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'und'"


@pytest.fixture
async def icu_settings(settings: Settings, database_url: str) -> AsyncIterator[Settings]:
    """The tests' settings over a fresh, migrated database with ICU's case rules."""
    server = databases.server_url() or database_url
    name = databases.fresh_name()
    try:
        url = await databases.create_database(server, name, ICU)
    except asyncpg.PostgresError as exc:  # a server built without ICU
        pytest.skip(f"no ICU database on this server: {exc}")
    try:
        engine = create_async_engine(url, poolclass=NullPool)
        async with engine.begin() as connection:
            await upgrade_on(connection)
        await engine.dispose()
        yield settings.model_copy(update={"database_url": url})
    finally:
        await databases.drop_database(server, name)


@pytest.fixture(params=["default", "icu"])
async def any_client(
    request: pytest.FixtureRequest, settings: Settings, icu_settings: Settings
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app over the tests' database, then over an ICU one."""
    chosen = icu_settings if request.param == "icu" else settings
    async with app_with(chosen) as client:
        yield client


async def test_an_address_logs_in_exactly_as_registered(any_client: httpx.AsyncClient) -> None:
    registered = await any_client.post(
        "/api/v1/users",
        json={"email": "İnfo@example.com", "username": "info", "password": PASSWORD},
    )
    assert registered.status_code == 201, registered.text
    assert registered.json()["email"] == "İnfo@example.com"
    for name in ("İnfo@example.com", "İNFO@EXAMPLE.COM", "info"):
        tokens = await login(any_client, name, PASSWORD)
        me = await any_client.get("/api/v1/users/me", headers=bearer(tokens["access_token"]))
        assert me.json()["id"] == registered.json()["id"], name


async def test_a_name_that_grows_when_lower_cased_is_counted(
    any_client: httpx.AsyncClient,
) -> None:
    """Two hundred `İ` are 400 characters once lower-cased: the throttle's key must still fit."""
    name = "İ" * 200
    for _ in range(5):
        response = await any_client.post(TOKEN, data={"username": name, "password": PASSWORD})
        assert response.status_code == 401, response.text
        assert response.json()["type"].endswith(":invalid-credentials")
    blocked = await any_client.post(TOKEN, data={"username": name, "password": PASSWORD})
    assert blocked.status_code == 429, blocked.text
    assert int(blocked.headers["retry-after"]) >= 1


async def test_a_username_that_looks_like_an_address_is_looked_up_first(
    any_client: httpx.AsyncClient,
) -> None:
    """v2 usernames may hold `@`: a login looks for the username first, then the email,
    whatever the name looks like."""
    registered = await any_client.post(
        "/api/v1/users",
        json={"email": "ada@example.com", "username": "Ida+idp@contoso.com", "password": PASSWORD},
    )
    assert registered.status_code == 201, registered.text
    for name in (
        "Ida+idp@contoso.com",
        "IDA+IDP@CONTOSO.COM",
        "ada@example.com",
        "ADA@example.com",
    ):
        tokens = await login(any_client, name, PASSWORD)
        me = await any_client.get("/api/v1/users/me", headers=bearer(tokens["access_token"]))
        assert me.json()["id"] == registered.json()["id"], name
