"""A real deadlock between two transactions is answered as a 409 problem, not a 500."""

from __future__ import annotations

import asyncio
import inspect

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from starlette.requests import Request
from starlette.responses import Response

from tests.auth.helpers import register


async def _rename(connection: AsyncConnection, user_id: str, name: str) -> None:
    await connection.execute(
        text("UPDATE users SET username = :name WHERE id = :id"), {"name": name, "id": user_id}
    )


# Far longer than the second rename needs to reach its lock wait, even on a loaded machine.
BLOCKED_WITHIN_SECONDS = 10.0


async def _wait_until_blocked(engine: AsyncEngine, pid: int) -> None:
    deadline = asyncio.get_running_loop().time() + BLOCKED_WITHIN_SECONDS
    async with engine.connect() as watcher:
        while True:
            waiting = await watcher.execute(
                text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid"),
                {"pid": pid},
            )
            wait_event_type = waiting.scalar_one_or_none()
            if wait_event_type == "Lock":
                return
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(
                    f"backend {pid} did not wait on a lock within {BLOCKED_WITHIN_SECONDS} s"
                    f" (its wait_event_type is still {wait_event_type!r})"
                )
            await watcher.rollback()
            await asyncio.sleep(0.01)


async def _deadlock(engine: AsyncEngine, alice: str, bob: str) -> DBAPIError:
    """Swap two usernames in two transactions that each wait for the other's index entry."""
    async with engine.connect() as first, engine.connect() as second:
        await first.begin()
        await second.begin()
        pid = (await second.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        await _rename(first, alice, "swap-tmp")  # "alice" is now held by `first`
        waiting = asyncio.create_task(_rename(second, bob, "alice"))  # waits for `first`
        await _wait_until_blocked(engine, pid)
        results = await asyncio.gather(
            _rename(first, alice, "bob"), waiting, return_exceptions=True
        )
        await first.rollback()
        await second.rollback()
    deadlocks = [
        result
        for result in results
        if isinstance(result, DBAPIError) and getattr(result.orig, "sqlstate", None) == "40P01"
    ]
    assert len(deadlocks) == 1, results
    return deadlocks[0]


async def _render(app: FastAPI, error: DBAPIError) -> Response:
    """Answer `error` as the app's own handler would, for a request that raised it."""
    request = Request({"type": "http", "method": "PATCH", "path": "/", "headers": []})
    response = app.exception_handlers[DBAPIError](request, error)
    return await response if inspect.isawaitable(response) else response


async def test_deadlock_becomes_a_409_problem(
    app: FastAPI, client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    alice = (await register(client, "alice"))["id"]
    bob = (await register(client, "bob"))["id"]
    error = await _deadlock(engine, alice, bob)
    response = await _render(app, error)
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert b"concurrent-change" in response.body
    assert b"deadlock" not in response.body  # no SQL or database text leaks


async def test_other_database_errors_stay_500(
    app: FastAPI, client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    await register(client, "alice")
    async with engine.connect() as connection:
        try:
            await connection.execute(
                text(
                    "INSERT INTO users (id, email, username, password_hash, version)"
                    " SELECT gen_random_uuid(), email, username, 'x', 1 FROM users"
                )
            )
        except DBAPIError as exc:
            error = exc
        else:
            pytest.fail("the duplicate was stored")
    assert getattr(error.orig, "sqlstate", None) == "23505"  # unique_violation
    response = await _render(app, error)
    assert response.status_code == 500
