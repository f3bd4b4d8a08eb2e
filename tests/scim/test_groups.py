"""SCIM Groups on the groups service: members by user id, a member that is no user."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI

from tests.auth.helpers import app_with
from tests.scim.conftest import PATCH_SCHEMA, SCIM, new_user
from users_api.config import Settings

GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"


async def _user(scim: httpx.AsyncClient, name: str) -> str:
    created = await scim.post(f"{SCIM}/Users", json=new_user(name))
    assert created.status_code == 201, created.text
    user_id: str = created.json()["id"]
    return user_id


async def test_a_group_with_members_round_trips_and_users_show_it(
    scim: httpx.AsyncClient,
) -> None:
    ada, bob = await _user(scim, "ada"), await _user(scim, "bob")
    body = {
        "schemas": [GROUP_SCHEMA],
        "displayName": "Engineers",
        "externalId": "g-1",
        "members": [{"value": ada}, {"value": bob}],
    }
    created = await scim.post(f"{SCIM}/Groups", json=body)
    assert created.status_code == 201, created.text
    group = created.json()
    assert created.headers["etag"] == group["meta"]["version"]
    assert sorted(m["value"] for m in group["members"]) == sorted([ada, bob])
    user = (await scim.get(f"{SCIM}/Users/{ada}")).json()
    assert [g["value"] for g in user["groups"]] == [group["id"]]
    lean = await scim.get(f"{SCIM}/Groups/{group['id']}", params={"excludedAttributes": "members"})
    assert "members" not in lean.json()
    listed = await scim.get(
        f"{SCIM}/Groups",
        params={"filter": f'members[value eq "{bob}"]', "excludedAttributes": "members"},
    )
    assert listed.json()["totalResults"] == 1
    assert "members" not in listed.json()["Resources"][0]
    in_group = await scim.get(
        f"{SCIM}/Users", params={"filter": f'groups.value eq "{group["id"]}"'}
    )
    assert in_group.json()["totalResults"] == 2


async def test_patch_adds_and_removes_members_by_value_filter(scim: httpx.AsyncClient) -> None:
    ada, bob = await _user(scim, "ada"), await _user(scim, "bob")
    group = (
        await scim.post(f"{SCIM}/Groups", json={"schemas": [GROUP_SCHEMA], "displayName": "Ops"})
    ).json()
    url = f"{SCIM}/Groups/{group['id']}"
    added = await scim.patch(
        url,
        json={
            "schemas": [PATCH_SCHEMA],
            "Operations": [
                {"op": "Add", "path": "members", "value": [{"value": ada}, {"value": bob}]}
            ],
        },
    )
    assert added.status_code == 200, added.text
    assert len(added.json()["members"]) == 2
    removed = await scim.patch(
        url,
        json={
            "schemas": [PATCH_SCHEMA],
            "Operations": [{"op": "Remove", "path": f'members[value eq "{ada}"]'}],
        },
    )
    assert [m["value"] for m in removed.json()["members"]] == [bob]
    renamed = await scim.patch(
        url,
        json={
            "schemas": [PATCH_SCHEMA],
            "Operations": [{"op": "Replace", "path": "displayName", "value": "Operations"}],
        },
    )
    assert renamed.json()["displayName"] == "Operations"
    assert renamed.json()["meta"]["version"] == 'W/"4"'


async def test_parallel_patches_without_if_match_all_land(
    app: FastAPI, settings: Settings, scim: httpx.AsyncClient, scim_token: str
) -> None:
    """Entra adds a group's members one request each, in parallel, with no If-Match: each
    lands (no 412 the client did not ask for), also across two workers (two apps)."""
    users = [await _user(scim, f"member{index:02d}") for index in range(24)]
    group = (
        await scim.post(f"{SCIM}/Groups", json={"schemas": [GROUP_SCHEMA], "displayName": "Crowd"})
    ).json()
    url = f"{SCIM}/Groups/{group['id']}"

    def add(member: str) -> dict[str, object]:
        operation = {"op": "Add", "path": "members", "value": [{"value": member}]}
        return {"schemas": [PATCH_SCHEMA], "Operations": [operation]}

    async with app_with(settings) as other:
        other.headers["Authorization"] = f"Bearer {scim_token}"
        clients = (scim, other)
        answers = await asyncio.gather(
            *(clients[index % 2].patch(url, json=add(user)) for index, user in enumerate(users))
        )
        assert [answer.status_code for answer in answers] == [200] * len(users)
        renames = await asyncio.gather(
            *(
                clients[index % 2].patch(
                    f"{SCIM}/Users/{user}",
                    json={
                        "schemas": [PATCH_SCHEMA],
                        "Operations": [{"op": "replace", "path": "title", "value": f"T{index}"}],
                    },
                )
                for index, user in enumerate([users[0]] * 8)
            )
        )
        assert [answer.status_code for answer in renames] == [200] * 8
    members = (await scim.get(url)).json()["members"]
    assert sorted(member["value"] for member in members) == sorted(users)
    # a client that names the version it read still gets its 412
    stale = await scim.patch(url, json=add(users[0]), headers={"If-Match": 'W/"1"'})
    assert stale.status_code == 412


async def test_a_big_group_fits_and_a_bigger_body_is_a_scim_413(scim: httpx.AsyncClient) -> None:
    """Okta PUTs a group with all its members: past the API's 64 KiB, within SCIM's 1 MiB.
    Over that, the refusal is SCIM's error, in SCIM's media type, streamed or declared."""
    users = [await _user(scim, f"big{index:03d}") for index in range(40)]
    group = (
        await scim.post(f"{SCIM}/Groups", json={"schemas": [GROUP_SCHEMA], "displayName": "Big"})
    ).json()
    url = f"{SCIM}/Groups/{group['id']}"
    # the 40 members, padded with the display names Okta sends, to 100 KB
    padding = "x" * 2500
    members = [{"value": user, "display": padding} for user in users]
    body = {"schemas": [GROUP_SCHEMA], "displayName": "Big", "members": members}
    put = await scim.put(url, json=body)
    assert len(put.request.content) > 65_536
    assert put.status_code == 200, put.text
    assert len(put.json()["members"]) == 40
    huge = {**body, "displayName": "x" * (1_048_576 + 1)}
    for request in (
        scim.build_request("PUT", url, json=huge),
        scim.build_request("PUT", url, content=_chunked(httpx.Request("PUT", url, json=huge))),
    ):
        refused = await scim.send(request)
        assert refused.status_code == 413
        assert refused.headers["content-type"] == "application/scim+json"
        assert refused.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    assert (await scim.get(url)).json()["displayName"] == "Big"
    wrong = await scim.request("PATCH", f"{SCIM}/ServiceProviderConfig")
    assert wrong.status_code == 405
    assert set(wrong.headers["allow"].split(", ")) == {"GET", "HEAD"}


async def _chunked(request: httpx.Request) -> AsyncIterator[bytes]:
    body = request.read()
    for start in range(0, len(body), 65_536):
        yield body[start : start + 65_536]


async def test_a_member_that_is_no_user_is_400_invalid_value_and_nothing_is_stored(
    scim: httpx.AsyncClient,
) -> None:
    ada = await _user(scim, "ada")
    nobody = str(uuid.uuid4())
    body = {
        "schemas": [GROUP_SCHEMA],
        "displayName": "X",
        "members": [{"value": ada}, {"value": nobody}],
    }
    refused = await scim.post(f"{SCIM}/Groups", json=body)
    assert refused.status_code == 400
    assert refused.json()["scimType"] == "invalidValue"
    assert (await scim.get(f"{SCIM}/Groups")).json()["totalResults"] == 0
    group = (
        await scim.post(f"{SCIM}/Groups", json={"displayName": "Y", "members": [{"value": ada}]})
    ).json()
    patch = {
        "schemas": [PATCH_SCHEMA],
        "Operations": [{"op": "add", "path": "members", "value": [{"value": nobody}]}],
    }
    refused = await scim.patch(f"{SCIM}/Groups/{group['id']}", json=patch)
    assert refused.status_code == 400
    assert refused.json()["scimType"] == "invalidValue"
    kept = (await scim.get(f"{SCIM}/Groups/{group['id']}")).json()
    assert [m["value"] for m in kept["members"]] == [ada]
    assert kept["meta"]["version"] == 'W/"1"'


async def test_a_taken_display_name_is_409_uniqueness(scim: httpx.AsyncClient) -> None:
    assert (await scim.post(f"{SCIM}/Groups", json={"displayName": "Sales"})).status_code == 201
    taken = await scim.post(f"{SCIM}/Groups", json={"displayName": "sales"})
    assert taken.status_code == 409
    assert taken.json()["scimType"] == "uniqueness"
    assert (await scim.delete(f"{SCIM}/Groups/{uuid.uuid4()}")).status_code == 404


async def test_a_users_version_moves_with_its_groups(scim: httpx.AsyncClient) -> None:
    """`groups` is part of the User: a join, a leave or a group's new name is a new version,
    so a cached User is never revalidated (304) with stale groups."""
    ada = await _user(scim, "ada")
    url = f"{SCIM}/Users/{ada}"
    alone = await scim.get(url)
    group_body = {"schemas": [GROUP_SCHEMA], "displayName": "Ops", "members": [{"value": ada}]}
    group = (await scim.post(f"{SCIM}/Groups", json=group_body)).json()
    joined = await scim.get(url, headers={"If-None-Match": alone.headers["etag"]})
    assert joined.status_code == 200
    assert joined.json()["meta"]["version"] == joined.headers["etag"] != alone.headers["etag"]
    rename = {"op": "replace", "path": "displayName", "value": "Operations"}
    await scim.patch(
        f"{SCIM}/Groups/{group['id']}", json={"schemas": [PATCH_SCHEMA], "Operations": [rename]}
    )
    renamed = await scim.get(url, headers={"If-None-Match": joined.headers["etag"]})
    assert renamed.status_code == 200
    assert renamed.json()["groups"][0]["display"] == "Operations"
    unchanged = await scim.get(url, headers={"If-None-Match": renamed.headers["etag"]})
    assert unchanged.status_code == 304
    title = {
        "schemas": [PATCH_SCHEMA],
        "Operations": [{"op": "add", "path": "title", "value": "X"}],
    }
    stale = await scim.patch(url, json=title, headers={"If-Match": joined.headers["etag"]})
    assert stale.status_code == 412
    fresh = await scim.patch(url, json=title, headers={"If-Match": renamed.headers["etag"]})
    assert fresh.status_code == 200, fresh.text
    gone = await scim.delete(url, headers={"If-Match": renamed.headers["etag"]})
    assert gone.status_code == 412
    assert (await scim.delete(url, headers={"If-Match": fresh.headers["etag"]})).status_code == 204


async def test_a_group_body_may_nest_its_core_attributes_under_the_schema(
    scim: httpx.AsyncClient,
) -> None:
    group_schema = "urn:ietf:params:scim:schemas:core:2.0:Group"
    created = await scim.post(
        f"{SCIM}/Groups",
        json={"schemas": [group_schema], group_schema: {"displayName": "Nested Group"}},
    )
    assert created.status_code == 201, created.text
    assert created.json()["displayName"] == "Nested Group"
    replaced = await scim.put(
        f"{SCIM}/Groups/{created.json()['id']}",
        json={"schemas": [group_schema], f"{group_schema}:displayName": "Qualified Group"},
    )
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["displayName"] == "Qualified Group"
