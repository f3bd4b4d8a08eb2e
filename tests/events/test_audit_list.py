"""GET /api/v1/audit-events: admins only, keyset pages newest first, filters, 422s."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from uuid_utils.compat import uuid7

from tests.auth.helpers import bearer, register_and_login
from tests.conftest import Admin
from tests.events.helpers import AUDIT

START = datetime(2026, 1, 1, tzinfo=UTC)


async def _seed(engine: AsyncEngine, rows: list[dict[str, Any]]) -> None:
    async with engine.begin() as connection:
        await connection.execute(text("DELETE FROM events"))
        await connection.execute(
            text(
                "INSERT INTO events (id, type, occurred_at, actor_type, actor_id, "
                "subject_type, subject_id, data) VALUES (:id, :type, :occurred_at, "
                ":actor_type, :actor_id, 'user', :subject_id, CAST(:data AS jsonb))"
            ),
            rows,
        )


def _rows(count: int, actor: uuid.UUID, subject: uuid.UUID) -> list[dict[str, Any]]:
    """`count` events a minute apart; every third a login, the rest user changes; the
    last five by `actor` about `subject`."""
    rows = []
    for n in range(count):
        mine = n >= count - 5
        rows.append(
            {
                "id": uuid7(),
                "type": "auth.login_succeeded" if n % 3 == 0 else "user.updated",
                "occurred_at": START + timedelta(minutes=n),
                "actor_type": "user",
                "actor_id": actor if mine else None,
                "subject_id": subject if mine else uuid.uuid4(),
                "data": json.dumps({"n": n}),
            }
        )
    return rows


async def _all_pages(client: httpx.AsyncClient, url: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    while url:
        response = await client.get(url)
        assert response.status_code == 200, response.text
        body = response.json()
        items += body["items"]
        link = response.headers.get("link")
        if body["next_cursor"] is None:
            assert link is None
            break
        assert link is not None
        assert link.endswith('>; rel="next"')
        url = link[1 : link.index(">")]
    return items


async def test_pages_are_newest_first_and_complete(
    admin_client: httpx.AsyncClient, admin: Admin, engine: AsyncEngine
) -> None:
    actor, subject = uuid.uuid4(), uuid.uuid4()
    await _seed(engine, _rows(25, actor, subject))
    first = await admin_client.get(AUDIT, params={"limit": 10})
    assert first.status_code == 200, first.text
    body = first.json()
    assert set(body) == {"items", "next_cursor"}
    assert len(body["items"]) == 10
    assert body["items"][0]["data"] == {"n": 24}
    event = body["items"][0]
    assert set(event) == {
        "id",
        "type",
        "occurred_at",
        "actor",
        "subject",
        "request_id",
        "ip_address",
        "data",
    }
    assert event["actor"] == {"type": "user", "id": str(actor)}
    assert event["subject"] == {"type": "user", "id": str(subject)}
    assert event["occurred_at"] == "2026-01-01T00:24:00Z"
    items = await _all_pages(admin_client, f"{AUDIT}?limit=7")
    assert [item["data"]["n"] for item in items] == list(range(24, -1, -1))


async def test_filters(admin_client: httpx.AsyncClient, admin: Admin, engine: AsyncEngine) -> None:
    actor, subject = uuid.uuid4(), uuid.uuid4()
    await _seed(engine, _rows(30, actor, subject))

    def numbers(items: list[dict[str, Any]]) -> list[int]:
        return [item["data"]["n"] for item in items]

    logins = await _all_pages(admin_client, f"{AUDIT}?type=auth.login_succeeded&limit=4")
    assert numbers(logins) == [n for n in range(29, -1, -1) if n % 3 == 0]
    by_prefix = await _all_pages(admin_client, f"{AUDIT}?type=user.*&limit=4")
    assert numbers(by_prefix) == [n for n in range(29, -1, -1) if n % 3 != 0]
    both = await _all_pages(
        admin_client, f"{AUDIT}?type=user.updated&type=auth.login_succeeded&limit=50"
    )
    assert len(both) == 30
    assert numbers(await _all_pages(admin_client, f"{AUDIT}?actor_id={actor}&limit=2")) == [
        29,
        28,
        27,
        26,
        25,
    ]
    assert len(await _all_pages(admin_client, f"{AUDIT}?subject_id={subject}")) == 5
    window = await _all_pages(
        admin_client,
        f"{AUDIT}?since=2026-01-01T00:10:00Z&until=2026-01-01T00:20:00%2B00:00&limit=3",
    )
    assert numbers(window) == list(range(19, 9, -1))
    naive = await admin_client.get(AUDIT, params={"since": "2026-01-01T00:28:00"})
    assert numbers(naive.json()["items"]) == [29, 28]
    combined = await admin_client.get(
        AUDIT, params={"type": "user.*", "actor_id": str(actor), "since": "2026-01-01T00:26:00Z"}
    )
    assert numbers(combined.json()["items"]) == [29, 28, 26]


async def test_admins_only(client: httpx.AsyncClient, admin: Admin) -> None:
    assert (await client.get(AUDIT)).status_code == 401
    _, tokens = await register_and_login(client, "ada")
    response = await client.get(AUDIT, headers=bearer(tokens["access_token"]))
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "forbidden"
    # who may ask is answered before the cursor
    bad_cursor = await client.get(
        AUDIT, params={"cursor": "nope"}, headers=bearer(tokens["access_token"])
    )
    assert bad_cursor.status_code == 403


async def test_bad_values_are_422_and_bad_cursors_400(
    admin_client: httpx.AsyncClient, admin: Admin
) -> None:
    for params in (
        {"limit": "0"},
        {"limit": "201"},
        {"limit": "ten"},
        {"type": "user.exploded"},
        {"type": "nothing.*"},
        {"type": "*"},
        {"actor_id": "not-a-uuid"},
        {"subject_id": "42"},
        {"since": "yesterday"},
        {"until": "1700000000"},
    ):
        response = await admin_client.get(AUDIT, params=params)
        assert response.status_code == 422, (params, response.text)
        assert response.json()["code"] == "validation"
    for cursor in ("nope", "eyJ0IjoxfQ", "e30"):
        response = await admin_client.get(AUDIT, params={"cursor": cursor})
        assert response.status_code == 400, (cursor, response.text)
        assert response.json()["code"] == "invalid-cursor"


async def test_events_written_by_requests_are_listed(
    admin_client: httpx.AsyncClient, admin: Admin
) -> None:
    response = await admin_client.patch(
        f"/api/v1/users/{admin.id}", json={"full_name": "Root"}, headers={"X-Request-ID": "r-1"}
    )
    assert response.status_code == 200, response.text
    page = (await admin_client.get(AUDIT, params={"subject_id": str(admin.id)})).json()
    assert [item["type"] for item in page["items"]] == [
        "user.updated",
        "auth.login_succeeded",
        "user.created",
    ]
    updated = page["items"][0]
    assert updated["request_id"] == "r-1"
    assert updated["ip_address"] == "127.0.0.1"
    assert updated["data"] == {"fields": ["full_name"]}
    assert updated["actor"] == {"type": "user", "id": str(admin.id)}
    assert page["items"][2]["actor"] == {"type": "system", "id": None}


async def test_failed_logins_are_of_the_account_by_no_one(
    admin_client: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    ada, _ = await register_and_login(client, "ada")
    token = "/api/v1/auth/token"
    wrong = await client.post(token, data={"username": "ada", "password": "not hers"})
    assert wrong.status_code == 401
    by_ada = await admin_client.get(AUDIT, params={"actor_id": ada["id"]})
    # Her own acts only: the attempt on her account is not one of them.
    assert [item["type"] for item in by_ada.json()["items"]] == [
        "auth.login_succeeded",
        "user.created",
    ]
    about_ada = await admin_client.get(
        AUDIT, params={"subject_id": ada["id"], "type": "auth.login_failed"}
    )
    assert about_ada.status_code == 200, about_ada.text
    [failed] = about_ada.json()["items"]
    assert failed["actor"] == {"type": "user", "id": None}
    assert failed["subject"] == {"type": "user", "id": ada["id"]}
    schema = (await admin_client.get("/openapi.json")).json()["components"]["schemas"]
    actor_id = schema["ActorOut"]["properties"]["id"]
    assert {"type": "null"} in actor_id["anyOf"], actor_id
