"""Keyset paging stays exact while other clients insert and delete during the walk."""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.users.helpers import (
    BASE_TIME,
    SORTS,
    USERS,
    expected_order,
    ids,
    insert_users,
    make_rows,
    without_admin,
)
from users_api.users.models import User

INITIAL = 40
LIMIT = 6


def order_key(item: dict[str, Any], sort: str) -> tuple[Any, uuid.UUID]:
    """The key a page item sorts by, as a client can compute it from the body."""
    field = sort.removeprefix("-")
    value: Any = item[field]
    if field == "created_at":
        value = datetime.fromisoformat(value)
    elif field in ("username", "email"):
        value = value.lower()
    elif field == "id":
        value = uuid.UUID(value)
    return (value, uuid.UUID(item["id"]))


async def insert(engine: AsyncEngine, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for row, row_id in zip(rows, await insert_users(engine, rows), strict=True):
        row["id"] = row_id
    return rows


@pytest.mark.parametrize("sort", SORTS)
async def test_walk_sees_every_lasting_user_once_in_order(
    client: httpx.AsyncClient, engine: AsyncEngine, sort: str
) -> None:
    rng = random.Random(sort)
    taken: set[str] = set()
    initial = await insert(engine, make_rows(INITIAL, rng, taken))
    deleted: set[str] = set()
    inserted: set[str] = set()
    walked: list[dict[str, Any]] = []
    cursor: str | None = None

    while True:
        params: dict[str, Any] = {"sort": sort, "limit": LIMIT}
        if cursor:
            params["cursor"] = cursor
        response = await client.get(USERS, params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        walked.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
        # Meanwhile, other clients: delete one user already seen and one not yet seen
        # (if any), and register two more anywhere in the order, some tied on created_at.
        seen = {item["id"] for item in walked}
        alive = [str(row["id"]) for row in initial if str(row["id"]) not in deleted]
        victims = [
            rng.choice(group)
            for group in (
                [row_id for row_id in alive if row_id in seen],
                [row_id for row_id in alive if row_id not in seen],
            )
            if group
        ]
        async with engine.begin() as connection:
            await connection.execute(
                delete(User).where(User.id.in_([uuid.UUID(victim) for victim in victims]))
            )
        deleted.update(victims)
        newcomers = make_rows(2, rng, taken)
        for row in newcomers:
            row["created_at"] = BASE_TIME + timedelta(minutes=rng.randrange(INITIAL // 3 + 2))
        inserted.update(str(row["id"]) for row in await insert(engine, newcomers))

    assert len(ids(walked)) == len(set(ids(walked))), "a user was returned twice"
    # The admin who walks is a lasting user too: listed exactly once, set aside here.
    walked_ids = ids(without_admin(walked))
    lasting = [row for row in initial if str(row["id"]) not in deleted]
    assert len(lasting) >= INITIAL // 2
    lasting_ids = {str(row["id"]) for row in lasting}
    assert [row_id for row_id in walked_ids if row_id in lasting_ids] == expected_order(
        lasting, sort
    )
    assert set(walked_ids) <= {str(row["id"]) for row in initial} | inserted
    # The whole walk, newcomers and the admin included, is strictly in the requested order.
    keys = [order_key(item, sort) for item in walked]
    expected_keys = sorted(keys, reverse=sort.startswith("-"))
    assert keys == expected_keys
