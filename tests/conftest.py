"""A real PostgreSQL for every test run; each test starts from an empty users table."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import hypothesis
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tests import databases
from users_api.app import create_app
from users_api.config import Settings
from users_api.db.migrations import upgrade_on
from users_api.security import passwords
from users_api.users.service import UserService

BASE_URL = "http://testserver"

# Property tests and the schemathesis fuzzer draw the same examples on every run, so
# `make test` and CI pass or fail on the code, not on luck. To hunt for new failures,
# run `make test PYTEST_ARGS=tests/fuzz` with HYPOTHESIS_PROFILE=explore: fresh random
# examples each time (each failure found so far became a fix and an explicit test).
hypothesis.settings.register_profile("repeatable", derandomize=True)
hypothesis.settings.register_profile("explore", derandomize=False)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


# The apps the tests build in-process hash at argon2id's least cost (t=1, m=64 KiB): the
# suite makes thousands of hashes, and at the production cost (t=5, m=7 MiB, ~20 ms of
# CPU each) they took a fifth of its time (embedded run 319 s, 249 s at this cost). It is
# still argon2id through pwdlib, stored and verified as in production. The production
# parameters are held by tests/auth/test_passwords.py (an app of its own built with
# `production_argon2`), and every served process (`users-api serve`) hashes with them.
PRODUCTION_ARGON2 = (passwords.ARGON2_TIME_COST, passwords.ARGON2_MEMORY_KIB)
passwords.ARGON2_TIME_COST, passwords.ARGON2_MEMORY_KIB = 1, 64


@pytest.fixture
def production_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    """Passwords (and apps) built while this holds hash at the production cost."""
    time_cost, memory_kib = PRODUCTION_ARGON2
    monkeypatch.setattr(passwords, "ARGON2_TIME_COST", time_cost)
    monkeypatch.setattr(passwords, "ARGON2_MEMORY_KIB", memory_kib)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Through a pooler, run only the tests that reach it (`database_url`, the app's URL).

    The others use the server directly or no database at all: through a pooler they would
    run exactly as they do without one, as CI's direct stage runs them (about a fifth of
    the suite, the slow command-line tests among them).
    """
    if not databases.through_pooler():
        return
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        reaches = "database_url" in getattr(item, "fixturenames", ())
        (kept if reaches else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(scope="session")
def direct_database_url() -> Iterator[str]:
    """A fresh, empty database for this run, reached directly (never through a pooler)."""
    import asyncio

    server = databases.direct_server_url()
    if server is None:
        with databases.embedded_server() as (_, url):
            yield url
        return
    name = databases.fresh_name()
    url = asyncio.run(databases.create_database(server, name))
    try:
        yield url
    finally:
        asyncio.run(databases.drop_database(server, name))


@pytest.fixture(scope="session")
def database_url(direct_database_url: str) -> str:
    """This run's database as the app reaches it: through the pooler, if there is one."""
    server = databases.server_url()
    return (
        direct_database_url if server is None else databases.on_server(direct_database_url, server)
    )


@pytest.fixture(scope="session")
async def engine(direct_database_url: str) -> AsyncIterator[AsyncEngine]:
    """Migrates this run's database; the tests' own SQL (over SQLAlchemy's session)."""
    engine = create_async_engine(direct_database_url)
    async with engine.begin() as connection:
        await upgrade_on(connection)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    # `_env_file=None`: a developer's own .env must not leak into the tests. Mail goes to
    # .eml files in a folder of the run's (DATA_DIR/outbox), looked for only when this
    # app wrote some: apps of the mail tests deliver their own (tests/mail).
    return Settings(
        database_url=database_url,
        secret_key="test-secret-key-that-is-at-least-32-bytes-long",
        data_dir=tmp_path_factory.mktemp("data"),
        outbox_poll_seconds=3600,
        # Every app of the tests opens its pool whole at start-up: at the default 20, four
        # test workers' apps passed a server's max_connections of 100 (`TEST_DATABASE_URL`
        # without a pooler). Tests of the pool itself set their own size.
        db_pool_size=6,
        # The tests seed old events on purpose; the pruner's own tests start their own.
        audit_retention_days=0,
        delivery_retention_days=0,
        _env_file=None,
    )


@pytest.fixture(scope="session")
async def app(settings: Settings, engine: AsyncEngine) -> AsyncIterator[FastAPI]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@asynccontextmanager
async def asgi_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client that talks to `app` in-process, with no credentials of its own."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        yield client


def http_scope(
    method: str, path: str, *, query: bytes = b"", headers: list[tuple[bytes, bytes]]
) -> dict[str, Any]:
    """The ASGI scope of one request, for tests that drive the app byte for byte (a raw
    query, a client that leaves mid-body), which httpx would not send."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 4711),
        "server": ("testserver", 80),
    }


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(app) as client:
        yield client


ADMIN_EMAIL = "root@example.com"
ADMIN_USERNAME = "root"
ADMIN_PASSWORD = "admin password that is long"


@dataclass(frozen=True)
class Admin:
    id: uuid.UUID
    username: str


@pytest.fixture
async def admin(app: FastAPI) -> Admin:
    """An active admin, created through the service as `FIRST_ADMIN_*` would."""
    users: UserService = app.state.users
    created = await users.ensure_admin(
        email=ADMIN_EMAIL, username=ADMIN_USERNAME, password=ADMIN_PASSWORD
    )
    assert created is not None
    return Admin(id=created["id"], username=created["username"])


async def login(client: httpx.AsyncClient, username: str, password: str) -> dict[str, Any]:
    """Log in and return the token response."""
    response = await client.post(
        "/api/v1/auth/token", data={"username": username, "password": password}
    )
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens


@pytest.fixture
async def admin_client(app: FastAPI, admin: Admin) -> AsyncIterator[httpx.AsyncClient]:
    """A client signed in as `admin`."""
    async with asgi_client(app) as client:
        tokens = await login(client, admin.username, ADMIN_PASSWORD)
        client.headers["Authorization"] = f"Bearer {tokens['access_token']}"
        yield client


@pytest.fixture(scope="session")
async def _emptying(engine: AsyncEngine) -> str:
    async with engine.connect() as connection:
        raw = (await connection.get_raw_connection()).driver_connection
        assert raw is not None
        return await databases.emptying_sql(raw)


@pytest.fixture(autouse=True)
async def _empty_tables(engine: AsyncEngine, _emptying: str) -> AsyncIterator[None]:
    yield
    async with engine.connect() as connection:
        raw = (await connection.get_raw_connection()).driver_connection
        assert raw is not None
        await raw.execute(_emptying)  # no arguments: the simple protocol, one round trip


@pytest.fixture
async def fresh_database_url(direct_database_url: str) -> AsyncIterator[str]:
    """An empty throw-away database (no migrations) on the tests' server, dropped after."""
    server = databases.direct_server_url() or direct_database_url
    name = databases.fresh_name()
    url = await databases.create_database(server, name)
    try:
        yield url
    finally:
        await databases.drop_database(server, name)
