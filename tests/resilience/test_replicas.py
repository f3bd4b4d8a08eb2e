"""Read replicas on a real primary and a real streaming replica (`tests/replication.py`):
read-your-writes with `X-Consistency-Token`, and a replica that stops and comes back.

Each test counts stale answers: a list that misses the user just created, or shows the
old name just changed. With the token sent back there must be none; without it (what a
client that ignores the header gets) the replica's lag shows, so the count can fail.
The replica applies each commit 50 ms late: on an idle machine a replica on loopback
often caught up before the list, and the test that must see the lag saw none.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import ADMIN_PASSWORD, asgi_client, login
from tests.replication import Replication, primary_and_replica
from users_api.app import create_app
from users_api.config import Settings
from users_api.db.migrations import upgrade_on
from users_api.db.replicas import HEADER

pytestmark = pytest.mark.own_database

# Without the token a good part of the reads are stale once the replica is in use: 100
# pairs show it surely and take a third of the time of 300, each pair signing a user up
# (a hash) on CI's loaded, coverage-traced workers.
PAIRS = 100
APPLY_DELAY_MS = 50
PASSWORD = "a long enough password 1"


@pytest.fixture(scope="module")
def replication() -> Iterator[Replication]:
    with primary_and_replica(apply_delay_ms=APPLY_DELAY_MS) as servers:
        yield servers


@pytest.fixture
async def replicated_app(
    replication: Replication, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[FastAPI]:
    engine = create_async_engine(replication.primary.url)
    async with engine.begin() as connection:
        await upgrade_on(connection)
    await engine.dispose()
    settings = Settings(
        database_url=replication.primary.url,
        database_replica_urls=replication.replica.url,
        secret_key="test-secret-key-that-is-at-least-32-bytes-long",
        data_dir=tmp_path_factory.mktemp("data"),
        outbox_poll_seconds=3600,
        first_admin_email="root@example.com",
        first_admin_username="root",
        first_admin_password=ADMIN_PASSWORD,
        _env_file=None,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app
    engine = create_async_engine(replication.primary.url)
    async with engine.begin() as connection:
        from sqlalchemy import text

        await connection.execute(
            text("TRUNCATE users, refresh_tokens, outbox, events, groups CASCADE")
        )
    await engine.dispose()


@pytest.fixture
async def client(replicated_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(replicated_app) as client:
        tokens = await login(client, "root", ADMIN_PASSWORD)
        client.headers["Authorization"] = f"Bearer {tokens['access_token']}"
        yield client


async def _listed(client: httpx.AsyncClient, username: str, token: str | None) -> list[dict]:  # type: ignore[type-arg]
    headers = {HEADER: token} if token is not None else {}
    response = await client.get("/api/v1/users", params={"username": username}, headers=headers)
    assert response.status_code == 200, response.text
    items: list[dict] = response.json()["items"]  # type: ignore[type-arg]
    return items


async def _stale_pairs(client: httpx.AsyncClient, *, send_token: bool, tag: str) -> int:
    """300 create-then-list and 300 update-then-list pairs; how many lists were stale."""
    stale = 0
    for number in range(PAIRS):
        name = f"{tag}{number}"
        created = await client.post(
            "/api/v1/users",
            json={"email": f"{name}@example.com", "username": name, "password": PASSWORD},
        )
        assert created.status_code == 201, created.text
        token = created.headers.get(HEADER)
        assert token  # every answer to a write carries one
        if not await _listed(client, name, token if send_token else None):
            stale += 1
        changed = await client.patch(
            f"/api/v1/users/{created.json()['id']}", json={"full_name": f"Changed {number}"}
        )
        assert changed.status_code == 200, changed.text
        listed = await _listed(client, name, changed.headers[HEADER] if send_token else None)
        if not listed or listed[0]["full_name"] != f"Changed {number}":
            stale += 1
    return stale


def _replica_reads(app: FastAPI) -> bool:
    replicas = app.state.db.replicas
    return bool(replicas is not None and any(replica.usable for replica in replicas.replicas))


async def _replica_in_use(app: FastAPI) -> None:
    """Until the monitor finds the replica well: an idle one's last replayed transaction
    is old, so it starts out as lagging, and the first reads all go to the primary."""
    deadline = time.monotonic() + 30
    while not _replica_reads(app):
        assert time.monotonic() < deadline, "the replica was never used"
        await asyncio.sleep(0.1)


async def test_with_the_token_sent_back_no_read_is_stale(
    client: httpx.AsyncClient, replicated_app: FastAPI
) -> None:
    await _replica_in_use(replicated_app)
    assert await _stale_pairs(client, send_token=True, tag="ryw") == 0
    # Still in use: an empty page on the replica (a user not replayed yet) checked the
    # caller there, and a caller who had just signed in was "unauthorized": benched.
    assert _replica_reads(replicated_app)


async def test_without_the_token_the_replica_s_lag_shows(
    client: httpx.AsyncClient, replicated_app: FastAPI
) -> None:
    """The same pairs, the token ignored: the test above could fail."""
    await _replica_in_use(replicated_app)
    assert await _stale_pairs(client, send_token=False, tag="lag") > 0
    assert _replica_reads(replicated_app)


async def test_a_replica_stopped_mid_run_costs_no_request_and_is_used_again(
    client: httpx.AsyncClient, replicated_app: FastAPI, replication: Replication
) -> None:
    async def some_reads(count: int) -> None:
        for _ in range(count):
            response = await client.get("/api/v1/users")
            assert response.status_code == 200, response.text

    await some_reads(20)
    stopping = asyncio.create_task(asyncio.to_thread(replication.replica.stop))
    while not stopping.done():  # reads all through the stop
        await some_reads(5)
    await stopping
    await some_reads(50)
    assert not _replica_reads(replicated_app)

    await asyncio.to_thread(replication.replica.start)
    deadline = time.monotonic() + 30
    while not _replica_reads(replicated_app):  # the monitor finds it well again
        assert time.monotonic() < deadline, "the replica was not used again"
        await some_reads(5)
        await asyncio.sleep(0.2)
    await some_reads(20)


async def test_audit_and_groups_lists_read_your_writes_and_admins_only(
    client: httpx.AsyncClient, replicated_app: FastAPI
) -> None:
    created = await client.post("/api/v1/groups", json={"display_name": "Replicated"})
    assert created.status_code == 201, created.text
    headers = {HEADER: created.headers[HEADER]}
    audit = await client.get(
        "/api/v1/audit-events", params={"type": "group.created"}, headers=headers
    )
    assert audit.status_code == 200, audit.text
    assert [item["subject"]["id"] for item in audit.json()["items"]] == [created.json()["id"]]
    listed = await client.get("/api/v1/groups", headers=headers)
    assert [item["id"] for item in listed.json()["items"]] == [created.json()["id"]]

    async with asgi_client(replicated_app) as anyone:
        signed_up = await anyone.post(
            "/api/v1/users",
            json={"email": "ada@example.com", "username": "ada", "password": PASSWORD},
        )
        assert signed_up.status_code == 201, signed_up.text
        tokens = await login(anyone, "ada", PASSWORD)
        anyone.headers["Authorization"] = f"Bearer {tokens['access_token']}"
        assert (await anyone.get("/api/v1/audit-events")).status_code == 403
        assert (await anyone.get("/api/v1/groups")).status_code == 403


def _replica_dsn(replication: Replication) -> str:
    return replication.replica.url.replace("postgresql+asyncpg://", "postgresql://")


async def test_a_caller_who_signed_in_a_moment_ago_gets_the_replica_s_page(
    replicated_app: FastAPI, replication: Replication
) -> None:
    """Who may list is decided on the primary; the page from the replica held the same
    check of the caller, whose new session was not replayed yet: an empty page."""
    await _replica_in_use(replicated_app)
    replica = await asyncpg.connect(_replica_dsn(replication))
    try:
        deadline = time.monotonic() + 30
        while not await replica.fetchval("SELECT count(*) FROM users"):  # root, replayed
            assert time.monotonic() < deadline, "the first admin never reached the replica"
            await asyncio.sleep(0.1)
        await replica.execute("SELECT pg_wal_replay_pause()")
        async with asgi_client(replicated_app) as fresh:
            tokens = await login(fresh, "root", ADMIN_PASSWORD)  # a session made now
            fresh.headers["Authorization"] = f"Bearer {tokens['access_token']}"
            assert _replica_reads(replicated_app)
            listed = await fresh.get("/api/v1/users")
            assert listed.status_code == 200, listed.text
            assert [user["username"] for user in listed.json()["items"]] == ["root"]
            assert _replica_reads(replicated_app)  # the page came from it, not the primary
    finally:
        await replica.execute("SELECT pg_wal_replay_resume()")
        await replica.close()


async def test_a_replica_cut_off_from_its_primary_is_skipped_once_it_is_too_old(
    client: httpx.AsyncClient, replicated_app: FastAPI, replication: Replication
) -> None:
    """It has replayed all it received, so it looked current for ever, and a client
    without a token read data of any age. Its data's age is now its last replayed
    transaction's, so it is skipped past REPLICA_MAX_LAG_SECONDS (5)."""
    await _replica_in_use(replicated_app)
    replica = await asyncpg.connect(_replica_dsn(replication))
    try:
        conninfo = await replica.fetchval("SHOW primary_conninfo")
        await replica.execute("ALTER SYSTEM SET primary_conninfo = 'host=127.0.0.1 port=1'")
        await replica.execute("SELECT pg_reload_conf()")
        created = await client.post(
            "/api/v1/users",
            json={"email": "late@example.com", "username": "late", "password": PASSWORD},
        )
        assert created.status_code == 201, created.text
        deadline = time.monotonic() + 20
        while _replica_reads(replicated_app):
            assert time.monotonic() < deadline, "a replica cut off was still read"
            await asyncio.sleep(0.2)
        # Reads go to the primary now: the user is there for a client without a token.
        assert [user["username"] for user in await _listed(client, "late", None)] == ["late"]
    finally:
        quoted = conninfo.replace("'", "''")
        await replica.execute(f"ALTER SYSTEM SET primary_conninfo = '{quoted}'")
        await replica.execute("SELECT pg_reload_conf()")
        await replica.close()
    await _replica_in_use(replicated_app)  # streaming again: used again
