"""One transaction per request, committed before the response is sent."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import Admin

FAIL_AT_COMMIT = "fail at commit"


@pytest.fixture
async def commit_trap(engine: AsyncEngine) -> AsyncIterator[None]:
    """A deferred constraint trigger: the UPDATE succeeds, the COMMIT then fails."""
    async with engine.begin() as connection:
        await connection.execute(
            text(
                """
                CREATE FUNCTION test_fail_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF NEW.full_name = 'fail at commit' THEN
                        RAISE EXCEPTION 'refused at commit' USING ERRCODE = 'check_violation';
                    END IF;
                    RETURN NEW;
                END $$
                """
            )
        )
        await connection.execute(
            text(
                "CREATE CONSTRAINT TRIGGER test_fail_at_commit AFTER UPDATE ON users "
                "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
                "EXECUTE FUNCTION test_fail_at_commit()"
            )
        )
    yield
    async with engine.begin() as connection:
        await connection.execute(text("DROP TRIGGER test_fail_at_commit ON users"))
        await connection.execute(text("DROP FUNCTION test_fail_at_commit()"))


@pytest.mark.usefixtures("commit_trap")
async def test_a_failed_commit_is_never_a_success(
    admin_client: httpx.AsyncClient, admin: Admin, engine: AsyncEngine
) -> None:
    url = f"/api/v1/users/{admin.id}"
    response = await admin_client.patch(url, json={"full_name": FAIL_AT_COMMIT})
    assert response.status_code >= 500, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert "refused at commit" not in response.text  # nothing of the database leaks
    async with engine.connect() as connection:
        stored = await connection.scalar(
            text("SELECT full_name FROM users WHERE id = :id"), {"id": admin.id}
        )
    assert stored is None
    # The service is fine afterwards, and an ordinary change commits.
    ok = await admin_client.patch(url, json={"full_name": "Root"})
    assert ok.status_code == 200
    assert ok.json()["version"] == 2


async def test_a_refused_request_changes_nothing(
    admin_client: httpx.AsyncClient, admin: Admin, engine: AsyncEngine
) -> None:
    first = await admin_client.post(
        "/api/v1/users",
        json={"email": "ada@example.com", "username": "ada", "password": "long enough password"},
    )
    assert first.status_code == 201
    # Valid name change plus a taken email: the whole PATCH fails, the name stays.
    response = await admin_client.patch(
        f"/api/v1/users/{admin.id}", json={"full_name": "New Name", "email": "ADA@example.com"}
    )
    assert response.status_code == 409
    assert response.json()["field"] == "email"
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                text("SELECT full_name, version FROM users WHERE id = :id"), {"id": admin.id}
            )
        ).one()
    assert row == (None, 1)
