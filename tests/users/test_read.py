"""GET /api/v1/users/{id}: the user, its ETag, conditional reads, and missing ids."""

from __future__ import annotations

import httpx
import pytest
from uuid_utils.compat import uuid7

from tests.users.helpers import (
    USERS,
    assert_no_secrets,
    assert_problem,
    create_user,
    user_url,
)


async def test_get_returns_the_user_with_its_etag(client: httpx.AsyncClient) -> None:
    created = await create_user(client, full_name="Ada Lovelace")

    response = await client.get(user_url(created["id"]))

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["etag"] == '"1"'
    assert response.json() == created
    assert_no_secrets(response.json())


async def test_get_accepts_an_upper_case_id(client: httpx.AsyncClient) -> None:
    created = await create_user(client)
    response = await client.get(user_url(created["id"].upper()))
    assert response.status_code == 200
    assert response.json()["id"] == created["id"]


@pytest.mark.parametrize("header", ['"1"', 'W/"1"', '"7", "1"', "*"])
async def test_if_none_match_hit_is_304_without_body(
    client: httpx.AsyncClient, header: str
) -> None:
    created = await create_user(client)

    response = await client.get(user_url(created["id"]), headers={"If-None-Match": header})

    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == '"1"'


@pytest.mark.parametrize("header", ['"2"', '"0"', "garbage", '""', 'W/"11"'])
async def test_if_none_match_miss_is_200(client: httpx.AsyncClient, header: str) -> None:
    created = await create_user(client)

    response = await client.get(user_url(created["id"]), headers={"If-None-Match": header})

    assert response.status_code == 200
    assert response.json() == created


async def test_if_none_match_of_an_old_version_is_200_after_a_change(
    client: httpx.AsyncClient,
) -> None:
    created = await create_user(client)
    await client.patch(user_url(created["id"]), json={"full_name": "Ada"})

    response = await client.get(user_url(created["id"]), headers={"If-None-Match": '"1"'})

    assert response.status_code == 200
    assert response.headers["etag"] == '"2"'
    assert response.json()["full_name"] == "Ada"


async def test_unknown_id_is_404_problem(client: httpx.AsyncClient) -> None:
    await create_user(client)
    response = await client.get(user_url(uuid7()))
    body = assert_problem(response, 404)
    assert "id" in body["detail"] or body["detail"]


@pytest.mark.parametrize(
    "user_id",
    [
        "not-a-uuid",
        "1",
        "0190f0c8-7a3e-7b6c-9d2e-4f5a6b7c8d9",  # one digit short
        "0190f0c8-7a3e-7b6c-9d2e-4f5a6b7c8d9ez",
        "%00",
        "' OR 1=1 --",
        "x" * 5000,
        "00000000-0000-0000-0000-000000000000",
        "ffffffff-ffff-ffff-ffff-ffffffffffff",
    ],
)
async def test_non_uuid_or_odd_id_is_404_or_422_never_500(
    client: httpx.AsyncClient, user_id: str
) -> None:
    response = await client.get(f"{USERS}/{user_id}")
    assert response.status_code in (404, 422), response.text
    assert_problem(response, response.status_code)


async def test_a_trailing_path_segment_is_not_a_user(client: httpx.AsyncClient) -> None:
    created = await create_user(client)
    response = await client.get(f"{user_url(created['id'])}/extra")
    assert_problem(response, 404)


async def test_me_has_an_etag_and_answers_304_when_it_still_matches(
    client: httpx.AsyncClient,
) -> None:
    me = await client.get(f"{USERS}/me")
    assert me.status_code == 200
    assert me.headers["etag"] == f'"{me.json()["version"]}"'

    again = await client.get(f"{USERS}/me", headers={"If-None-Match": me.headers["etag"]})

    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == me.headers["etag"]
