"""PATCH /api/v1/users/{id}: merge-patch semantics, versions, If-Match, conflicts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from uuid_utils.compat import uuid7

from tests.users.helpers import (
    PASSWORD,
    RFC3339_UTC,
    USER_KEYS,
    assert_conflict,
    assert_no_secrets,
    assert_problem,
    assert_validation_problem,
    create_user,
    password_hash_of,
    user_url,
)
from users_api.security.passwords import Passwords


async def test_absent_fields_stay_and_sent_fields_change(client: httpx.AsyncClient) -> None:
    created = await create_user(client, full_name="Ada Lovelace")

    response = await client.patch(user_url(created["id"]), json={"username": "Countess"})

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == USER_KEYS
    assert body["username"] == "Countess"
    for unchanged in ("id", "email", "full_name", "is_active", "is_admin", "created_at"):
        assert body[unchanged] == created[unchanged], unchanged
    assert body["version"] == 2
    assert response.headers["etag"] == '"2"'
    assert RFC3339_UTC.fullmatch(body["updated_at"])
    assert body["updated_at"] >= created["updated_at"]
    assert_no_secrets(body)
    assert (await client.get(user_url(created["id"]))).json() == body


async def test_null_full_name_clears_it(client: httpx.AsyncClient) -> None:
    created = await create_user(client, full_name="Ada Lovelace")

    response = await client.patch(user_url(created["id"]), json={"full_name": None})

    assert response.status_code == 200, response.text
    assert response.json()["full_name"] is None
    assert (await client.get(user_url(created["id"]))).json()["full_name"] is None


async def test_every_field_can_change_at_once(client: httpx.AsyncClient) -> None:
    created = await create_user(client)
    patch = {
        "email": "Countess@Lovelace.ORG",
        "username": "Countess",
        "full_name": "Augusta Ada King",
        "is_active": False,
        "is_admin": True,
    }

    response = await client.patch(user_url(created["id"]), json=patch)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["email"] == "Countess@lovelace.org"
    assert {key: body[key] for key in patch if key != "email"} == {
        key: value for key, value in patch.items() if key != "email"
    }
    assert body["version"] == 2


async def test_each_change_bumps_the_version_by_one(client: httpx.AsyncClient) -> None:
    created = await create_user(client)
    for version, name in enumerate(["One", "Two", "Three"], start=2):
        response = await client.patch(user_url(created["id"]), json={"full_name": name})
        assert response.json()["version"] == version
        assert response.headers["etag"] == f'"{version}"'


async def test_email_and_username_may_change_their_own_case(client: httpx.AsyncClient) -> None:
    created = await create_user(client)
    response = await client.patch(
        user_url(created["id"]), json={"username": "ADA", "email": "ADA@example.com"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["username"] == "ADA"
    assert response.json()["email"] == "ADA@example.com"


async def test_password_change_replaces_the_hash(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    created = await create_user(client)
    old_hash = await password_hash_of(engine, created["id"])
    new_password = "a brand new secret phrase"

    response = await client.patch(user_url(created["id"]), json={"password": new_password})

    assert response.status_code == 200, response.text
    assert response.json()["version"] == 2
    assert_no_secrets(response.json())
    new_hash = await password_hash_of(engine, created["id"])
    assert new_hash != old_hash
    passwords = Passwords()
    assert (await passwords.verify_and_update(new_password, new_hash))[0]
    assert not (await passwords.verify_and_update(PASSWORD, new_hash))[0]


@pytest.mark.parametrize(
    "patch",
    [
        {"password": "short"},
        {"password": "qwerty123456"},
        {"password": "y" * 129},
        {"password": "ada@example.com"},  # equal to the current email
        {"password": "ADA.lovelace.12", "username": "ada.Lovelace.12"},  # the new username
    ],
)
async def test_password_policy_applies_on_change(
    client: httpx.AsyncClient, engine: AsyncEngine, patch: dict[str, Any]
) -> None:
    created = await create_user(client)
    old_hash = await password_hash_of(engine, created["id"])

    response = await client.patch(user_url(created["id"]), json=patch)

    assert_validation_problem(response, "password")
    assert await password_hash_of(engine, created["id"]) == old_hash
    assert (await client.get(user_url(created["id"]))).json() == created


async def test_empty_patch_changes_nothing(client: httpx.AsyncClient) -> None:
    created = await create_user(client)
    response = await client.patch(user_url(created["id"]), json={})
    assert response.status_code == 200
    assert response.json() == created
    assert response.headers["etag"] == '"1"'


async def test_if_match_current_succeeds(client: httpx.AsyncClient) -> None:
    created = await create_user(client)
    response = await client.patch(
        user_url(created["id"]), json={"full_name": "Ada"}, headers={"If-Match": '"1"'}
    )
    assert response.status_code == 200, response.text
    assert response.headers["etag"] == '"2"'
    assert response.json() == created | {
        "full_name": "Ada",
        "version": 2,
        "updated_at": response.json()["updated_at"],
    }
    assert (await client.get(user_url(created["id"]))).json() == response.json()


@pytest.mark.parametrize("field", ["full_name", "username", "email"])
async def test_sending_the_current_value_keeps_the_version(
    client: httpx.AsyncClient, field: str
) -> None:
    created = await create_user(client, full_name="Ada Lovelace")
    response = await client.patch(user_url(created["id"]), json={field: created[field]})
    assert response.status_code == 200, response.text
    assert response.json() == created
    assert response.headers["etag"] == '"1"'


@pytest.mark.parametrize(
    "header", ['"2"', '"0"', 'W/"0"', "garbage", '""', '"999999999999999999"', '"2147483648"']
)
async def test_if_match_stale_is_412_and_changes_nothing(
    client: httpx.AsyncClient, header: str
) -> None:
    created = await create_user(client)

    response = await client.patch(
        user_url(created["id"]), json={"full_name": "Ada"}, headers={"If-Match": header}
    )

    assert_problem(response, 412)
    assert (await client.get(user_url(created["id"]))).json() == created


async def test_if_match_of_a_previous_version_is_412(client: httpx.AsyncClient) -> None:
    created = await create_user(client)
    first = await client.patch(
        user_url(created["id"]), json={"full_name": "One"}, headers={"If-Match": '"1"'}
    )
    assert first.status_code == 200
    second = await client.patch(
        user_url(created["id"]), json={"full_name": "Two"}, headers={"If-Match": '"1"'}
    )
    assert_problem(second, 412)
    assert (await client.get(user_url(created["id"]))).json()["full_name"] == "One"


async def test_concurrent_patches_with_one_etag_have_exactly_one_winner(
    client: httpx.AsyncClient,
) -> None:
    created = await create_user(client)

    responses = await asyncio.gather(
        *(
            client.patch(
                user_url(created["id"]),
                json={"full_name": f"Writer {n}"},
                headers={"If-Match": '"1"'},
            )
            for n in range(12)
        )
    )

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] + [412] * 11, statuses
    winner = next(response for response in responses if response.status_code == 200)
    for response in responses:
        if response.status_code == 412:
            assert_problem(response, 412)
    stored = (await client.get(user_url(created["id"]))).json()
    assert stored["version"] == 2
    assert stored["full_name"] == winner.json()["full_name"]


async def test_concurrent_unconditional_patches_all_count(client: httpx.AsyncClient) -> None:
    created = await create_user(client)
    responses = await asyncio.gather(
        *(client.patch(user_url(created["id"]), json={"full_name": f"W{n}"}) for n in range(10))
    )
    assert {response.status_code for response in responses} == {200}
    assert sorted(response.json()["version"] for response in responses) == list(range(2, 12))


@pytest.mark.parametrize(
    ("field", "taken"),
    [
        ("email", "grace@example.com"),
        ("email", "Grace@EXAMPLE.com"),
        ("username", "grace"),
        ("username", "GRACE"),
    ],
)
async def test_taking_anothers_email_or_username_is_409(
    client: httpx.AsyncClient, field: str, taken: str
) -> None:
    await create_user(client, "grace")
    ada = await create_user(client, "ada")

    response = await client.patch(user_url(ada["id"]), json={field: taken})

    assert_conflict(response, field)
    assert (await client.get(user_url(ada["id"]))).json() == ada


async def test_unknown_id_is_404(client: httpx.AsyncClient) -> None:
    response = await client.patch(user_url(uuid7()), json={"full_name": "Nobody"})
    assert_problem(response, 404)


async def test_non_uuid_id_is_404_or_422(client: httpx.AsyncClient) -> None:
    response = await client.patch(user_url("nope"), json={"full_name": "Nobody"})
    assert response.status_code in (404, 422)
    assert_problem(response, response.status_code)


@pytest.mark.parametrize("field", ["email", "username", "password", "is_active", "is_admin"])
async def test_null_for_a_non_nullable_field_is_422(client: httpx.AsyncClient, field: str) -> None:
    created = await create_user(client)
    response = await client.patch(user_url(created["id"]), json={field: None})
    assert_validation_problem(response, field)
    assert (await client.get(user_url(created["id"]))).json() == created


@pytest.mark.parametrize(
    "patch",
    [
        {"email": "not-an-email"},
        {"username": "a b"},
        {"username": "ab"},
        {"full_name": "x" * 201},
        {"is_admin": "sometimes"},
        # Strict booleans: lax mode would read these as true or false.
        {"is_admin": "yes"},
        {"is_active": "false"},
        {"email_verified": 1},
        {"full_name": 5},
        {"id": "0190f0c8-7a3e-7b6c-9d2e-4f5a6b7c8d9e"},
        {"version": 9},
        {"password_hash": "x"},
        {"created_at": "2020-01-01T00:00:00Z"},
        {"nickname": "Ada"},
    ],
)
async def test_invalid_or_unknown_fields_are_422(
    client: httpx.AsyncClient, patch: dict[str, Any]
) -> None:
    created = await create_user(client)
    response = await client.patch(user_url(created["id"]), json=patch)
    assert_validation_problem(response, *patch)
    assert (await client.get(user_url(created["id"]))).json() == created


async def test_unknown_id_with_invalid_body_is_never_500(client: httpx.AsyncClient) -> None:
    response = await client.patch(user_url(uuid7()), json={"nickname": "x"})
    assert response.status_code in (404, 422)


@pytest.fixture
async def update_statements(engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    """Count every UPDATE statement on users: a statement trigger fires even when no
    row matches, and a sequence counts even in a transaction that rolls back."""
    async with engine.begin() as connection:
        await connection.execute(text("CREATE SEQUENCE test_updates"))
        await connection.execute(
            text(
                "CREATE FUNCTION test_count_update() RETURNS trigger LANGUAGE plpgsql AS $$"
                " BEGIN PERFORM nextval('test_updates'); RETURN NULL; END $$"
            )
        )
        await connection.execute(
            text(
                "CREATE TRIGGER test_count_update BEFORE UPDATE ON users"
                " FOR EACH STATEMENT EXECUTE FUNCTION test_count_update()"
            )
        )
    yield engine
    async with engine.begin() as connection:
        await connection.execute(text("DROP TRIGGER test_count_update ON users"))
        await connection.execute(text("DROP FUNCTION test_count_update()"))
        await connection.execute(text("DROP SEQUENCE test_updates"))


async def _updates(engine: AsyncEngine) -> int:
    """UPDATE statements since the last call."""
    async with engine.begin() as connection:
        counted = await connection.scalar(
            text("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM test_updates")
        )
        await connection.execute(text("SELECT setval('test_updates', 1, false)"))
    return int(counted or 0)


async def test_a_patch_the_guarded_update_does_not_settle_runs_it_once(
    client: httpx.AsyncClient, update_statements: AsyncEngine
) -> None:
    """Stale If-Match, unchanged values, an unknown id: one UPDATE statement, not a
    second one (or a second transaction) after it, and the rules say why it changed
    nothing."""
    user = await create_user(client, "ada")
    await _updates(update_statements)
    url = user_url(user["id"])
    cases: list[tuple[str, dict[str, Any], dict[str, str], int]] = [
        # Not the email: a new address is mailed, so it goes through the row lock.
        (url, {"username": "ada2"}, {"If-Match": '"99"'}, 412),
        (url, {"username": "ada", "full_name": None}, {}, 200),
        (url, {"full_name": None}, {}, 200),
        (user_url(uuid7()), {"username": "bobby"}, {}, 404),
    ]
    for target, patch, headers, expected in cases:
        response = await client.patch(target, json=patch, headers=headers)
        assert response.status_code == expected, (patch, response.text)
        assert await _updates(update_statements) == 1, patch
    assert (await client.get(url)).json()["version"] == 1
