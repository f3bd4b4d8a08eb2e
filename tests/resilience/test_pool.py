"""More work than connections, and statements that run too long.

Tiny pools (one connection each, no overflow, half a second to wait for one) make the
limits reachable with a handful of requests; the slow requests are real ones, blocked
on a row lock that the test holds from its own connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import pytest

from tests.resilience.conftest import Postgres
from tests.resilience.helpers import (
    PASSWORD,
    assert_every_connection_returned,
    assert_unavailable,
    register,
    running_app,
    timed,
    token_for,
    wait_until_blocked,
)
from users_api.config import Settings
from users_api.db.database import APPLICATION_NAME

# Runs on a PostgreSQL of its own: the same whatever TEST_DATABASE_URL says.
pytestmark = pytest.mark.own_database

TINY_POOL = {
    "db_pool_size": 1,
    "db_max_overflow": 0,
    "db_pool_timeout": 0.5,
}
EXCESS = 5


async def test_requests_beyond_the_pool_wait_at_most_the_pool_timeout_then_get_503(
    postgres: Postgres, resilience_settings: Settings
) -> None:
    async with running_app(resilience_settings, **TINY_POOL) as (app, client):
        user = await register(client, "ada")
        headers = await token_for(client, "ada")
        holder = await postgres.connect()
        try:
            await holder.execute("BEGIN")
            await holder.execute(
                "SELECT 1 FROM users WHERE id = $1 FOR UPDATE", uuid.UUID(user["id"])
            )
            # The slow request: it takes the pool's only connection and waits on the lock.
            slow = asyncio.create_task(
                timed(
                    client,
                    "PATCH",
                    f"/api/v1/users/{user['id']}",
                    json={"full_name": "Ada Lovelace"},
                    headers=headers,
                )
            )
            await wait_until_blocked(holder)
            excess = await asyncio.gather(
                *[timed(client, "GET", "/api/v1/users/me", headers=headers) for _ in range(EXCESS)]
            )
            for response, took in excess:
                assert_unavailable(response)
                assert took < 2.5  # the pool timeout is 0.5 s; the lock is held for longer
            assert not slow.done()
            await holder.execute("COMMIT")
            patched, _ = await slow
        finally:
            with contextlib.suppress(Exception):
                await holder.close(timeout=1)
        assert patched.status_code == 200, patched.text
        assert patched.json()["version"] == 2

        # Load gone: everything is normal again, on the same pool.
        for _ in range(3):
            me = await client.get("/api/v1/users/me", headers=headers)
            assert me.status_code == 200, me.text
            assert me.json()["full_name"] == "Ada Lovelace"
        await assert_every_connection_returned(app)
        print(f"\npool exhaustion: {EXCESS} excess requests, {len(excess)} answered 503")


async def test_statement_timeout_cancels_the_statement_and_the_connection_stays_healthy(
    postgres: Postgres, resilience_settings: Settings
) -> None:
    async with running_app(resilience_settings, db_statement_timeout_ms=500, **TINY_POOL) as (
        app,
        client,
    ):
        user = await register(client, "ada")
        headers = await token_for(client, "ada")
        holder = await postgres.connect()
        try:
            await holder.execute("BEGIN")
            await holder.execute(
                "SELECT 1 FROM users WHERE id = $1 FOR UPDATE", uuid.UUID(user["id"])
            )
            # A real request, stuck behind the lock for longer than the statement may run.
            patched, took = await timed(
                client,
                "PATCH",
                f"/api/v1/users/{user['id']}",
                json={"full_name": "Ada Lovelace"},
                headers=headers,
            )
            assert_unavailable(patched, code="database-timeout")
            assert took < 5.0
            # A slow query of its own is cancelled the same way.
            slept, took = await timed(client, "GET", "/_test/sleep", params={"seconds": 30})
            assert_unavailable(slept, code="database-timeout")
            assert took < 5.0

            # The pool's one connection came back usable, outside any transaction. The
            # background jobs (the outbox's lease, its poll) may be using it this instant.
            for _ in range(50):
                states = await holder.fetch(
                    "SELECT state FROM pg_stat_activity"
                    " WHERE application_name = $1 AND datname = current_database()",
                    APPLICATION_NAME,
                )
                if [row["state"] for row in states] == ["idle"]:
                    break
                await asyncio.sleep(0.1)
            assert [row["state"] for row in states] == ["idle"]
            me = await client.get("/api/v1/users/me", headers=headers)
            assert me.status_code == 200, me.text
            assert me.json()["version"] == 1  # nothing of the cancelled change was kept
        finally:
            with contextlib.suppress(Exception):
                await holder.close(timeout=1)
        patched = await client.patch(
            f"/api/v1/users/{user['id']}", json={"full_name": "Ada Lovelace"}, headers=headers
        )
        assert patched.status_code == 200, patched.text
        assert patched.json()["version"] == 2
        await assert_every_connection_returned(app)


async def test_lock_timeout_is_a_503_not_a_500(
    postgres: Postgres, resilience_settings: Settings
) -> None:
    async with running_app(resilience_settings, **TINY_POOL) as (app, client):
        user = await register(client, "ada")
        holder = await postgres.connect()
        try:
            await holder.execute("BEGIN")
            await holder.execute(
                "SELECT 1 FROM users WHERE id = $1 FOR UPDATE", uuid.UUID(user["id"])
            )
            locked, took = await timed(client, "POST", f"/_test/lock/{user['id']}")
            assert_unavailable(locked, code="database-timeout")
            assert took < 5.0
            await holder.execute("COMMIT")
        finally:
            with contextlib.suppress(Exception):
                await holder.close(timeout=1)
        locked = await client.post(f"/_test/lock/{user['id']}")
        assert locked.status_code == 200, locked.text
        await assert_every_connection_returned(app)


LOGIN_STORM = 40


async def test_a_login_storm_bigger_than_the_pool_leaves_connections_to_the_rest(
    resilience_settings: Settings,
) -> None:
    """A login waits for a hashing thread before it takes a connection.

    The other way round, every queued login held a pooled connection (and its
    transaction) while it waited for the hash: a storm bigger than the pool left no
    connection for anything else, and whatever waited past the pool timeout got a 503.
    """
    small = {"db_pool_size": 2, "db_max_overflow": 0, "db_pool_timeout": 0.5}
    async with running_app(resilience_settings, **small, password_hash_concurrency=1) as (
        _,
        client,
    ):
        await register(client, "ada")
        headers = await token_for(client, "ada")
        form = {"username": "ada", "password": PASSWORD}
        storm = [
            asyncio.create_task(timed(client, "POST", "/api/v1/auth/token", data=form))
            for _ in range(LOGIN_STORM)
        ]
        await asyncio.sleep(0.05)  # the storm has started and queued
        reads = [await timed(client, "GET", "/api/v1/users/me", headers=headers) for _ in range(5)]
        still_storming = not all(task.done() for task in storm)
        logins = await asyncio.gather(*storm)

    assert still_storming  # the reads ran while logins were queued (each is a ~20 ms hash)
    for response, took in reads:
        assert response.status_code == 200, response.text
        assert took < 0.5  # never waited out the pool timeout behind the logins
    assert [response.status_code for response, _ in logins] == [200] * LOGIN_STORM
    slowest = max(took for _, took in logins)
    print(f"\nlogin storm: {LOGIN_STORM} logins, the slowest {slowest:.2f} s; reads all 200")
