"""DELETE /api/v1/users/{id}."""

from __future__ import annotations

import httpx
import pytest
from uuid_utils.compat import uuid7

from tests.users.helpers import USERS, assert_problem, create_user, user_url, without_admin


async def test_delete_is_204_then_the_user_is_gone(client: httpx.AsyncClient) -> None:
    created = await create_user(client)
    other = await create_user(client, "grace")

    response = await client.delete(user_url(created["id"]))

    assert response.status_code == 204
    assert response.content == b""
    assert_problem(await client.get(user_url(created["id"])), 404)
    assert_problem(await client.delete(user_url(created["id"])), 404)
    listed = (await client.get(USERS)).json()["items"]
    assert [user["id"] for user in without_admin(listed)] == [other["id"]]


async def test_deleted_email_and_username_can_be_registered_again(
    client: httpx.AsyncClient,
) -> None:
    created = await create_user(client)
    assert (await client.delete(user_url(created["id"]))).status_code == 204
    again = await create_user(client)
    assert again["id"] != created["id"]


async def test_delete_with_current_if_match(client: httpx.AsyncClient) -> None:
    created = await create_user(client)
    patched = await client.patch(user_url(created["id"]), json={"full_name": "Ada"})
    assert patched.headers["etag"] == '"2"', patched.text
    response = await client.delete(user_url(created["id"]), headers={"If-Match": '"2"'})
    assert response.status_code == 204
    assert_problem(await client.get(user_url(created["id"])), 404)


@pytest.mark.parametrize("header", ['"2"', '"0"', "garbage"])
async def test_delete_with_stale_if_match_is_412_and_keeps_the_user(
    client: httpx.AsyncClient, header: str
) -> None:
    created = await create_user(client)
    response = await client.delete(user_url(created["id"]), headers={"If-Match": header})
    assert_problem(response, 412)
    assert (await client.get(user_url(created["id"]))).status_code == 200


async def test_delete_unknown_is_404(client: httpx.AsyncClient) -> None:
    assert_problem(await client.delete(user_url(uuid7())), 404)


async def test_delete_non_uuid_is_404_or_422(client: httpx.AsyncClient) -> None:
    response = await client.delete(user_url("nope"))
    assert response.status_code in (404, 422)
    assert_problem(response, response.status_code)
