"""Transactions the database aborts for a concurrent one, through real requests.

A deadlock or serialization failure is run once more (`Database.run`); when the same
request fails so twice, it is a 409 `concurrent-change` problem. Other database errors
stay 500s that leak nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tests.auth.helpers import register
from tests.conftest import Admin, asgi_client
from users_api.app import create_app
from users_api.config import Settings
from users_api.db.database import APPLICATION_NAME, Database, Unit
from users_api.db.locks import ADMIN_SET_LOCK_CLASS

WAIT_SECONDS = 10.0


async def _wait_until_a_request_waits_for_a_lock(watcher: AsyncConnection) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        waiting = await watcher.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE application_name = :name AND wait_event_type = 'Lock'"
                " AND datname = current_database()"
            ),
            {"name": APPLICATION_NAME},
        )
        await watcher.rollback()
        if waiting:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"no request waited for a lock within {WAIT_SECONDS} s")


async def test_a_real_deadlock_is_run_again_and_succeeds(
    admin_client: httpx.AsyncClient,
    engine: AsyncEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """DELETE takes the admin-set lock, then waits for the row another transaction holds;
    that transaction then asks for the admin-set lock. PostgreSQL aborts the request's
    transaction (its deadlock timeout runs out first), the request runs again once the
    other has finished, and the client sees only its 204."""
    caplog.set_level(logging.INFO)
    victim = (await register(admin_client, "victim"))["id"]
    async with engine.connect() as other, engine.connect() as watcher:
        await other.begin()
        # Only the request's backend may give up on the deadlock: this one waits long.
        await other.execute(text("SET LOCAL deadlock_timeout = '60s'"))
        await other.execute(
            text("UPDATE users SET full_name = 'held' WHERE id = :id"), {"id": victim}
        )
        deleting = asyncio.create_task(admin_client.delete(f"/api/v1/users/{victim}"))
        await _wait_until_a_request_waits_for_a_lock(watcher)
        await other.execute(
            text("SELECT pg_advisory_xact_lock(:lock, 0)"), {"lock": ADMIN_SET_LOCK_CLASS}
        )
        await other.rollback()
        response = await asyncio.wait_for(deleting, WAIT_SECONDS)
    assert response.status_code == 204, response.text
    assert "retrying after a concurrent change" in caplog.text
    async with engine.connect() as connection:
        left = await connection.scalar(
            text("SELECT count(*) FROM users WHERE id = :id"), {"id": victim}
        )
    assert left == 0


@pytest.fixture
async def failing_app(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An app with routes that meet the database errors of a request that keeps losing."""
    app: FastAPI = create_app(settings.model_copy(update={"db_pool_size": 2}))

    @app.post("/_test/always-deadlocked")
    async def always_deadlocked(request: Request) -> dict[str, bool]:
        async def work(unit: Unit) -> None:
            await unit.connection.execute(
                "DO $$ BEGIN RAISE EXCEPTION 'deadlock detected' USING ERRCODE = '40P01'; END $$"
            )

        database: Database = request.app.state.db
        await database.run(work)
        return {"done": True}

    async with app.router.lifespan_context(app), asgi_client(app) as client:
        yield client


async def test_a_request_that_loses_twice_is_a_409_problem(
    failing_app: httpx.AsyncClient,
) -> None:
    response = await failing_app.post("/_test/always-deadlocked")
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"].endswith("concurrent-change")
    assert "deadlock" not in response.text  # no database text leaks


@pytest.fixture
async def unique_full_names(engine: AsyncEngine) -> AsyncIterator[None]:
    """A unique index the service knows nothing about."""
    async with engine.begin() as connection:
        await connection.execute(
            text("CREATE UNIQUE INDEX test_unique_full_name ON users (full_name)")
        )
    yield
    async with engine.begin() as connection:
        await connection.execute(text("DROP INDEX test_unique_full_name"))


@pytest.mark.usefixtures("unique_full_names")
async def test_other_database_errors_stay_500(
    admin_client: httpx.AsyncClient, admin: Admin
) -> None:
    other = (await register(admin_client, "other"))["id"]
    named = await admin_client.patch(f"/api/v1/users/{admin.id}", json={"full_name": "Same"})
    assert named.status_code == 200
    response = await admin_client.patch(f"/api/v1/users/{other}", json={"full_name": "Same"})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert "test_unique_full_name" not in response.text
