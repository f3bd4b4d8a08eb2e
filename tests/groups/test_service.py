"""The groups service as every front (REST, SCIM) calls it: as the system (`caller=None`)."""

from __future__ import annotations

import uuid

import pytest
from fastapi import FastAPI
from uuid_utils.compat import uuid7

from tests.conftest import Admin
from users_api.errors import Conflict, NotFound, PreconditionFailed, UnknownMembers
from users_api.groups.schemas import GroupCreate, GroupListQuery, GroupUpdate, MemberListQuery
from users_api.groups.service import GroupService


def _groups(app: FastAPI) -> GroupService:
    service: GroupService = app.state.groups
    return service


async def test_create_get_update_delete(app: FastAPI) -> None:
    groups = _groups(app)
    created = await groups.create(GroupCreate(display_name="Engineering"), caller=None)
    assert created["version"] == 1
    assert created["member_count"] == 0
    assert created["external_id"] is None
    assert uuid.UUID(str(created["id"])).version == 7
    assert await groups.get(created["id"], caller=None) == created
    changed = await groups.update(
        created["id"],
        GroupUpdate(external_id="ext-1"),
        caller=None,
        if_match=frozenset({1}),
    )
    assert changed["version"] == 2
    assert changed["external_id"] == "ext-1"
    with pytest.raises(PreconditionFailed):
        await groups.delete(created["id"], caller=None, if_match=frozenset({1}))
    await groups.delete(created["id"], caller=None, if_match=frozenset({2}))
    with pytest.raises(NotFound):
        await groups.get(created["id"], caller=None)


async def test_name_is_unique_case_insensitively(app: FastAPI) -> None:
    groups = _groups(app)
    await groups.create(GroupCreate(display_name="Sales"), caller=None)
    with pytest.raises(Conflict) as raised:
        await groups.create(GroupCreate(display_name="sALES"), caller=None)
    assert raised.value.field == "display_name"


async def test_members_bump_the_version_and_replace_is_all_or_nothing(
    app: FastAPI, admin: Admin
) -> None:
    groups = _groups(app)
    group = await groups.create(GroupCreate(display_name="Ops"), caller=None)
    added = await groups.add_member(group["id"], admin.id, caller=None)
    assert added["member_count"] == 1
    assert added["version"] == 2
    again = await groups.add_member(group["id"], admin.id, caller=None)
    assert again["version"] == 2  # nothing changed
    unknown = uuid.UUID(str(uuid7()))
    with pytest.raises(UnknownMembers) as raised:
        await groups.replace_members(group["id"], [unknown], caller=None)
    assert raised.value.user_ids == [unknown]
    assert (await groups.get(group["id"], caller=None))["member_count"] == 1
    page = await groups.members(group["id"], MemberListQuery(), caller=None)
    assert [row["id"] for row in page.items] == [admin.id]
    assert await groups.member_ids([group["id"]], caller=None) == {group["id"]: [admin.id]}
    emptied = await groups.replace_members(group["id"], [], caller=None)
    assert emptied["member_count"] == 0
    assert emptied["version"] == 3
    listed = await groups.list(GroupListQuery(q="op"), caller=None)
    assert [row["id"] for row in listed.items] == [group["id"]]


async def test_create_and_update_with_members_store_all_or_nothing(
    app: FastAPI, admin: Admin
) -> None:
    groups = _groups(app)
    unknown = uuid.UUID(str(uuid7()))
    with pytest.raises(UnknownMembers):
        await groups.create(GroupCreate(display_name="Ghosts"), caller=None, members=[unknown])
    assert (await groups.list(GroupListQuery(), caller=None)).items == []
    group = await groups.create(
        GroupCreate(display_name="Admins"), caller=None, members=[admin.id, admin.id]
    )
    assert group["member_count"] == 1
    assert group["version"] == 1  # created with its members: one version
    with pytest.raises(UnknownMembers):
        await groups.update(
            group["id"],
            GroupUpdate(display_name="Renamed"),
            caller=None,
            if_match=None,
            members=[admin.id, unknown],
        )
    unchanged = await groups.get(group["id"], caller=None)
    assert unchanged == group
    renamed = await groups.update(
        group["id"], GroupUpdate(display_name="Renamed"), caller=None, if_match=None, members=[]
    )
    assert renamed["display_name"] == "Renamed"
    assert renamed["member_count"] == 0
    assert renamed["version"] == 2  # one change, one bump
    same = await groups.update(
        group["id"], GroupUpdate(), caller=None, if_match=frozenset({2}), members=[]
    )
    assert same["version"] == 2


async def test_add_and_remove_many(app: FastAPI, admin: Admin) -> None:
    groups = _groups(app)
    group = await groups.create(GroupCreate(display_name="Many"), caller=None)
    unknown = uuid.UUID(str(uuid7()))
    with pytest.raises(UnknownMembers):
        await groups.add_members(group["id"], [admin.id, unknown], caller=None)
    with pytest.raises(NotFound):
        await groups.add_members(uuid.UUID(str(uuid7())), [admin.id], caller=None)
    added = await groups.add_members(group["id"], [admin.id], caller=None)
    assert added["member_count"] == 1
    removed = await groups.remove_members(group["id"], [admin.id, unknown], caller=None)
    assert removed["member_count"] == 0
    assert removed["version"] == 3
    again = await groups.remove_members(group["id"], [admin.id], caller=None)
    assert again["version"] == 3
    assert await groups.user_groups(admin.id, caller=None) == []
    with pytest.raises(NotFound):
        await groups.user_groups(unknown, caller=None)
