"""Concurrent group requests: each is one transaction; the unique index and the group's
row lock settle what overlaps, never a 500."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.auth.helpers import register
from tests.groups.helpers import GROUPS, create_group, group_url


async def test_racing_creates_of_one_name_one_201_the_rest_409(
    admin_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    names = ["Finance", "finance", "FINANCE", "Finance", "fInance", "Finance"]
    responses = await asyncio.gather(
        *(admin_client.post(GROUPS, json={"display_name": name}) for name in names)
    )
    statuses = Counter(response.status_code for response in responses)
    assert statuses == {201: 1, 409: len(names) - 1}, [r.text for r in responses]
    for response in responses:
        if response.status_code == 409:
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["field"] == "display_name"
    async with engine.connect() as connection:
        count = await connection.scalar(text("SELECT count(*) FROM groups"))
    assert count == 1


async def test_racing_member_adds_bump_the_version_once_each(
    admin_client: httpx.AsyncClient,
) -> None:
    group = await create_group(admin_client)
    users = [await register(admin_client, f"user{i}") for i in range(6)]
    puts = [admin_client.put(group_url(group["id"], f"/members/{u['id']}")) for u in users]
    again = [admin_client.put(group_url(group["id"], f"/members/{u['id']}")) for u in users]
    responses = await asyncio.gather(*puts, *again)
    assert {response.status_code for response in responses} == {204}
    shown = (await admin_client.get(group_url(group["id"]))).json()
    assert shown["member_count"] == len(users)
    assert shown["version"] == 1 + len(users)  # one bump per real change, none lost


async def test_racing_if_match_changes_exactly_one_wins(admin_client: httpx.AsyncClient) -> None:
    group = await create_group(admin_client)
    responses = await asyncio.gather(
        *(
            admin_client.patch(
                group_url(group["id"]),
                json={"display_name": f"Name {i}"},
                headers={"If-Match": '"1"'},
            )
            for i in range(8)
        )
    )
    statuses = Counter(response.status_code for response in responses)
    assert statuses == {200: 1, 412: 7}


async def test_racing_user_deletes_and_member_adds_never_500(
    admin_client: httpx.AsyncClient,
) -> None:
    group = await create_group(admin_client)
    users = [await register(admin_client, f"user{i}") for i in range(8)]
    adds = [admin_client.put(group_url(group["id"], f"/members/{u['id']}")) for u in users]
    deletes = [admin_client.delete(f"/api/v1/users/{u['id']}") for u in users[::2]]
    responses = await asyncio.gather(*adds, *deletes)
    for response in responses:
        assert response.status_code in (204, 404), response.text
    members = (await admin_client.get(group_url(group["id"], "/members"))).json()["items"]
    assert {member["id"] for member in members} == {u["id"] for u in users[1::2]}
    shown = (await admin_client.get(group_url(group["id"]))).json()
    assert shown["member_count"] == len(users[1::2])
