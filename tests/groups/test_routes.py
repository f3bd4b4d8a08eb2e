"""Every row of API.md's Groups table, through the HTTP API against a real PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from fastapi import FastAPI
from uuid_utils.compat import uuid7

from tests.auth.helpers import bearer, register, register_and_login
from tests.conftest import Admin
from tests.events.helpers import AUDIT
from tests.groups.helpers import GROUP_KEYS, GROUPS, create_group, group_url
from tests.users.helpers import USERS, assert_problem, assert_validation_problem, user_url


def _unknown() -> str:
    return str(uuid7())


# --- POST /groups ----------------------------------------------------------------------


async def test_create_answers_201_with_location_and_etag(admin_client: httpx.AsyncClient) -> None:
    response = await admin_client.post(
        GROUPS, json={"display_name": "Engineering", "external_id": "eng-1"}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == GROUP_KEYS
    assert body["display_name"] == "Engineering"
    assert body["external_id"] == "eng-1"
    assert body["version"] == 1
    assert body["member_count"] == 0
    assert uuid.UUID(body["id"]).version == 7
    assert body["created_at"].endswith("Z")
    assert response.headers["Location"] == group_url(body["id"])
    assert response.headers["ETag"] == '"1"'
    assert (await admin_client.get(response.headers["Location"])).json() == body


async def test_a_taken_name_is_409_case_insensitively(admin_client: httpx.AsyncClient) -> None:
    await create_group(admin_client, "Sales")
    response = await admin_client.post(GROUPS, json={"display_name": "sALES"})
    body = assert_problem(response, 409)
    assert body["field"] == "display_name"
    assert body["code"] == "conflict"


async def test_invalid_groups_are_422(admin_client: httpx.AsyncClient) -> None:
    for body, field in (
        ({"display_name": ""}, "display_name"),
        ({"display_name": "x" * 257}, "display_name"),
        ({"display_name": "a\x00b"}, "display_name"),
        ({"display_name": None}, "display_name"),
        ({}, "display_name"),
        ({"display_name": "ok", "external_id": ""}, "external_id"),
        ({"display_name": "ok", "members": []}, "members"),
    ):
        response = await admin_client.post(GROUPS, json=body)
        assert_validation_problem(response, field)
    assert (await admin_client.post(GROUPS, json={"display_name": "x" * 256})).status_code == 201


async def test_a_display_name_is_trimmed_and_never_blank(
    admin_client: httpx.AsyncClient,
) -> None:
    group = await create_group(admin_client, "  Ops\t")
    assert group["display_name"] == "Ops"
    taken = await admin_client.post(GROUPS, json={"display_name": " ops "})
    assert assert_problem(taken, 409)["field"] == "display_name"
    for blank in (" ", "   ", "\t\n"):
        created = await admin_client.post(GROUPS, json={"display_name": blank})
        assert_validation_problem(created, "display_name")
        patched = await admin_client.patch(group_url(group["id"]), json={"display_name": blank})
        assert_validation_problem(patched, "display_name")
    renamed = await admin_client.patch(group_url(group["id"]), json={"display_name": " Dev "})
    assert renamed.json()["display_name"] == "Dev"
    # 256 characters once trimmed
    padded = await admin_client.post(GROUPS, json={"display_name": f" {'x' * 256} "})
    assert padded.status_code == 201, padded.text


# --- GET /groups/{id} ------------------------------------------------------------------


async def test_get_with_etag_and_304(admin_client: httpx.AsyncClient) -> None:
    group = await create_group(admin_client)
    response = await admin_client.get(group_url(group["id"]))
    assert response.status_code == 200
    assert response.json() == group
    assert response.headers["ETag"] == '"1"'
    cached = await admin_client.get(group_url(group["id"]), headers={"If-None-Match": '"1"'})
    assert cached.status_code == 304
    assert cached.content == b""
    assert cached.headers["ETag"] == '"1"'
    stale = await admin_client.get(group_url(group["id"]), headers={"If-None-Match": '"2"'})
    assert stale.status_code == 200


async def test_unknown_or_malformed_ids_are_404_or_422(admin_client: httpx.AsyncClient) -> None:
    assert_problem(await admin_client.get(group_url(_unknown())), 404)
    assert_validation_problem(await admin_client.get(group_url("not-a-uuid")), "group_id")


# --- GET /groups -----------------------------------------------------------------------


async def test_list_pages_by_keyset_with_link(admin_client: httpx.AsyncClient) -> None:
    created = [(await create_group(admin_client, f"Team {i}"))["id"] for i in range(5)]
    await create_group(admin_client, "Other")
    seen: list[str] = []
    url: str | None = f"{GROUPS}?limit=2&q=team"
    pages = 0
    while url is not None:
        response = await admin_client.get(url)
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["items"]) <= 2
        seen += [item["id"] for item in body["items"]]
        pages += 1
        link = response.headers.get("Link")
        if body["next_cursor"] is None:
            assert link is None
            url = None
        else:
            assert link is not None
            assert link.endswith('>; rel="next"')
            url = link[1 : link.index(">")]
            assert url.startswith(f"{GROUPS}?limit=2&q=team&cursor=")
    assert seen == created  # by id: creation order, each once
    assert pages == 3
    everything = (await admin_client.get(GROUPS)).json()
    assert len(everything["items"]) == 6
    assert everything["next_cursor"] is None


async def test_list_q_is_a_literal_substring(admin_client: httpx.AsyncClient) -> None:
    await create_group(admin_client, "100% remote")
    await create_group(admin_client, "1000 remote")
    body = (await admin_client.get(GROUPS, params={"q": "0%"})).json()
    assert [item["display_name"] for item in body["items"]] == ["100% remote"]


async def test_list_bad_cursor_and_parameters(admin_client: httpx.AsyncClient) -> None:
    body = assert_problem(await admin_client.get(GROUPS, params={"cursor": "garbage"}), 400)
    assert body["code"] == "invalid-cursor"
    assert_validation_problem(await admin_client.get(GROUPS, params={"limit": 0}), "limit")
    assert_validation_problem(await admin_client.get(GROUPS, params={"limit": 201}), "limit")


async def test_an_empty_cursor_is_the_first_page_as_for_users(
    admin_client: httpx.AsyncClient,
) -> None:
    group = await create_group(admin_client, "Ops")
    for url in (GROUPS, group_url(group["id"], "/members"), USERS, AUDIT):
        first = await admin_client.get(url)
        empty = await admin_client.get(f"{url}?cursor=")
        assert empty.status_code == 200, (url, empty.text)
        assert empty.json() == first.json()


async def _next_cursor(client: httpx.AsyncClient, url: str) -> str:
    page = await client.get(url, params={"limit": 1})
    assert page.status_code == 200, page.text
    next_cursor: str = page.json()["next_cursor"]
    assert next_cursor is not None
    return next_cursor


async def test_a_cursor_is_refused_by_every_other_list(
    admin_client: httpx.AsyncClient,
) -> None:
    first = await create_group(admin_client, "First")
    second = await create_group(admin_client, "Second")
    for name in ("ada", "bob"):
        user = await register(admin_client, name)
        for group in (first, second):
            await admin_client.put(group_url(group["id"], f"/members/{user['id']}"))
    lists = [USERS, GROUPS, group_url(first["id"], "/members"), group_url(second["id"], "/members")]
    cursors = {url: await _next_cursor(admin_client, url) for url in lists}
    for made_for, made in cursors.items():
        for url in lists:
            response = await admin_client.get(url, params={"cursor": made})
            if url == made_for:
                assert response.status_code == 200, (url, response.text)
            else:
                body = assert_problem(response, 400)
                assert body["code"] == "invalid-cursor", (made_for, url)


# --- PATCH /groups/{id} ----------------------------------------------------------------


async def test_patch_changes_and_bumps_the_version(admin_client: httpx.AsyncClient) -> None:
    group = await create_group(admin_client, "Ops", external_id="ops")
    response = await admin_client.patch(
        group_url(group["id"]),
        json={"display_name": "Operations", "external_id": None},
        headers={"If-Match": '"1"'},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["display_name"] == "Operations"
    assert body["external_id"] is None
    assert body["version"] == 2
    assert response.headers["ETag"] == '"2"'
    assert body["updated_at"] >= group["updated_at"]
    same = await admin_client.patch(group_url(group["id"]), json={"display_name": "Operations"})
    assert same.json()["version"] == 2  # nothing changed, nothing bumped


async def test_patch_failures(admin_client: httpx.AsyncClient) -> None:
    group = await create_group(admin_client, "Ops")
    await create_group(admin_client, "Sales")
    url = group_url(group["id"])
    body = assert_problem(await admin_client.patch(url, json={"display_name": "SALES"}), 409)
    assert body["field"] == "display_name"
    stale = await admin_client.patch(url, json={"display_name": "X"}, headers={"If-Match": '"9"'})
    assert assert_problem(stale, 412)["code"] == "precondition-failed"
    assert_problem(await admin_client.patch(group_url(_unknown()), json={"display_name": "Y"}), 404)
    assert_validation_problem(await admin_client.patch(url, json={"display_name": None}))
    assert_validation_problem(await admin_client.patch(url, json={"version": 5}))
    assert (await admin_client.get(url)).json() == group  # nothing of it was stored


# --- DELETE /groups/{id} ---------------------------------------------------------------


async def test_delete(admin_client: httpx.AsyncClient, admin: Admin) -> None:
    group = await create_group(admin_client)
    await admin_client.put(group_url(group["id"], f"/members/{admin.id}"))
    url = group_url(group["id"])
    assert_problem(await admin_client.delete(url, headers={"If-Match": '"1"'}), 412)
    response = await admin_client.delete(url, headers={"If-Match": '"2"'})
    assert response.status_code == 204
    assert_problem(await admin_client.get(url), 404)
    assert_problem(await admin_client.delete(url), 404)
    # The members stay users.
    assert (await admin_client.get(user_url(admin.id))).status_code == 200


# --- members ---------------------------------------------------------------------------


async def test_members_are_added_and_removed_idempotently(
    admin_client: httpx.AsyncClient, admin: Admin
) -> None:
    group = await create_group(admin_client)
    ada = await register(admin_client, "ada")
    member = group_url(group["id"], f"/members/{ada['id']}")
    first = await admin_client.put(member)
    assert first.status_code == 204
    assert first.content == b""
    assert first.headers["ETag"] == '"2"'
    again = await admin_client.put(member)
    assert again.status_code == 204
    assert again.headers["ETag"] == '"2"'  # no change, no new version
    await admin_client.put(group_url(group["id"], f"/members/{admin.id}"))
    shown = (await admin_client.get(group_url(group["id"]))).json()
    assert shown["member_count"] == 2
    assert shown["version"] == 3
    removed = await admin_client.delete(member)
    assert removed.status_code == 204
    assert removed.headers["ETag"] == '"4"'
    assert (await admin_client.delete(member)).status_code == 204
    shown = (await admin_client.get(group_url(group["id"]))).json()
    assert shown["member_count"] == 1
    assert shown["version"] == 4


async def test_member_changes_honour_if_match(
    admin_client: httpx.AsyncClient, admin: Admin
) -> None:
    group = await create_group(admin_client)
    member = group_url(group["id"], f"/members/{admin.id}")
    assert_problem(await admin_client.put(member, headers={"If-Match": '"7"'}), 412)
    assert (await admin_client.put(member, headers={"If-Match": '"1"'})).status_code == 204


async def test_member_changes_of_unknown_groups_or_users_are_404(
    admin_client: httpx.AsyncClient, admin: Admin
) -> None:
    group = await create_group(admin_client)
    for method in ("PUT", "DELETE"):
        unknown_user = group_url(group["id"], f"/members/{_unknown()}")
        assert_problem(await admin_client.request(method, unknown_user), 404)
        unknown_group = group_url(_unknown(), f"/members/{admin.id}")
        assert_problem(await admin_client.request(method, unknown_group), 404)
    assert (await admin_client.get(group_url(group["id"]))).json() == group


async def test_members_list_is_a_keyset_page_of_users(
    admin_client: httpx.AsyncClient, admin: Admin
) -> None:
    group = await create_group(admin_client)
    users = [await register(admin_client, f"user{i}") for i in range(3)]
    for user in users:
        await admin_client.put(group_url(group["id"], f"/members/{user['id']}"))
    first = await admin_client.get(group_url(group["id"], "/members"), params={"limit": 2})
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["items"] == users[:2]  # the users API's own output
    link = first.headers["Link"]
    second = await admin_client.get(link[1 : link.index(">")])
    assert second.json() == {"items": users[2:], "next_cursor": None}
    assert "Link" not in second.headers
    assert_problem(await admin_client.get(group_url(_unknown(), "/members")), 404)
    bad = await admin_client.get(group_url(group["id"], "/members"), params={"cursor": "x"})
    assert_problem(bad, 400)


async def test_deleting_a_user_drops_its_memberships(
    admin_client: httpx.AsyncClient, engine: Any
) -> None:
    group = await create_group(admin_client)
    ada = await register(admin_client, "ada")
    await admin_client.put(group_url(group["id"], f"/members/{ada['id']}"))
    assert (await admin_client.delete(user_url(ada["id"]))).status_code == 204
    shown = (await admin_client.get(group_url(group["id"]))).json()
    assert shown["member_count"] == 0
    assert shown["version"] == 3  # its members changed: a new ETag
    members = (await admin_client.get(group_url(group["id"], "/members"))).json()
    assert members["items"] == []


# --- GET /users/{id}/groups ------------------------------------------------------------


async def test_a_users_groups_for_admin_and_self(
    admin_client: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    ada, tokens = await register_and_login(client, "ada")
    bob, bob_tokens = await register_and_login(client, "bob")
    first = await create_group(admin_client, "First")
    second = await create_group(admin_client, "Second")
    await create_group(admin_client, "Third")
    for group in (first, second):
        await admin_client.put(group_url(group["id"], f"/members/{ada['id']}"))
    by_admin = await admin_client.get(user_url(ada["id"]) + "/groups")
    assert by_admin.status_code == 200
    names = [group["display_name"] for group in by_admin.json()["items"]]
    assert names == ["First", "Second"]
    assert by_admin.json()["items"][0]["member_count"] == 1
    by_self = await client.get(
        user_url(ada["id"]) + "/groups", headers=bearer(tokens["access_token"])
    )
    assert by_self.json() == by_admin.json()
    by_other = await client.get(
        user_url(ada["id"]) + "/groups", headers=bearer(bob_tokens["access_token"])
    )
    assert_problem(by_other, 404)  # someone else's: as if there were no such user
    own = await client.get(
        user_url(bob["id"]) + "/groups", headers=bearer(bob_tokens["access_token"])
    )
    assert own.json() == {"items": []}
    assert_problem(await admin_client.get(user_url(_unknown()) + "/groups"), 404)
    assert_problem(await client.get(user_url(ada["id"]) + "/groups"), 401)


# --- who may -----------------------------------------------------------------------------


async def test_groups_are_for_admins(
    admin_client: httpx.AsyncClient, client: httpx.AsyncClient, admin: Admin
) -> None:
    group = await create_group(admin_client)
    _, tokens = await register_and_login(client, "ada")
    member = group_url(group["id"], f"/members/{admin.id}")
    calls: list[tuple[str, str, dict[str, Any] | None]] = [
        ("POST", GROUPS, {"display_name": "Mine"}),
        ("GET", GROUPS, None),
        ("GET", group_url(group["id"]), None),
        ("PATCH", group_url(group["id"]), {"display_name": "Mine"}),
        ("DELETE", group_url(group["id"]), None),
        ("GET", group_url(group["id"], "/members"), None),
        ("PUT", member, None),
        ("DELETE", member, None),
    ]
    for method, url, body in calls:
        response = await client.request(
            method, url, json=body, headers=bearer(tokens["access_token"])
        )
        assert assert_problem(response, 403)["code"] == "forbidden", (method, url)
        anonymous = await client.request(method, url, json=body)
        assert_problem(anonymous, 401)
        assert "WWW-Authenticate" in anonymous.headers
    # Not even an unknown group's existence is told apart.
    unknown = await client.get(group_url(_unknown()), headers=bearer(tokens["access_token"]))
    assert_problem(unknown, 403)
    assert (await admin_client.get(group_url(group["id"]))).json() == group


async def test_a_demoted_admin_loses_groups_at_once(
    app: FastAPI, admin_client: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    second, tokens = await register_and_login(client, "second")
    promoted = await admin_client.patch(user_url(second["id"]), json={"is_admin": True})
    assert promoted.status_code == 200
    headers = bearer(tokens["access_token"])
    assert (
        await client.post(GROUPS, json={"display_name": "A"}, headers=headers)
    ).status_code == 201
    await admin_client.patch(user_url(second["id"]), json={"is_admin": False})
    assert_problem(await client.post(GROUPS, json={"display_name": "B"}, headers=headers), 403)
