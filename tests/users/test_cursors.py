"""Hand-made and generated cursors: anything that is not ours is a 400, never a 500."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from uuid_utils.compat import uuid7

from tests.users.helpers import USERS, assert_problem, create_user

SORTS = ["id", "-id", "created_at", "-created_at", "username", "-username", "email", "-email"]
SOME_ID = str(uuid7())


def encode(payload: Any) -> str:
    # The standard library, not orjson: it also writes integers past 64 bits.
    raw = json.dumps(payload).encode()
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
    assert_problem(response, 400)


@pytest.mark.parametrize(
    ("sort", "key"),
    [
        ("created_at", "2026-01-01T00:00:00+00:00"),
        ("-created_at", "2026-01-01T05:30:00+05:30"),
        ("username", "m"),
        ("-email", "zzz"),
    ],
)
async def test_well_formed_foreign_cursor_is_honoured(
    client: httpx.AsyncClient, sort: str, key: str
) -> None:
    """A cursor we could have made (for a row that is gone) still pages correctly."""
    await create_user(client, "ada")
    payload = {"s": sort, "k": key, "i": SOME_ID}
    response = await client.get(USERS, params={"sort": sort, "cursor": encode(payload)})
    assert response.status_code == 200, response.text


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
