"""Concurrent requests: each is one transaction, exactly one of a conflicting set wins.

Requests are started together with `asyncio.gather` over the in-process app, so their
transactions really overlap in PostgreSQL (the pool holds up to 30 connections).
Nothing here asserts on timing; every assertion is about status codes and the rows.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.auth.helpers import PASSWORD, bearer, register, register_and_login
from tests.conftest import login

USERS = "/api/v1/users"


async def _row(engine: AsyncEngine, user_id: str) -> dict[str, Any] | None:
    async with engine.connect() as connection:
        result = await connection.execute(
            text(
                "SELECT username, email, full_name, version, auth_version, is_admin, is_active"
                " FROM users WHERE id = :id"
            ),
            {"id": user_id},
        )
        row = result.mappings().one_or_none()
    return dict(row) if row is not None else None


async def _count_users(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        count: int = (await connection.execute(text("SELECT count(*) FROM users"))).scalar_one()
    return count


def _statuses(responses: Sequence[httpx.Response]) -> Counter[int]:
    return Counter(response.status_code for response in responses)


def _assert_problems(responses: Sequence[httpx.Response]) -> None:
    for response in responses:
        assert response.status_code < 500, response.text
        if response.status_code >= 400:
            assert response.headers["content-type"] == "application/problem+json"


async def test_same_if_match_exactly_one_wins(
    admin_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    user = await register(admin_client, "target")
    names = [f"name {i}" for i in range(12)]
    responses = await asyncio.gather(
        *(
            admin_client.patch(
                f"{USERS}/{user['id']}", json={"full_name": name}, headers={"If-Match": '"1"'}
            )
            for name in names
        )
    )
    _assert_problems(responses)
    assert _statuses(responses) == {200: 1, 412: len(names) - 1}
    [winner] = [r for r in responses if r.status_code == 200]
    assert winner.headers["etag"] == '"2"'
    row = await _row(engine, user["id"])
    assert row is not None
    assert row["version"] == 2
    assert row["full_name"] == winner.json()["full_name"]


async def test_concurrent_patches_without_if_match_are_all_applied(
    admin_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    user = await register(admin_client, "target")
    responses = await asyncio.gather(
        *(
            admin_client.patch(f"{USERS}/{user['id']}", json={"full_name": f"n{i}"})
            for i in range(10)
        )
    )
    _assert_problems(responses)
    assert _statuses(responses) == {200: 10}
    # Each change was applied on top of the previous one: no lost update.
    assert sorted(r.json()["version"] for r in responses) == list(range(2, 12))
    row = await _row(engine, user["id"])
    assert row is not None
    assert row["version"] == 11


@pytest.mark.parametrize("field", ["username", "email"])
async def test_swaps_between_users_stay_consistent(
    field: str, admin_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    pairs = []
    for i in range(6):
        a = await register(admin_client, f"a{i}-user")
        b = await register(admin_client, f"b{i}-user")
        pairs.append((a, b))
    for _ in range(3):
        before = {u["id"]: await _row(engine, u["id"]) for pair in pairs for u in pair}
        requests = []
        for a, b in pairs:
            a_now, b_now = before[a["id"]], before[b["id"]]
            assert a_now is not None
            assert b_now is not None
            # A takes B's value while B takes A's (B's in another case: same user).
            requests.append(
                (a["id"], b_now[field].upper() if field == "username" else b_now[field])
            )
            requests.append((b["id"], a_now[field]))
        responses = await asyncio.gather(
            *(admin_client.patch(f"{USERS}/{uid}", json={field: value}) for uid, value in requests)
        )
        _assert_problems(responses)
        assert set(_statuses(responses)) <= {200, 409}
        for (uid, value), response in zip(requests, responses, strict=True):
            row = await _row(engine, uid)
            assert row is not None
            old = before[uid]
            assert old is not None
            if response.status_code == 200:
                assert row[field] == value
                assert row["version"] == old["version"] + 1
            else:
                assert response.json()["field"] == field
                assert row[field] == old[field]
                assert row["version"] == old["version"]
        values = [(await _row(engine, u["id"]) or {})[field].lower() for p in pairs for u in p]
        assert len(set(values)) == len(values)


async def test_swap_through_a_temporary_name(
    admin_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    a = await register(admin_client, "alice")
    b = await register(admin_client, "bob")

    async def rename(uid: str, name: str) -> httpx.Response:
        return await admin_client.patch(f"{USERS}/{uid}", json={"username": name})

    first = await asyncio.gather(rename(a["id"], "swap-tmp"), rename(b["id"], "alice"))
    _assert_problems(first)
    # B may only take "alice" once A has let it go; either order is a consistent outcome.
    assert first[0].status_code == 200
    assert first[1].status_code in {200, 409}
    if first[1].status_code == 409:
        assert (await rename(b["id"], "alice")).status_code == 200
    assert (await rename(a["id"], "bob")).status_code == 200
    assert ((await _row(engine, a["id"])) or {})["username"] == "bob"
    assert ((await _row(engine, b["id"])) or {})["username"] == "alice"


@pytest.mark.parametrize("if_match", [None, '"1"'])
async def test_delete_racing_update(
    if_match: str | None, admin_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    headers = {"If-Match": if_match} if if_match else {}
    for round_ in range(5):
        user = await register(admin_client, f"victim{round_}")
        url = f"{USERS}/{user['id']}"
        responses = await asyncio.gather(
            admin_client.patch(url, json={"full_name": "a"}, headers=headers),
            admin_client.delete(url, headers=headers),
            admin_client.patch(url, json={"username": f"renamed{round_}"}, headers=headers),
        )
        _assert_problems(responses)
        patches = [responses[0].status_code, responses[2].status_code]
        deleted = responses[1].status_code
        assert deleted in {204, 412}
        assert set(patches) <= {200, 404, 412}
        row = await _row(engine, user["id"])
        if deleted == 204:
            assert row is None
            # A patch that came after the delete found nothing (404); without If-Match
            # nothing can be stale, so the rest were applied before it (200).
            assert set(patches) <= ({200, 404} if if_match is None else {404, 412})
        else:
            assert if_match is not None
            assert row is not None
            assert 200 in patches  # the delete lost to a patch that bumped the version
        if if_match is not None:
            assert [deleted, *patches].count(200) + [deleted, *patches].count(204) == 1


async def test_many_creates_with_one_email_make_one_user(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    bodies = [
        {"email": "Same@Example.com" if i % 2 else "same@example.com", "username": f"racer{i}"}
        | {"password": PASSWORD}
        for i in range(20)  # one address's sign-ups in an hour (REGISTRATIONS_PER_ADDRESS)
    ]
    responses = await asyncio.gather(*(client.post(USERS, json=body) for body in bodies))
    _assert_problems(responses)
    assert _statuses(responses) == {201: 1, 409: 19}
    assert {r.json()["field"] for r in responses if r.status_code == 409} == {"email"}
    assert await _count_users(engine) == 1


async def test_many_creates_with_one_username_make_one_user(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    bodies = [
        {"email": f"racer{i}@example.com", "username": "Racer" if i % 2 else "racer"}
        | {"password": PASSWORD}
        for i in range(20)
    ]
    responses = await asyncio.gather(*(client.post(USERS, json=body) for body in bodies))
    _assert_problems(responses)
    assert _statuses(responses) == {201: 1, 409: 19}
    assert {r.json()["field"] for r in responses if r.status_code == 409} == {"username"}
    assert await _count_users(engine) == 1


async def test_a_refused_patch_changes_nothing(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """Password, tokens and version survive a patch refused after the password was hashed."""
    await register(client, "taken")
    user, tokens = await register_and_login(client, "ada")
    headers = bearer(tokens["access_token"])
    before = await _row(engine, user["id"])
    response = await client.patch(
        f"{USERS}/{user['id']}",
        json={
            "username": "TAKEN",
            "full_name": "changed",
            "password": "a brand new password",
            "current_password": PASSWORD,
        },
        headers=headers,
    )
    assert response.status_code == 409, response.text
    assert await _row(engine, user["id"]) == before
    assert (await client.get(f"{USERS}/me", headers=headers)).status_code == 200
    await login(client, "ada", PASSWORD)


async def test_concurrent_deletes_of_two_admins_keep_one(
    admin_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    other = await register(admin_client, "second-admin", is_admin=True)
    me = (await admin_client.get(f"{USERS}/me")).json()
    responses = await asyncio.gather(
        admin_client.delete(f"{USERS}/{other['id']}"),
        admin_client.patch(f"{USERS}/{me['id']}", json={"is_admin": False}),
    )
    _assert_problems(responses)
    deleted, demoted = (r.status_code for r in responses)
    # Whichever goes first wins; the other would leave no admin (409), or, once the
    # caller is no longer an admin, may not even see the other user (404).
    assert (deleted, demoted) in {(204, 409), (409, 200), (404, 200)}
    async with engine.connect() as connection:
        admins = await connection.execute(
            text("SELECT count(*) FROM users WHERE is_admin AND is_active")
        )
        assert admins.scalar_one() == 1


async def test_delete_racing_refresh_and_login(
    admin_client: httpx.AsyncClient, client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """Issuing tokens for a user being deleted: 401 or tokens that die with the user."""
    for round_ in range(6):
        user, tokens = await register_and_login(client, f"leaver{round_}")
        responses = await asyncio.gather(
            client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}),
            admin_client.delete(f"{USERS}/{user['id']}"),
            client.post(
                "/api/v1/auth/token", data={"username": f"leaver{round_}", "password": PASSWORD}
            ),
        )
        _assert_problems(responses)
        refreshed, deleted, logged_in = responses
        assert deleted.status_code == 204
        assert refreshed.status_code in {200, 401}
        assert logged_in.status_code in {200, 401}
        assert await _row(engine, user["id"]) is None
        # Whatever tokens were issued died with the user: no access, no refresh.
        for issued in (refreshed, logged_in):
            if issued.status_code != 200:
                continue
            me = await client.get(f"{USERS}/me", headers=bearer(issued.json()["access_token"]))
            assert me.status_code == 401, me.text
            again = await client.post(
                "/api/v1/auth/refresh", json={"refresh_token": issued.json()["refresh_token"]}
            )
            assert again.status_code == 401, again.text
        async with engine.connect() as connection:
            left = await connection.execute(
                text("SELECT count(*) FROM refresh_tokens WHERE user_id = :id"), {"id": user["id"]}
            )
            assert left.scalar_one() == 0
