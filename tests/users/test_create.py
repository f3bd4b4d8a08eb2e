"""POST /api/v1/users: the created user, conflicts, and every validation rule."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import BASE_URL, Admin
from tests.users.helpers import (
    PASSWORD,
    RFC3339_UTC,
    USER_KEYS,
    USERS,
    assert_conflict,
    assert_no_secrets,
    assert_problem,
    assert_validation_problem,
    create_user,
    password_hash_of,
    user_url,
    without_admin,
)
from users_api.security.passwords import Passwords
from users_api.users.service import UserService


def valid_body(**overrides: Any) -> dict[str, Any]:
    return {"email": "ada@example.com", "username": "ada", "password": PASSWORD, **overrides}


async def test_created_user_has_the_contract_shape(client: httpx.AsyncClient) -> None:
    before = datetime.now(UTC) - timedelta(minutes=5)
    response = await client.post(USERS, json=valid_body(full_name="Ada Lovelace"))

    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == USER_KEYS
    user_id = uuid.UUID(body["id"])
    assert user_id.version == 7
    assert body["id"] == str(user_id)  # canonical, lower case
    assert body["email"] == "ada@example.com"
    assert body["username"] == "ada"
    assert body["full_name"] == "Ada Lovelace"
    assert body["is_active"] is True
    assert body["is_admin"] is False
    assert body["mfa_enabled"] is False
    assert body["version"] == 1
    for stamp in ("created_at", "updated_at"):
        assert RFC3339_UTC.fullmatch(body[stamp]), body[stamp]
        assert datetime.fromisoformat(body[stamp]) > before
    assert body["created_at"] == body["updated_at"]
    assert response.headers["location"] == user_url(body["id"])
    assert response.headers["etag"] == '"1"'
    assert_no_secrets(body)


async def test_location_points_at_the_created_user(client: httpx.AsyncClient) -> None:
    created = await client.post(USERS, json=valid_body())
    fetched = await client.get(created.headers["location"])
    assert fetched.status_code == 200
    assert fetched.json() == created.json()


@pytest.mark.parametrize("root_path", ["", "/behind/a/proxy"])
async def test_location_is_the_path_of_the_get_user_route(app: FastAPI, root_path: str) -> None:
    """As `url_for` would give it, mount point (ASGI `root_path`) included."""
    transport = httpx.ASGITransport(app=app, root_path=root_path)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        name = f"at{len(root_path)}"
        created = await client.post(
            USERS, json=valid_body(username=name, email=f"{name}@example.com")
        )
    assert created.status_code == 201, created.text
    expected = root_path + app.url_path_for("get_user", user_id=created.json()["id"])
    assert created.headers["location"] == expected


async def test_ids_are_unique_and_time_ordered(client: httpx.AsyncClient) -> None:
    first = await create_user(client, "first")
    second = await create_user(client, "second")
    assert uuid.UUID(first["id"]) < uuid.UUID(second["id"])


async def test_full_name_defaults_to_null(client: httpx.AsyncClient) -> None:
    body = await create_user(client)
    assert body["full_name"] is None


async def test_email_domain_is_lower_cased_and_local_part_kept(client: httpx.AsyncClient) -> None:
    body = await create_user(client, email="Ada.Lovelace@Example.COM")
    assert body["email"] == "Ada.Lovelace@example.com"


async def test_username_case_is_kept(client: httpx.AsyncClient) -> None:
    body = await create_user(client, "Ada_Lovelace")
    assert body["username"] == "Ada_Lovelace"


async def test_password_is_stored_exactly_as_given(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    password = "  spaced out, ünïcødé ✓ password  "
    response = await client.post(USERS, json=valid_body(password=password))
    assert response.status_code == 201, response.text
    assert_no_secrets(response.json())
    stored = await password_hash_of(engine, response.json()["id"])
    assert stored.startswith("$argon2id$")
    assert password not in stored
    passwords = Passwords()
    assert (await passwords.verify_and_update(password, stored))[0]
    assert not (await passwords.verify_and_update(password.strip(), stored))[0]


@pytest.mark.parametrize(
    ("first", "second", "field"),
    [
        ({"email": "ada@example.com"}, {"email": "ada@example.com"}, "email"),
        ({"email": "Ada@Example.com"}, {"email": "ada@example.com"}, "email"),
        ({"email": "ada@example.com"}, {"email": "ADA@EXAMPLE.COM"}, "email"),
        ({"username": "ada"}, {"username": "ada"}, "username"),
        ({"username": "Ada"}, {"username": "ada"}, "username"),
        ({"username": "ada"}, {"username": "ADA"}, "username"),
    ],
)
async def test_taken_email_or_username_is_a_conflict_naming_the_field(
    client: httpx.AsyncClient, first: dict[str, str], second: dict[str, str], field: str
) -> None:
    first_body = {"email": "one@example.com", "username": "one", "password": PASSWORD, **first}
    second_body = {"email": "two@example.com", "username": "two", "password": PASSWORD, **second}
    assert (await client.post(USERS, json=first_body)).status_code == 201

    response = await client.post(USERS, json=second_body)

    assert_conflict(response, field)
    assert_no_secrets(response.json())
    listed = await client.get(USERS)
    assert len(without_admin(listed.json()["items"])) == 1


async def test_an_admin_may_set_the_admin_and_active_flags(client: httpx.AsyncClient) -> None:
    body = await create_user(client, is_admin=True, is_active=False)
    assert body["is_admin"] is True
    assert body["is_active"] is False


@pytest.mark.parametrize(
    "email",
    [
        "",
        "not-an-email",
        "ada@",
        "@example.com",
        "ada@@example.com",
        "ada@example",
        "ada lovelace@example.com",
        "ada@exa mple.com",
        "ada@example.com\n",
        "a" * 310 + "@example.com",
        42,
        None,
    ],
)
async def test_invalid_email_is_422(client: httpx.AsyncClient, email: object) -> None:
    response = await client.post(USERS, json=valid_body(email=email))
    assert_validation_problem(response, "email")


@pytest.mark.parametrize(
    "username",
    [
        "",
        "ab",
        "a" * 129,
        "ada lovelace",
        "ada!",
        "ada#home",
        "ada%40home",
        "ädä",
        "abc\n",
        "\nabc",
        "ab\x00c",
        "ad/a",
        123,
        None,
    ],
)
async def test_invalid_username_is_422(client: httpx.AsyncClient, username: object) -> None:
    response = await client.post(USERS, json=valid_body(username=username))
    assert_validation_problem(response, "username")


@pytest.mark.parametrize(
    "username",
    ["abc", "a" * 128, "A.b-C_9", "...", "___", "0-0", "ada.lovelace@contoso.com", "a+b", "@@@"],
)
async def test_username_edge_cases_are_accepted(client: httpx.AsyncClient, username: str) -> None:
    body = await create_user(client, username, email="edge@example.com")
    assert body["username"] == username


async def test_full_name_length_limit(client: httpx.AsyncClient) -> None:
    too_long = await client.post(USERS, json=valid_body(full_name="x" * 201))
    assert_validation_problem(too_long, "full_name")

    longest = "ü" * 200  # characters, not bytes
    body = await create_user(client, full_name=longest)
    assert body["full_name"] == longest


@pytest.mark.parametrize(
    "password",
    [
        "",
        "x" * 11,
        "ü" * 11,
        "y" * 129,
        "qwerty123456",  # among the 10,000 most common passwords
        "QWERTY123456",  # ... compared case-insensitively
        "leavemealone",
        "123456789qwe",
        "ada@example.com",  # the email
        "ADA@EXAMPLE.COM",
        None,
        12345678901234,
    ],
)
async def test_invalid_password_is_422(client: httpx.AsyncClient, password: object) -> None:
    response = await client.post(USERS, json=valid_body(password=password))
    assert_validation_problem(response, "password")
    if isinstance(password, str) and len(password) > 3:
        assert password not in response.text


async def test_password_equal_to_username_is_422(client: httpx.AsyncClient) -> None:
    body = valid_body(username="Ada.Lovelace.1815", password="ada.lovelace.1815")
    response = await client.post(USERS, json=body)
    assert_validation_problem(response, "password")


@pytest.mark.parametrize(
    "password",
    [
        "Kq7!vRe2#pLm",  # 12 characters
        # 12 characters of two bytes each (but the d)
        "\u00fc\u00f1\u00ef\u00a9\u00f8d\u00e9-\u03a9\u00b5\u2202\u0192",
        "Kq7!vRe2#pLm correct horse staple " + "y" * 94,  # 128 characters
        "".join(chr(0x1F510 + n) for n in (0, 9, 3, 7, 1, 11, 5, 2, 10, 4, 8, 6)),  # astral
    ],
)
async def test_password_length_bounds_are_inclusive(
    client: httpx.AsyncClient, password: str
) -> None:
    assert len(password) in (12, 128)
    response = await client.post(USERS, json=valid_body(password=password))
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    "extra",
    [
        {"role": "admin"},
        {"id": "0190f0c8-7a3e-7b6c-9d2e-4f5a6b7c8d9e"},
        {"version": 7},
        {"password_hash": "$argon2id$fake"},
        {"created_at": "2020-01-01T00:00:00Z"},
        {"current_password": PASSWORD},
    ],
)
async def test_unknown_fields_are_rejected(
    client: httpx.AsyncClient, extra: dict[str, Any]
) -> None:
    response = await client.post(USERS, json=valid_body(**extra))
    errors = assert_validation_problem(response, *extra)
    assert any(error["type"] == "extra_forbidden" for error in errors)
    assert without_admin((await client.get(USERS)).json()["items"]) == []


@pytest.mark.parametrize("missing", ["email", "username", "password"])
async def test_required_fields(client: httpx.AsyncClient, missing: str) -> None:
    body = valid_body()
    del body[missing]
    response = await client.post(USERS, json=body)
    assert_validation_problem(response, missing)


@pytest.mark.parametrize("body", [[], "ada", 1, None])
async def test_body_must_be_an_object(client: httpx.AsyncClient, body: object) -> None:
    response = await client.post(USERS, json=body)
    assert_validation_problem(response)


async def test_all_validation_errors_are_listed_together(client: httpx.AsyncClient) -> None:
    response = await client.post(
        USERS, json={"email": "nope", "username": "x", "password": "short", "bogus": 1}
    )
    errors = assert_validation_problem(response)
    fields = {error["loc"][-1] for error in errors}
    assert {"email", "username", "password", "bogus"} <= fields


async def test_validation_errors_do_not_echo_the_input(client: httpx.AsyncClient) -> None:
    secret = "hunter2-but-short"[:11]
    response = await client.post(USERS, json=valid_body(password=secret))
    assert_validation_problem(response, "password")
    assert secret not in response.text


async def test_create_race_on_email_has_exactly_one_winner(client: httpx.AsyncClient) -> None:
    responses = await asyncio.gather(
        *(
            client.post(USERS, json=valid_body(email="race@example.com", username=f"racer{n:02}"))
            for n in range(20)
        )
    )
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] + [409] * 19, statuses
    for response in responses:
        if response.status_code == 409:
            assert_conflict(response, "email")
    assert len(without_admin((await client.get(USERS)).json()["items"])) == 1


RACER_NAMES = ("racer", "Racer", "RACER", "rAcEr")


async def test_create_race_on_username_has_exactly_one_winner(client: httpx.AsyncClient) -> None:
    responses = await asyncio.gather(
        *(
            client.post(
                USERS,
                # The same name in different cases: uniqueness ignores case.
                json=valid_body(email=f"racer{n}@example.com", username=RACER_NAMES[n % 4]),
            )
            for n in range(20)
        )
    )
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] + [409] * 19, statuses
    for response in responses:
        if response.status_code == 409:
            assert_conflict(response, "username")
    assert len(without_admin((await client.get(USERS)).json()["items"])) == 1


async def test_an_admin_demoted_while_the_password_is_hashed_creates_nobody(
    app: FastAPI, admin_client: httpx.AsyncClient, admin: Admin, engine: AsyncEngine
) -> None:
    """The caller is checked before the hash and again by the INSERT itself: an admin who
    loses the role while the hash waits for a thread gets 403 and creates nobody."""
    users: UserService = app.state.users
    passwords = users.passwords
    body = {"email": "eve@example.com", "username": "eve", "password": PASSWORD, "is_admin": True}
    async with contextlib.AsyncExitStack() as every_turn:
        for _ in range(2 * passwords.concurrency):  # every place in the hashing queue
            await every_turn.enter_async_context(passwords.turn())
        creating = asyncio.create_task(admin_client.post(USERS, json=body))
        await asyncio.sleep(0.3)  # it has checked its caller and waits for a turn
        assert not creating.done()
        async with engine.begin() as connection:
            await connection.execute(
                text("UPDATE users SET is_admin = false WHERE id = :id"), {"id": admin.id}
            )
    response = await asyncio.wait_for(creating, 10)
    assert_problem(response, 403)
    async with engine.connect() as connection:
        found = await connection.scalar(text("SELECT count(*) FROM users WHERE username = 'eve'"))
    assert found == 0
