"""In-process apps on the dedicated server, and what every outage answer must look like."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
from fastapi import FastAPI, Request

from tests.conftest import BASE_URL
from users_api.app import create_app
from users_api.config import Settings
from users_api.db.database import APPLICATION_NAME, Database, Unit

# Far above any answer we expect: a request still open this long has hung.
HUNG_AFTER_SECONDS = 15.0
PASSWORD = "a perfectly fine password"


def add_test_routes(app: FastAPI) -> None:
    """Routes that exist only in these tests, to hold a pooled connection on purpose."""

    @app.get("/_test/sleep")
    async def sleep(request: Request, seconds: float) -> dict[str, bool]:
        async def work(unit: Unit) -> None:
            await unit.connection.execute("SELECT pg_sleep($1)", seconds)

        database: Database = request.app.state.db
        await database.run(work)
        return {"slept": True}

    @app.post("/_test/lock/{user_id}")
    async def lock(request: Request, user_id: uuid.UUID) -> dict[str, bool]:
        async def work(unit: Unit) -> None:
            await unit.connection.execute("SET LOCAL lock_timeout = '300ms'")
            await unit.connection.execute("SELECT id FROM users WHERE id = $1 FOR UPDATE", user_id)

        database: Database = request.app.state.db
        await database.run(work)
        return {"locked": True}


@asynccontextmanager
async def running_app(
    settings: Settings, **changes: Any
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """An app with some settings changed and the test routes, and a client for it."""
    app = create_app(settings.model_copy(update=changes))
    add_test_routes(app)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=transport, base_url=BASE_URL, timeout=HUNG_AFTER_SECONDS
        ) as client:
            yield app, client


async def timed(
    client: httpx.AsyncClient, method: str, url: str, **kwargs: Any
) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await client.request(method, url, **kwargs)
    return response, time.monotonic() - started


def assert_unavailable(response: httpx.Response, code: str = "database-unavailable") -> None:
    """503 problem+json with a usable Retry-After, and nothing of the fault leaked."""
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) > 0
    body = response.json()
    assert body["status"] == 503
    assert body["type"] == f"urn:users-api:problem:{code}"
    for leak in ("Traceback", "SELECT", "UPDATE", "INSERT", "asyncpg", "sqlalchemy"):
        assert leak not in response.text


async def register(client: httpx.AsyncClient, username: str) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/users",
        json={"email": f"{username}@example.com", "username": username, "password": PASSWORD},
    )
    assert response.status_code == 201, response.text
    user: dict[str, Any] = response.json()
    return user


async def token_for(client: httpx.AsyncClient, username: str) -> dict[str, str]:
    response = await client.post(
        "/api/v1/auth/token", data={"username": username, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def wait_until_blocked(observer: asyncpg.Connection, count: int = 1) -> None:
    """Until `count` of the app's sessions wait on a lock (or fail after a few seconds)."""
    for _ in range(200):
        # Inside a transaction pg_stat_activity is a snapshot taken once: retake it.
        await observer.execute("SELECT pg_stat_clear_snapshot()")
        waiting = await observer.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE application_name = $1 AND wait_event_type = 'Lock'"
            " AND datname = current_database()",  # not another test's, on a shared server
            APPLICATION_NAME,
        )
        if waiting >= count:
            return
        await asyncio.sleep(0.025)
    activity = await observer.fetch(
        "SELECT application_name, state, wait_event_type, query FROM pg_stat_activity"
        " WHERE datname = current_database()"
    )
    raise AssertionError(f"{count} request(s) never blocked on the lock: {activity}")


async def wait_until_ready(client: httpx.AsyncClient, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if (await client.get("/readyz")).status_code == 200:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not ready {within} s after the database came back")


async def assert_every_connection_returned(app: FastAPI) -> None:
    """Both pools, the sessions' and the hot paths', hold every connection again, once
    the outbox sender (the one user of the pool besides requests) has stopped."""
    await app.state.outbox.stop()
    assert app.state.db.in_use() == 0
