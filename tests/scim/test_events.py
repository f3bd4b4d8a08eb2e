"""What a SCIM client changes is recorded with the provisioning token as its actor, and
with the request's id and the client's address."""

from __future__ import annotations

import uuid

import httpx
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.events.helpers import events
from tests.scim.conftest import PATCH_SCHEMA, SCIM, new_user
from users_api.scim.tokens import ScimTokens

GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
REQUEST_ID = "scim-events-1"


async def test_users_and_groups_changed_by_scim_name_the_token(
    app: FastAPI, scim: httpx.AsyncClient, scim_token: str, engine: AsyncEngine
) -> None:
    tokens: ScimTokens = app.state.scim_tokens
    token_id = await tokens.authenticate(scim_token)
    assert token_id is not None
    scim.headers["X-Request-ID"] = REQUEST_ID

    ada = (await scim.post(f"{SCIM}/Users", json=new_user("ada"))).json()["id"]
    bob = (await scim.post(f"{SCIM}/Users", json=new_user("bob"))).json()["id"]
    replaced = await scim.put(f"{SCIM}/Users/{ada}", json=new_user("ada", "ada@lovelace.org"))
    assert replaced.status_code == 200, replaced.text
    deactivate = {
        "schemas": [PATCH_SCHEMA],
        "Operations": [{"op": "replace", "value": {"active": False}}],
    }
    assert (await scim.patch(f"{SCIM}/Users/{bob}", json=deactivate)).status_code == 200
    body = {"schemas": [GROUP_SCHEMA], "displayName": "Ops", "members": [{"value": ada}]}
    group = (await scim.post(f"{SCIM}/Groups", json=body)).json()
    body = {"schemas": [GROUP_SCHEMA], "displayName": "Ops", "members": [{"value": bob}]}
    assert (await scim.put(f"{SCIM}/Groups/{group['id']}", json=body)).status_code == 200

    found = await events(engine)
    ours = [event for event in found if event["request_id"] == REQUEST_ID]
    summary = [(event["type"], event["data"].get("user_id")) for event in ours]
    assert summary[:6] == [
        ("user.created", None),
        ("user.created", None),
        ("user.updated", None),
        ("user.updated", None),
        ("user.deactivated", None),
        ("group.created", None),
    ]
    # The PUT replaced ada with bob: one event per member who left or joined.
    assert summary[6] == ("group.member_added", ada)
    assert sorted(summary[7:]) == [("group.member_added", bob), ("group.member_removed", ada)]
    for event in ours:
        assert (event["actor_type"], event["actor_id"]) == ("scim", token_id), event
        assert event["ip_address"] == "127.0.0.1"
    assert {event["subject_id"] for event in ours if event["subject_type"] == "user"} == {
        uuid.UUID(ada),
        uuid.UUID(bob),
    }


async def test_a_user_deleted_by_scim_leaves_its_groups_on_record(
    app: FastAPI, scim: httpx.AsyncClient, scim_token: str, engine: AsyncEngine
) -> None:
    tokens: ScimTokens = app.state.scim_tokens
    token_id = await tokens.authenticate(scim_token)
    ada = (await scim.post(f"{SCIM}/Users", json=new_user("ada"))).json()["id"]
    body = {"schemas": [GROUP_SCHEMA], "displayName": "Ops", "members": [{"value": ada}]}
    group = (await scim.post(f"{SCIM}/Groups", json=body)).json()
    scim.headers["X-Request-ID"] = REQUEST_ID

    assert (await scim.delete(f"{SCIM}/Users/{ada}")).status_code == 204

    removed = [event for event in await events(engine) if event["type"] == "group.member_removed"]
    assert [(str(event["subject_id"]), event["data"]) for event in removed] == [
        (group["id"], {"user_id": ada})
    ]
    assert (removed[0]["actor_type"], removed[0]["actor_id"]) == ("scim", token_id)
    assert removed[0]["request_id"] == REQUEST_ID
