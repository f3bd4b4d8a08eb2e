"""Hand-made and generated cursors: anything that is not ours is a 400, never a 500."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine
from uuid_utils.compat import uuid7

from tests.conftest import ADMIN_USERNAME
from tests.users.helpers import USERS, assert_problem, create_user, insert_users, walk

SORTS = ["id", "-id", "created_at", "-created_at", "username", "-username", "email", "-email"]
SOME_ID = str(uuid7())


def encode(payload: Any) -> str:
    """A cursor of the users list (`"l"`, unless the payload names another) holding
    `payload`. The standard library, not orjson: it also writes integers past 64 bits."""
    raw = json.dumps({"l": "users", **payload}).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


@pytest.mark.parametrize(
    ("sort", "payload"),
    [
        ("id", {"s": "id", "k": SOME_ID, "i": 5}),
        ("id", {"s": "id", "k": SOME_ID, "i": [SOME_ID]}),
        ("id", {"s": "id", "k": SOME_ID, "i": None}),
        ("id", {"s": "id", "k": SOME_ID, "i": {"hex": SOME_ID}}),
        ("id", {"s": "id", "k": 5, "i": SOME_ID}),
        ("id", {"s": "id", "k": str(uuid7()), "i": SOME_ID}),  # key and id disagree
        ("id", {"s": "id", "k": SOME_ID, "i": "not-a-uuid"}),
        ("id", {"s": "id", "k": SOME_ID, "i": SOME_ID, "x": 1}),
        ("id", {"s": "id", "k": SOME_ID}),
        ("id", {"s": ["id"], "k": SOME_ID, "i": SOME_ID}),
        ("created_at", {"s": "created_at", "k": "yesterday", "i": SOME_ID}),
        ("created_at", {"s": "created_at", "k": "2026-01-01T00:00:00", "i": SOME_ID}),
        ("created_at", {"s": "created_at", "k": 1767225600, "i": SOME_ID}),
        # Valid ISO strings whose UTC instant is outside what a datetime can hold.
        ("created_at", {"s": "created_at", "k": "0001-01-01T00:00:00+14:00", "i": SOME_ID}),
        ("-created_at", {"s": "-created_at", "k": "9999-12-31T23:59:59-14:00", "i": SOME_ID}),
        ("username", {"s": "username", "k": "x" * 321, "i": SOME_ID}),
        ("username", {"s": "username", "k": "nul\x00", "i": SOME_ID}),
        ("username", {"s": "username", "k": None, "i": SOME_ID}),
        ("email", {"s": "email", "k": ["a"], "i": SOME_ID}),
        ("-email", {"s": "email", "k": "a@example.com", "i": SOME_ID}),
    ],
)
async def test_crafted_cursor_is_400(
    client: httpx.AsyncClient, sort: str, payload: dict[str, Any]
) -> None:
    await create_user(client)
    response = await client.get(USERS, params={"sort": sort, "cursor": encode(payload)})
    assert assert_problem(response, 400)["type"].endswith(":invalid-cursor")


# Around the cursors below: "nia" falls between 2026-01-01T00:00Z and 05:30Z, so a cursor
# whose offset were ignored would page differently. The admin who lists was created now.
FOREIGN_CURSOR_ROWS = [
    ("ada", "ada@example.com", datetime(2025, 6, 1, tzinfo=UTC)),
    ("kim", "kim@example.com", datetime(2025, 12, 31, 23, 0, tzinfo=UTC)),
    ("nia", "nia@example.com", datetime(2026, 1, 1, 0, 1, tzinfo=UTC)),
    ("zed", "zzzz@example.com", datetime(2026, 6, 1, tzinfo=UTC)),
]


@pytest.mark.parametrize(
    ("sort", "key", "expected"),
    [
        ("created_at", "2026-01-01T00:00:00+00:00", ["nia", "zed", ADMIN_USERNAME]),
        ("-created_at", "2026-01-01T05:30:00+05:30", ["kim", "ada"]),
        ("username", "m", ["nia", ADMIN_USERNAME, "zed"]),
        ("-email", "zzz", [ADMIN_USERNAME, "nia", "kim", "ada"]),
    ],
)
async def test_well_formed_foreign_cursor_is_honoured(
    client: httpx.AsyncClient, engine: AsyncEngine, sort: str, key: str, expected: list[str]
) -> None:
    """A cursor we could have made (for a row that is gone) still pages correctly."""
    await insert_users(
        engine,
        (
            {"username": username, "email": email, "created_at": created_at}
            for username, email, created_at in FOREIGN_CURSOR_ROWS
        ),
    )
    cursor = encode({"s": sort, "k": key, "i": SOME_ID})
    response = await client.get(USERS, params={"sort": sort, "cursor": cursor, "limit": 2})
    assert response.status_code == 200, response.text
    page = response.json()
    # The rows past the cursor's key, in the sort's order, two to a page.
    assert [item["username"] for item in page["items"]] == expected[:2]
    assert (page["next_cursor"] is None) is (len(expected) <= 2)
    items, pages = await walk(client, {"sort": sort, "cursor": cursor, "limit": 2})
    assert [item["username"] for item in items] == expected
    assert pages == (len(expected) + 1) // 2


# --- properties ------------------------------------------------------------------

PROPERTY_SETTINGS = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
offsets = st.integers(min_value=-14 * 60 + 1, max_value=14 * 60 - 1).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
moments = st.datetimes(timezones=offsets).map(datetime.isoformat)
keys = json_values | moments | st.uuids().map(str) | st.text(max_size=400)
ids_ = json_values | st.uuids().map(str)


@PROPERTY_SETTINGS
@given(text=st.text(min_size=1, max_size=1024), sort=st.sampled_from(SORTS))
async def test_arbitrary_text_cursor_is_400(
    client: httpx.AsyncClient, text: str, sort: str
) -> None:
    response = await client.get(USERS, params={"sort": sort, "cursor": text})
    assert_problem(response, 400)


@PROPERTY_SETTINGS
@given(raw=st.binary(min_size=1, max_size=700), sort=st.sampled_from(SORTS))
async def test_arbitrary_bytes_cursor_is_400(
    client: httpx.AsyncClient, raw: bytes, sort: str
) -> None:
    cursor = base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
    response = await client.get(USERS, params={"sort": sort, "cursor": cursor})
    assert_problem(response, 400)


@PROPERTY_SETTINGS
@given(
    sort=st.sampled_from(SORTS),
    made_for=st.sampled_from(SORTS) | st.text(max_size=12),
    key=keys,
    row_id=ids_,
)
async def test_cursor_shaped_json_is_200_or_400_never_500(
    client: httpx.AsyncClient, sort: str, made_for: str, key: Any, row_id: Any
) -> None:
    cursor = encode({"s": made_for, "k": key, "i": row_id})
    response = await client.get(USERS, params={"sort": sort, "cursor": cursor})
    if response.status_code != 200:
        assert_problem(response, 400)
    else:
        assert made_for == sort
