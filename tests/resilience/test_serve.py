"""End to end over real HTTP: `users-api serve` through an outage, and SIGTERM mid-request."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.resilience.conftest import SECRET_KEY, Postgres
from tests.resilience.helpers import (
    HUNG_AFTER_SECONDS,
    PASSWORD,
    assert_unavailable,
    wait_until_blocked,
    wait_until_ready,
)
from tests.resilience.serve import serve
from users_api.db.embedded import DATABASE_NAME, EmbeddedPostgres, server_pid

# Runs on a PostgreSQL of its own: the same whatever TEST_DATABASE_URL says.
pytestmark = pytest.mark.own_database

ADMIN = {"FIRST_ADMIN_EMAIL": "root@example.com", "FIRST_ADMIN_USERNAME": "root"}
GRACE_SECONDS = 10  # `serve`'s timeout_graceful_shutdown
STATEMENT_TIMEOUT_MS = 3000  # well inside the grace period


@pytest.fixture
def workdir() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="users-api-serve-"))
    try:
        yield folder
    finally:
        data = folder / ".data"
        if server_pid(data / "pgdata") is not None:  # serve died without stopping it
            embedded = EmbeddedPostgres(data)
            embedded.start()
            embedded.stop()
        shutil.rmtree(folder, ignore_errors=True)


async def _admin_headers(client: httpx.AsyncClient) -> dict[str, str]:
    response = await client.post(
        "/api/v1/auth/token", data={"username": "root", "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def _create_users(
    client: httpx.AsyncClient, headers: dict[str, str], count: int
) -> list[dict[str, Any]]:
    users = []
    for number in range(count):
        name = f"user{number}"
        body = {"email": f"{name}@example.com", "username": name, "password": PASSWORD}
        response = await client.post("/api/v1/users", json=body, headers=headers)
        assert response.status_code == 201, response.text
        users.append(response.json())
    return users


async def test_serve_over_http_answers_503_during_an_outage_and_recovers(
    postgres: Postgres, workdir: Path
) -> None:
    with serve(
        workdir,
        DATABASE_URL=postgres.url,
        SECRET_KEY=SECRET_KEY,
        FIRST_ADMIN_PASSWORD=PASSWORD,
        DB_CONNECT_TIMEOUT="2",
        ACCESS_LOG="true",
        **ADMIN,
    ) as served:
        async with httpx.AsyncClient(
            base_url=served.base_url, timeout=HUNG_AFTER_SECONDS
        ) as client:
            headers = await _admin_headers(client)
            (created,) = await _create_users(client, headers, 1)
            postgres.stop()
            assert (await client.get("/readyz")).status_code == 503
            me = await client.get("/api/v1/users/me", headers=headers)
            assert_unavailable(me)
            post = await client.post(
                "/api/v1/users",
                json={"email": "x@example.com", "username": "xavier", "password": PASSWORD},
                headers=headers,
            )
            assert_unavailable(post)
            postgres.start()
            await wait_until_ready(client)
            again = await client.get(f"/api/v1/users/{created['id']}", headers=headers)
            assert again.status_code == 200, again.text
        served.terminate()
        assert served.wait(within=GRACE_SECONDS + 5) == 0, served.output
    assert '"GET /readyz HTTP/1.1" 503' in served.output  # ACCESS_LOG=true logs requests
    assert " 500 " not in served.output
    # Every 503 is logged, also those the hot paths render themselves.
    failed = {
        (event["method"], event["path"])
        for event in served.events
        if event["event"] == "request failed" and event["status"] == 503
    }
    assert {("GET", "/api/v1/users/me"), ("POST", "/api/v1/users")} <= failed, served.output


async def test_sigterm_lets_requests_in_flight_finish_or_fail_cleanly_and_exits_0(
    workdir: Path,
) -> None:
    with serve(
        workdir,
        SECRET_KEY=SECRET_KEY,
        FIRST_ADMIN_PASSWORD=PASSWORD,
        DB_STATEMENT_TIMEOUT_MS=str(STATEMENT_TIMEOUT_MS),
        **ADMIN,
    ) as served:
        pgdata = workdir / ".data" / "pgdata"
        dsn = f"postgresql://postgres@/{DATABASE_NAME}?host={served.embedded_socket_dir()}"
        async with httpx.AsyncClient(
            base_url=served.base_url, timeout=HUNG_AFTER_SECONDS
        ) as client:
            headers = await _admin_headers(client)
            users = await _create_users(client, headers, 6)
            released, held = users[:3], users[3:]
            first, second = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
            try:
                for holder, group in ((first, released), (second, held)):
                    await holder.execute("BEGIN")
                    await holder.execute(
                        "SELECT 1 FROM users WHERE id = ANY($1::uuid[]) FOR UPDATE",
                        [uuid.UUID(user["id"]) for user in group],
                    )
                patches = [
                    asyncio.create_task(
                        client.patch(
                            f"/api/v1/users/{user['id']}",
                            json={"full_name": "Changed"},
                            headers=headers,
                        )
                    )
                    for user in users
                ]
                await wait_until_blocked(first, count=len(users))

                served.terminate()
                await asyncio.sleep(0.5)
                with pytest.raises(httpx.ConnectError):  # no new connections while stopping
                    await httpx.AsyncClient().get(f"{served.base_url}/healthz")
                await first.execute("COMMIT")  # the first three may finish now
                responses = await asyncio.gather(*patches)
            finally:
                for holder in (first, second):
                    with contextlib.suppress(Exception):
                        await holder.close(timeout=1)

        finished = [response.json()["id"] for response in responses[:3]]
        assert [response.status_code for response in responses[:3]] == [200] * 3
        for response in responses[3:]:  # the statement timeout ends the other three
            assert_unavailable(response, code="database-timeout")
        exit_status = await asyncio.to_thread(served.wait, GRACE_SECONDS + 5)
        assert exit_status == 0, served.output

    assert "Application shutdown complete" in served.output  # lifespan ran: engine disposed
    assert '"PATCH /api/v1/users/' not in served.output  # no access log by default
    assert "embedded PostgreSQL stopped" in served.output
    assert server_pid(pgdata) is None

    # Nothing half-written: each request was one transaction, all or nothing.
    embedded = EmbeddedPostgres(workdir / ".data")
    url = embedded.start()
    try:
        connection = await asyncpg.connect(
            f"postgresql://postgres@/{DATABASE_NAME}?host={url.query['host']}"
        )
        try:
            rows = await connection.fetch("SELECT id, full_name, version FROM users")
        finally:
            await connection.close()
    finally:
        embedded.stop()
    stored = {str(row["id"]): (row["full_name"], row["version"]) for row in rows}
    for user in users:
        expected = ("Changed", 2) if user["id"] in finished else (None, 1)
        assert stored[user["id"]] == expected
