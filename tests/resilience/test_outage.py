"""The database goes away for real and comes back: the service answers 503, then recovers.

Faults are real: `pg_ctl stop -m fast`, `pg_ctl stop -m immediate` (a crash, with crash
recovery on the next start), a frozen postmaster (SIGSTOP), and a smart shutdown that
refuses new sessions. Time bounds are only "it did not hang".
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
import uuid
from dataclasses import dataclass, field

import httpx
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
    wait_until_ready,
)
from users_api.config import Settings

# Runs on a PostgreSQL of its own: the same whatever TEST_DATABASE_URL says.
pytestmark = pytest.mark.own_database

WRITERS = 3


@dataclass
class Writes:
    """What concurrent registrations saw while the database went away and came back."""

    created: dict[uuid.UUID, str] = field(default_factory=dict)
    unavailable: int = 0
    other: list[str] = field(default_factory=list)
    slowest: float = 0.0

    @property
    def sent(self) -> int:
        return len(self.created) + self.unavailable + len(self.other)


async def _keep_registering(client: httpx.AsyncClient, writes: Writes, stop: asyncio.Event) -> None:
    while not stop.is_set():
        name = f"u{uuid.uuid4().hex[:12]}"
        body = {"email": f"{name}@example.com", "username": name, "password": PASSWORD}
        response, took = await timed(client, "POST", "/api/v1/users", json=body)
        writes.slowest = max(writes.slowest, took)
        if response.status_code == 201:
            writes.created[uuid.UUID(response.json()["id"])] = name
        elif response.status_code == 503:
            assert_unavailable(response)
            writes.unavailable += 1
            await asyncio.sleep(0.05)  # a client honouring Retry-After, compressed
        else:
            writes.other.append(f"{response.status_code} {response.text}")


@pytest.mark.parametrize("fault", ["stop", "crash"])
async def test_outage_answers_503_then_recovers_without_losing_writes(
    postgres: Postgres, resilience_settings: Settings, fault: str
) -> None:
    async with running_app(resilience_settings, db_connect_timeout=2.0) as (app, client):
        await register(client, "ada")
        headers = await token_for(client, "ada")
        writes, stop = Writes(), asyncio.Event()
        writers = [
            asyncio.create_task(_keep_registering(client, writes, stop)) for _ in range(WRITERS)
        ]
        try:
            await asyncio.sleep(0.5)
            (postgres.stop if fault == "stop" else postgres.crash)()
            written_before = len(writes.created)

            ready, took = await timed(client, "GET", "/readyz")
            assert ready.status_code == 503
            assert took < 3.0
            assert ready.headers["content-type"] == "application/problem+json"
            me, took = await timed(client, "GET", "/api/v1/users/me", headers=headers)
            assert_unavailable(me)
            assert took < 5.0
            login, took = await timed(
                client, "POST", "/api/v1/auth/token", data={"username": "ada", "password": "x"}
            )
            assert_unavailable(login)
            assert took < 5.0
            await asyncio.sleep(1.0)  # the outage lasts a while

            postgres.start()
            await wait_until_ready(client)
            me = await client.get("/api/v1/users/me", headers=headers)
            assert me.status_code == 200, me.text  # the same app: no restart needed
            recovered_with = len(writes.created)
            await asyncio.sleep(0.5)
        finally:
            stop.set()
            await asyncio.gather(*writers)

        assert writes.other == []
        assert written_before > 0
        assert writes.unavailable > 0
        assert len(writes.created) > recovered_with  # writes succeed again
        assert writes.slowest < 5.0
        await assert_every_connection_returned(app)

    # Every acknowledged write survived the outage (and the crash recovery).
    connection = await postgres.connect()
    try:
        rows = await connection.fetch("SELECT id, username FROM users")
    finally:
        await connection.close()
    stored = {row["id"]: row["username"] for row in rows}
    lost = {id_: name for id_, name in writes.created.items() if stored.get(id_) != name}
    assert lost == {}
    print(
        f"\n{fault}: {writes.sent} registrations, {len(writes.created)} acknowledged, "
        f"{writes.unavailable} answered 503, 0 other, {len(lost)} lost, "
        f"slowest {writes.slowest:.2f} s"
    )


# The full rules run in a transaction: its COMMIT cannot happen once the database stops.
# The one-statement update commits as it ends: when the holder dies first, it may still
# finish in the moment before its own backend is stopped. Either way the answer is true.
@pytest.mark.parametrize(
    ("change", "may_finish"),
    [
        ({"password": "a brand new password", "current_password": PASSWORD}, False),
        ({"full_name": "Ada Lovelace"}, True),
    ],
    ids=["full-rules", "one-statement"],
)
async def test_a_request_in_flight_when_the_database_stops_gets_503(
    postgres: Postgres, resilience_settings: Settings, change: dict[str, str], may_finish: bool
) -> None:
    async with running_app(resilience_settings) as (_, client):
        user = await register(client, "ada")
        headers = await token_for(client, "ada")
        holder = await postgres.connect()
        try:
            await holder.execute("BEGIN")
            await holder.execute(
                "SELECT 1 FROM users WHERE id = $1 FOR UPDATE", uuid.UUID(user["id"])
            )
            patch = asyncio.create_task(
                timed(client, "PATCH", f"/api/v1/users/{user['id']}", json=change, headers=headers)
            )
            await wait_until_blocked(holder)
            postgres.stop()
            response, took = await patch
        finally:
            with contextlib.suppress(Exception):
                await holder.close(timeout=1)
        assert took < 5.0
        finished = may_finish and response.status_code == 200
        if not finished:
            assert_unavailable(response)

        postgres.start()
        await wait_until_ready(client)
        if "password" in change:  # the old password still works: nothing was stored
            headers = await token_for(client, "ada")
        stored = await client.get(f"/api/v1/users/{user['id']}", headers=headers)
        assert stored.json()["version"] == (2 if finished else 1)
        if not finished:
            changed = await client.patch(
                f"/api/v1/users/{user['id']}", json=change, headers=headers
            )
            assert changed.status_code == 200, changed.text
            assert changed.json()["version"] == 2


async def test_connect_timeout_bounds_a_database_that_accepts_but_never_answers(
    postgres: Postgres, resilience_settings: Settings
) -> None:
    # An app with an empty pool of one: every request must open a new connection.
    async with running_app(
        resilience_settings, db_connect_timeout=1.0, db_pool_size=1, db_max_overflow=0
    ) as (app, client):
        # start-up filled the pools: empty them
        await app.state.db.expire()
        with postgres.frozen():
            for attempt in range(2):
                ready, took = await timed(client, "GET", "/readyz")
                assert ready.status_code == 503
                assert took < 3.0
                created, took = await timed(
                    client,
                    "POST",
                    "/api/v1/users",
                    json={
                        "email": f"frozen{attempt}@example.com",
                        "username": f"frozen{attempt}",
                        "password": "p" * 16,
                    },
                )
                assert_unavailable(created)
                assert took < 5.0
        await wait_until_ready(client)
        await register(client, "thawed")
        await assert_every_connection_returned(app)


async def test_readyz_answers_in_time_when_the_open_connections_stop_answering(
    postgres: Postgres, resilience_settings: Settings
) -> None:
    """The contract's "503 when the database does not answer within one second", also
    when the pooled connection itself hangs (it waited for as long as the host did)."""
    async with running_app(resilience_settings, db_pool_size=1, db_max_overflow=0) as (
        app,
        client,
    ):
        assert (await client.get("/readyz")).status_code == 200
        with postgres.host_frozen():
            for _ in range(2):
                ready, took = await timed(client, "GET", "/readyz")
                assert ready.status_code == 503
                assert took < 3.0
        await wait_until_ready(client)
        await assert_every_connection_returned(app)


async def test_a_scrape_answers_in_time_when_the_database_host_is_frozen(
    postgres: Postgres, resilience_settings: Settings
) -> None:
    """Prometheus gives a scrape 10 s by default. The outbox's gauges waited for a frozen
    database for 10-11 s, so the metrics of that very incident were lost; they wait a
    second now, and keep their last values."""
    async with running_app(resilience_settings, db_pool_size=1, db_max_overflow=0) as (
        app,
        client,
    ):
        assert (await client.get("/metrics")).status_code == 200
        with postgres.host_frozen():
            scraped, took = await timed(client, "GET", "/metrics")
            assert scraped.status_code == 200
            assert took < 3.0
            assert "users_api_outbox_backlog" in scraped.text
        await wait_until_ready(client)
        await assert_every_connection_returned(app)


async def test_a_database_that_is_shutting_down_gets_503(
    postgres: Postgres, resilience_settings: Settings
) -> None:
    """A smart shutdown waits for open sessions and refuses new ones (SQLSTATE 57P03)."""
    holder = await postgres.connect()
    try:
        postgres._pg_ctl("stop", "-m", "smart", "--no-wait")
        async with running_app(resilience_settings) as (_, client):
            deadline = time.monotonic() + 5
            for attempt in range(1000):  # pg_ctl only signals; wait until the server refuses
                name = f"late{attempt}"
                response, took = await timed(
                    client,
                    "POST",
                    "/api/v1/users",
                    json={"email": f"{name}@example.com", "username": name, "password": "p" * 16},
                )
                if response.status_code != 201 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            assert_unavailable(response)
            assert took < 5.0
            assert (await client.get("/readyz")).status_code == 503
    finally:
        with contextlib.suppress(Exception):
            await holder.close(timeout=1)
        with contextlib.suppress(subprocess.CalledProcessError):
            postgres._pg_ctl("stop", "-m", "fast", "-w")
