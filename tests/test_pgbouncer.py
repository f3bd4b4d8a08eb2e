"""The service through a real PgBouncer in transaction mode (Debian's 1.18: it tracks no
prepared statements), in front of this run's database (`tests/pgbouncer.py`).

PgBouncer hands each server connection to another client at the end of every
transaction; four server connections for 32 clients make that happen all the time.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from tests import databases, pgbouncer
from tests.conftest import asgi_client
from tests.processes import clean_environment, run_cli
from users_api.app import create_app
from users_api.config import Settings
from users_api.db.database import Database, Unit, connect_arguments
from users_api.db.pooler import behind_pooler
from users_api.errors import DatabaseTimeout

pytestmark = pytest.mark.skipif(
    not pgbouncer.available(), reason="no pgbouncer: .ci/services installs it"
)

SERVER_CONNECTIONS = 4
CLIENTS = 32
ROUNDS = 10


@pytest.fixture(scope="module")
def pooled_server(direct_database_url: str) -> Iterator[str]:
    """This run's server through PgBouncer (any of its databases, by name)."""
    with pgbouncer.pgbouncer(direct_database_url, pool_size=SERVER_CONNECTIONS) as url:
        yield url


@pytest.fixture
def pooled_settings(settings: Settings, pooled_server: str, database_url: str) -> Settings:
    url = databases.on_server(database_url, pooled_server)
    return settings.model_copy(update={"database_url": url, "db_pool_size": CLIENTS})


@pytest.fixture
async def pooled_app(pooled_settings: Settings, app: FastAPI) -> AsyncIterator[FastAPI]:
    """An app of its own on the pooler; `app` is there for the migrated schema."""
    pooled = create_app(pooled_settings)
    async with pooled.router.lifespan_context(pooled):
        yield pooled


async def test_a_pooler_is_found_and_a_direct_connection_is_not(
    settings: Settings, pooled_settings: Settings, direct_database_url: str
) -> None:
    assert await behind_pooler(pooled_settings) is True
    direct = settings.model_copy(update={"database_url": direct_database_url})
    assert await behind_pooler(direct) is False
    forced = settings.model_copy(update={"db_pgbouncer": "true"})
    assert await behind_pooler(forced) is True


async def test_asyncpg_defaults_through_the_pooler_do_break(pooled_settings: Settings) -> None:
    """What DB_PGBOUNCER is for: asyncpg's named statements and startup parameters
    through PgBouncer 1.18 fail (here the statement timeout at start-up is refused)."""
    with pytest.raises(asyncpg.PostgresError, match="statement_timeout"):
        await asyncpg.connect(**connect_arguments(pooled_settings, pooled=False))


async def _create_users(admin_client: httpx.AsyncClient, prefix: str) -> list[dict[str, str]]:
    """One user per client, created through the app on the direct connection."""
    created = []
    for number in range(CLIENTS):
        response = await admin_client.post(
            "/api/v1/users",
            json={
                "email": f"{prefix}{number}@example.com",
                "username": f"{prefix}{number}",
                "password": "a long enough password 1",
            },
        )
        assert response.status_code == 201, response.text
        created.append(response.json())
    return created


async def test_32_clients_through_the_pooler_each_get_their_own_answers(
    pooled_app: FastAPI, admin_client: httpx.AsyncClient
) -> None:
    created = await _create_users(admin_client, "pooled")
    token = admin_client.headers["Authorization"]

    async def one_client(user: dict[str, str]) -> list[str]:
        wrong = []
        async with asgi_client(pooled_app) as client:
            client.headers["Authorization"] = token
            for _ in range(ROUNDS):
                response = await client.get(f"/api/v1/users/{user['id']}")
                if response.status_code != 200 or response.json()["username"] != user["username"]:
                    wrong.append(f"{response.status_code} {response.text[:200]}")
                listed = await client.get(
                    "/api/v1/users", params={"username": str(user["username"])}
                )
                names = [item["username"] for item in listed.json().get("items", [])]
                if listed.status_code != 200 or str(user["username"]) not in names:
                    wrong.append(f"list {listed.status_code} {listed.text[:200]}")
        return wrong

    outcomes = await asyncio.gather(*(one_client(user) for user in created))
    assert [wrong for wrong in outcomes if wrong] == []


async def test_the_statement_timeout_holds_behind_the_pooler(pooled_settings: Settings) -> None:
    """Set per transaction (`SET LOCAL`), not at connection start-up."""
    tuned = pooled_settings.model_copy(
        update={"db_statement_timeout_ms": 200, "db_pool_size": 1, "db_pgbouncer": "true"}
    )
    database = await Database.open(tuned, unique_fields={})
    try:

        async def slow(unit: Unit) -> None:
            await unit.connection.execute("SELECT pg_sleep(2)")

        with pytest.raises(DatabaseTimeout):
            await database.run(slow, transaction=False)

        async def timeout(unit: Unit) -> str:
            assert unit.connection.is_in_transaction()  # even a lone statement
            return str(await unit.connection.fetchval("SHOW statement_timeout"))

        assert await database.run(timeout, transaction=False) == "200ms"
    finally:
        await database.close()


@pytest.mark.parametrize(("ours_ms", "bare"), [(300, True), (5000, True), (200, False)])
async def test_with_the_timeout_kept_by_the_server_a_lone_statement_runs_bare(
    settings: Settings, pooled_server: str, fresh_database_url: str, ours_ms: int, bare: bool
) -> None:
    """`ALTER DATABASE … SET statement_timeout` (or per role), at most ours: a lone
    statement needs no transaction of its own to be bounded; a looser one does."""
    name = make_url(fresh_database_url).database
    direct = await asyncpg.connect(fresh_database_url.replace("+asyncpg", ""))
    try:
        await direct.execute(f"ALTER DATABASE \"{name}\" SET statement_timeout = '300ms'")
    finally:
        await direct.close()
    pooled = databases.on_server(fresh_database_url, pooled_server)
    tuned = settings.model_copy(
        update={"database_url": pooled, "db_statement_timeout_ms": ours_ms, "db_pool_size": 1}
    )
    database = await Database.open(tuned, unique_fields={})
    try:

        async def in_transaction(unit: Unit) -> bool:
            return bool(unit.connection.is_in_transaction())

        assert await database.run(in_transaction, transaction=False) is not bare

        async def slow(unit: Unit) -> None:
            await unit.connection.execute("SELECT pg_sleep(2)")

        with pytest.raises(DatabaseTimeout):
            await database.run(slow, transaction=False)
    finally:
        await database.close()


async def test_migrate_refuses_a_pooler_without_a_direct_url(
    tmp_path: Path, pooled_server: str, fresh_database_url: str
) -> None:
    pooled = databases.on_server(fresh_database_url, pooled_server)
    env = clean_environment(tmp_path, DATABASE_URL=pooled)
    refused = run_cli("migrate", cwd=tmp_path, env=env)
    assert refused.returncode != 0
    assert "MIGRATIONS_DATABASE_URL" in refused.stderr
    assert "Traceback" not in refused.stderr

    env["MIGRATIONS_DATABASE_URL"] = fresh_database_url
    done = run_cli("migrate", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    connection = await asyncpg.connect(fresh_database_url.replace("+asyncpg", ""))
    try:
        assert await connection.fetchval("SELECT count(*) FROM alembic_version") == 1
    finally:
        await connection.close()


def test_serve_refuses_a_schema_behind_head_behind_a_pooler(
    tmp_path: Path, pooled_server: str, fresh_database_url: str
) -> None:
    pooled = databases.on_server(fresh_database_url, pooled_server)
    env = clean_environment(tmp_path, DATABASE_URL=pooled, SECRET_KEY="k" * 40)
    refused = run_cli("serve", "--port", "0", cwd=tmp_path, env=env)
    assert refused.returncode != 0
    assert "not at" in refused.stderr
    assert "MIGRATIONS_DATABASE_URL" in refused.stderr
    assert "Traceback" not in refused.stderr


# --- PgBouncer >= 1.21 with prepared statements (DB_PGBOUNCER=prepared) ---------------

recent = pytest.mark.skipif(
    not pgbouncer.recent_available(),
    reason="no PgBouncer >= 1.21: scripts/build-pgbouncer builds one (.ci/services runs it)",
)


@pytest.fixture(scope="module")
def prepared_server(direct_database_url: str) -> Iterator[str]:
    """This run's server through PgBouncer 1.24 keeping prepared statements."""
    with pgbouncer.pgbouncer(
        direct_database_url,
        pool_size=SERVER_CONNECTIONS,
        binary=pgbouncer.RECENT,
        prepared_statements=200,
    ) as url:
        yield url


@pytest.fixture
async def prepared_app(
    settings: Settings, prepared_server: str, database_url: str, app: FastAPI
) -> AsyncIterator[FastAPI]:
    url = databases.on_server(database_url, prepared_server)
    prepared = create_app(
        settings.model_copy(
            update={"database_url": url, "db_pool_size": CLIENTS, "db_pgbouncer": "prepared"}
        )
    )
    async with prepared.router.lifespan_context(prepared):
        yield prepared


def _server_prepared_statements(pooled_url: str) -> int:
    """What PgBouncer's admin console says its server connections hold prepared."""
    url = make_url(pooled_url)
    shown = subprocess.run(
        [
            "psql",
            "-h",
            str(url.host),
            "-p",
            str(url.port),
            "-U",
            str(url.username or "postgres"),
            "-d",
            "pgbouncer",
            "-A",
            "-F",
            "\t",
            "-c",
            "SHOW SERVERS",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    header = shown[0].split("\t")
    column = header.index("prepared_statements")
    return sum(int(line.split("\t")[column]) for line in shown[1:] if "\t" in line)


@recent
async def test_32_clients_through_a_pooler_that_keeps_prepared_statements(
    prepared_app: FastAPI, prepared_server: str, admin_client: httpx.AsyncClient
) -> None:
    """DB_PGBOUNCER=prepared: named statements through PgBouncer 1.24, four server
    connections for 32 clients, and every answer the one asked for."""
    users = await _create_users(admin_client, "kept")
    token = admin_client.headers["Authorization"]

    async def one_client(user: dict[str, str]) -> list[str]:
        wrong = []
        async with asgi_client(prepared_app) as client:
            client.headers["Authorization"] = token
            for round_ in range(ROUNDS):
                got = await client.get(f"/api/v1/users/{user['id']}")
                if got.status_code != 200 or got.json()["username"] != user["username"]:
                    wrong.append(f"{got.status_code} {got.text[:200]}")
                changed = await client.patch(
                    f"/api/v1/users/{user['id']}",
                    json={"full_name": f"{user['username']} {round_}"},
                )
                if changed.status_code != 200 or changed.json()["id"] != user["id"]:
                    wrong.append(f"patch {changed.status_code} {changed.text[:200]}")
        return wrong

    outcomes = await asyncio.gather(*(one_client(user) for user in users))
    assert [wrong for wrong in outcomes if wrong] == []
    # The statements were prepared on the server connections, by PgBouncer's names.
    assert _server_prepared_statements(prepared_server) > 0


@recent
async def test_unnamed_statements_leave_nothing_prepared_on_the_same_pooler(
    settings: Settings, prepared_server: str, database_url: str, admin_client: httpx.AsyncClient
) -> None:
    """DB_PGBOUNCER=true through the same PgBouncer 1.24 prepares nothing on its server
    connections: the count above is the prepared mode's doing."""
    url = databases.on_server(database_url, prepared_server)
    unnamed = create_app(settings.model_copy(update={"database_url": url, "db_pgbouncer": "true"}))
    before = _server_prepared_statements(prepared_server)
    async with unnamed.router.lifespan_context(unnamed), asgi_client(unnamed) as client:
        for _ in range(5):
            assert (await client.get("/readyz")).status_code == 200
            assert (await client.get("/api/v1/users")).status_code == 401
    # Not one more: PgBouncer may close a server connection meanwhile (its statements go
    # with it: once in CI, 27 before and 18 after), but unnamed statements add none.
    assert _server_prepared_statements(prepared_server) <= before
