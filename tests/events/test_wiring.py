"""Groups and provisioning tokens write their events with the change, exactly when it
commits; every written event is counted in `/metrics`; the audit and groups lists read
without replicas."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.auth.helpers import register
from tests.conftest import Admin
from tests.events.helpers import AUDIT, events, one_event
from tests.groups.helpers import GROUPS, create_group, group_url
from tests.operations.test_metrics import scrape, value
from users_api.groups.schemas import GroupCreate
from users_api.groups.service import GroupService
from users_api.scim.tokens import ScimTokens

REQUEST_ID = "wiring-test-1"
GROUP_TYPES = (
    "group.created",
    "group.updated",
    "group.deleted",
    "group.member_added",
    "group.member_removed",
)


def _summary(found: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    return [(event["type"], event["data"]) for event in found]


async def test_each_group_change_writes_its_event_by_the_admin(
    admin_client: httpx.AsyncClient, admin: Admin, engine: AsyncEngine
) -> None:
    admin_client.headers["X-Request-ID"] = REQUEST_ID
    ada = (await register(admin_client, "ada"))["id"]
    group = await create_group(admin_client, "Engineering")
    url = group_url(group["id"])

    assert (await admin_client.patch(url, json={"display_name": "Eng"})).status_code == 200
    assert (await admin_client.patch(url, json={"display_name": "Eng"})).status_code == 200
    for _ in range(2):  # the second changes nothing: no event
        assert (await admin_client.put(f"{url}/members/{ada}")).status_code == 204
    for _ in range(2):
        assert (await admin_client.delete(f"{url}/members/{ada}")).status_code == 204
    assert (await admin_client.delete(url)).status_code == 204

    found = await events(engine, *GROUP_TYPES)
    assert _summary(found) == [
        ("group.created", {}),
        ("group.updated", {"fields": ["display_name"]}),
        ("group.member_added", {"user_id": ada}),
        ("group.member_removed", {"user_id": ada}),
        ("group.deleted", {}),
    ]
    for event in found:
        assert (event["actor_type"], event["actor_id"]) == ("user", admin.id)
        assert (event["subject_type"], str(event["subject_id"])) == ("group", group["id"])
        assert event["request_id"] == REQUEST_ID
        assert event["ip_address"] == "127.0.0.1"


async def test_a_refused_group_change_writes_no_event(
    admin_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    ada = (await register(admin_client, "ada"))["id"]
    group = await create_group(admin_client, "Sales")
    taken = await admin_client.post(GROUPS, json={"display_name": "sales"})
    assert taken.status_code == 409
    stale = await admin_client.put(
        group_url(group["id"], f"/members/{ada}"), headers={"If-Match": 'W/"99"'}
    )
    assert stale.status_code == 412
    nobody = await admin_client.put(group_url(group["id"], f"/members/{uuid.uuid4()}"))
    assert nobody.status_code == 404
    assert _summary(await events(engine, *GROUP_TYPES)) == [("group.created", {})]


async def test_the_system_replacing_members_records_each_who_joined_or_left(
    app: FastAPI, admin_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    groups: GroupService = app.state.groups
    ada, bob, cy = [
        uuid.UUID((await register(admin_client, n))["id"]) for n in ("ada", "bob", "cyd")
    ]
    group = await groups.create(GroupCreate(display_name="Ops"), caller=None, members=[ada, bob])
    await groups.replace_members(group["id"], [bob, cy], caller=None)
    await groups.replace_members(group["id"], [cy, bob], caller=None)  # nothing changes

    found = await events(engine, *GROUP_TYPES)
    summary = [(event["type"], event["data"].get("user_id")) for event in found]
    assert summary[0] == ("group.created", None)
    assert sorted(summary[1:3]) == sorted(
        [("group.member_added", str(ada)), ("group.member_added", str(bob))]
    )
    assert summary[3:] == [("group.member_added", str(cy)), ("group.member_removed", str(ada))]
    assert {(event["actor_type"], event["actor_id"]) for event in found} == {("system", None)}
    assert {event["request_id"] for event in found} == {None}


async def test_deleting_a_member_records_each_membership_it_ends(
    admin_client: httpx.AsyncClient, admin: Admin, engine: AsyncEngine
) -> None:
    ada = (await register(admin_client, "ada"))["id"]
    bob = (await register(admin_client, "bob"))["id"]
    first = await create_group(admin_client, "First")
    second = await create_group(admin_client, "Second")
    for group, user in ((first, ada), (second, ada), (second, bob)):
        joined = await admin_client.put(group_url(group["id"], f"/members/{user}"))
        assert joined.status_code == 204
    admin_client.headers["X-Request-ID"] = REQUEST_ID

    assert (await admin_client.delete(f"/api/v1/users/{ada}")).status_code == 204

    removed = await events(engine, "group.member_removed")
    # As a removal through the groups API: one event a group, of the group, by the admin.
    assert sorted(str(event["subject_id"]) for event in removed) == sorted(
        [first["id"], second["id"]]
    )
    for event in removed:
        assert event["data"] == {"user_id": ada}
        assert (event["actor_type"], event["actor_id"]) == ("user", admin.id)
        assert event["subject_type"] == "group"
        assert event["request_id"] == REQUEST_ID
    # Written with the delete, in its transaction; bob stays in his group.
    deleted = await one_event(engine, "user.deleted")
    assert {event["request_id"] for event in removed} == {deleted["request_id"]}
    shown = (await admin_client.get(group_url(second["id"]))).json()
    assert (shown["member_count"], shown["version"]) == (1, 4)


async def test_scim_token_create_and_revoke_are_recorded_by_the_system_without_the_token(
    app: FastAPI, engine: AsyncEngine
) -> None:
    tokens: ScimTokens = app.state.scim_tokens
    row, token = await tokens.create("Entra ID")
    await tokens.revoke(row["id"])
    await tokens.revoke(row["id"])  # already revoked: nothing changes, no event

    found = await events(engine, "scim_token.created", "scim_token.revoked")
    assert [event["type"] for event in found] == ["scim_token.created", "scim_token.revoked"]
    for event in found:
        assert (event["actor_type"], event["actor_id"]) == ("system", None)
        assert (event["subject_type"], event["subject_id"]) == ("scim_token", row["id"])
        assert event["data"] == {"name": "Entra ID"}
        assert token not in str(event)
        assert "scim_" not in str(event["data"])


async def test_metrics_count_every_event_once_it_commits(
    admin_client: httpx.AsyncClient,
) -> None:
    before = await scrape(admin_client)
    await create_group(admin_client, "Counted")
    assert (await admin_client.post(GROUPS, json={"display_name": "counted"})).status_code == 409
    after = await scrape(admin_client)
    name = "users_api_events_written_total"
    # The refused one rolled back: only the first group's event was written.
    assert value(after, name, type="group.created") - value(before, name, type="group.created") == 1


async def test_audit_and_groups_lists_read_without_replicas(
    app: FastAPI, admin_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    assert not app.state.groups.db.replicated
    ada = (await register(admin_client, "ada"))["id"]
    group = await create_group(admin_client, "Listed")
    assert (await admin_client.put(group_url(group["id"], f"/members/{ada}"))).status_code == 204

    audit = await admin_client.get(AUDIT, params={"type": "group.*"})
    assert audit.status_code == 200, audit.text
    assert [item["type"] for item in audit.json()["items"]] == [
        "group.member_added",
        "group.created",
    ]
    listed = await admin_client.get(GROUPS)
    assert [item["id"] for item in listed.json()["items"]] == [group["id"]]
    members = await admin_client.get(group_url(group["id"], "/members"))
    assert [item["id"] for item in members.json()["items"]] == [ada]
    await one_event(engine, "group.member_added")
