"""Shared helpers for the Users tests: making users, reading problems, raw rows."""

from __future__ import annotations

import random
import re
import string
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine
from uuid_utils.compat import uuid7

from tests.conftest import ADMIN_USERNAME
from users_api.users.models import User

USERS = "/api/v1/users"
PASSWORD = "correct horse battery staple"
PROBLEM = "application/problem+json"
RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z")
USER_KEYS = {
    "id",
    "email",
    "username",
    "full_name",
    "is_active",
    "is_admin",
    "email_verified",
    "mfa_enabled",
    "created_at",
    "updated_at",
    "version",
}
# Rows inserted straight into the table never log in: any well-formed hash will do.
FAKE_HASH = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNo"


def user_url(user_id: str | uuid.UUID) -> str:
    return f"{USERS}/{user_id}"


async def create_user(
    client: httpx.AsyncClient,
    username: str = "ada",
    email: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """POST a valid user and return its body; fails the test unless it is a 201."""
    body = {
        "email": email or f"{username}@example.com",
        "username": username,
        "password": PASSWORD,
        **fields,
    }
    response = await client.post(USERS, json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The response is an RFC 9457 problem with this status; return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].split(";")[0] == PROBLEM, response.headers
    body: dict[str, Any] = response.json()
    assert {"type", "title", "status", "detail"} <= set(body), body
    assert body["status"] == status
    assert isinstance(body["title"], str)
    assert isinstance(body["detail"], str)
    assert body["detail"]
    return body


def assert_validation_problem(response: httpx.Response, *field: str) -> list[dict[str, Any]]:
    """A 422 whose `errors` list names `field` (the last part of some loc), if given."""
    body = assert_problem(response, 422)
    errors: list[dict[str, Any]] = body["errors"]
    assert errors, body
    for error in errors:
        assert {"loc", "msg", "type"} <= set(error), error
        assert isinstance(error["loc"], list)
    if field:
        locs = [error["loc"] for error in errors]
        assert any(loc and loc[-1] in field for loc in locs), locs
    return errors


def assert_conflict(response: httpx.Response, field: str) -> None:
    body = assert_problem(response, 409)
    assert body["field"] == field, body


def assert_no_secrets(body: Any) -> None:
    """No password or hash anywhere in a response body, however deeply nested."""
    if isinstance(body, dict):
        assert not {key for key in body if "password" in key.lower()}, body
        for value in body.values():
            assert_no_secrets(value)
    elif isinstance(body, list):
        for value in body:
            assert_no_secrets(value)
    elif isinstance(body, str):
        assert "$argon2" not in body
        assert PASSWORD not in body


async def insert_users(engine: AsyncEngine, rows: Iterable[dict[str, Any]]) -> list[uuid.UUID]:
    """Insert rows with SQLAlchemy Core, bypassing hashing; return their ids in order.

    Each row needs `username`; `email` defaults from it, `id` is a fresh UUIDv7 and
    `created_at` the database's now() unless given.
    """
    values = []
    for row in rows:
        value = {
            "id": uuid7(),
            "email": f"{row['username']}@example.com",
            "password_hash": FAKE_HASH,
            "version": 1,
            **row,
        }
        values.append(value)
    if not values:
        return []
    async with engine.begin() as connection:
        await connection.execute(insert(User), values)
    return [value["id"] for value in values]


async def password_hash_of(engine: AsyncEngine, user_id: str) -> str:
    async with engine.connect() as connection:
        stored = await connection.scalar(
            select(User.password_hash).where(User.id == uuid.UUID(user_id))
        )
    assert stored is not None
    return str(stored)


async def walk(
    client: httpx.AsyncClient, params: dict[str, Any], *, max_pages: int = 1000
) -> tuple[list[dict[str, Any]], int]:
    """Follow `next_cursor` to the end; return every item and the number of pages."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    for pages in range(1, max_pages + 1):
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get(USERS, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        items.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return items, pages
    raise AssertionError("the walk did not end")


def ids(items: Sequence[dict[str, Any]]) -> list[str]:
    return [item["id"] for item in items]


def without_admin(items: Sequence[dict[str, Any]], *, listed: bool = True) -> list[dict[str, Any]]:
    """The listed items other than the admin who makes the calls.

    That admin is a row in the table too, so a list holds it whenever the filters let it
    through. `listed` says whether they do here: it must then be among the items exactly
    once, and otherwise not at all.
    """
    others = [item for item in items if item["username"] != ADMIN_USERNAME]
    assert len(items) - len(others) == int(listed), [item["username"] for item in items]
    return others


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


SORTS = ["id", "-id", "created_at", "-created_at", "username", "-username", "email", "-email"]
BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)


def _word(rng: random.Random) -> str:
    """Six letters and digits: the same order under C and linguistic collations."""
    return "".join(rng.choices(string.ascii_letters + string.digits, k=6))


def _fresh(rng: random.Random, taken: set[str]) -> str:
    word = _word(rng)
    while word.lower() in taken:
        word = _word(rng)
    taken.add(word.lower())
    return word


def make_rows(
    count: int, rng: random.Random | None = None, taken: set[str] | None = None
) -> list[dict[str, Any]]:
    """Rows with mixed-case names, tied creation times and varied flags.

    `taken` holds the lower-cased words already used, so later batches stay unique.
    """
    rng = rng or random.Random(7)
    taken = set() if taken is None else taken
    rows = [
        {
            "username": _fresh(rng, taken),
            "email": f"{_fresh(rng, taken)}@example.com",
            "full_name": None if n % 4 == 0 else f"Person {n}",
            "is_active": n % 3 != 0,
            "is_admin": n % 5 == 0,
            # Three rows share each creation time: ties are broken by id.
            "created_at": BASE_TIME + timedelta(minutes=n // 3),
        }
        for n in range(count)
    ]
    rng.shuffle(rows)
    return rows


def expected_order(rows: list[dict[str, Any]], sort: str) -> list[str]:
    key = sort.removeprefix("-")

    def sort_key(row: dict[str, Any]) -> tuple[Any, uuid.UUID]:
        value = row[key]
        if isinstance(value, str):
            value = value.lower()
        return (value, row["id"])

    ordered = sorted(rows, key=sort_key, reverse=sort.startswith("-"))
    return [str(row["id"]) for row in ordered]
