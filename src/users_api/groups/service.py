"""The rules for groups and their members. No HTTP: the REST routes and the SCIM front
call these same methods.

Every method takes `caller`: the claims of a user's token, who must be an honoured
admin (401, then 403, as for the users list), or None for the system — a front that has
authorized the request itself (SCIM, by its provisioning token) or the CLI. Every
method is one unit of work (`Database.run`), committed before it returns.

A group's `version` is its ETag: every change bumps it, a change of its members too.
Changes of one group (its fields or its members) run under its row lock, so If-Match is
checked and the change written with nothing in between.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from uuid_utils.compat import uuid7

from users_api.db.database import Database, Record, Unit, Work
from users_api.errors import NotFound, PreconditionFailed, UnknownMembers
from users_api.events.writer import SYSTEM, Actor, EventWriter, user_actor
from users_api.groups import queries as gq
from users_api.groups.queries import GroupRow, as_group
from users_api.groups.schemas import GroupCreate, GroupListQuery, GroupUpdate, MemberListQuery
from users_api.security.tokens import AccessClaims
from users_api.users import cursor, policy
from users_api.users import queries as uq
from users_api.users.queries import as_row, caller_values
from users_api.users.schemas import UserSort
from users_api.users.service import RowPage

NO_GROUP = "No group with this id."
# Spelled here: in the class, `list` is the method.
MemberIds = dict[uuid.UUID, list[uuid.UUID]]
GroupRows = list[GroupRow]
NO_USER = "No user with this id."
T = TypeVar("T")


# A keyset page (groups, or users for a group's members) and the next cursor: the
# users' kind of page, so one `page_response` answers every list.
Page = RowPage


@dataclass(frozen=True, slots=True)
class GroupService:
    db: Database
    events: EventWriter

    # --- reading -------------------------------------------------------------------

    async def get(self, group_id: uuid.UUID, *, caller: AccessClaims | None) -> GroupRow:
        """The group with its `member_count`; NotFound when there is none."""

        async def read(unit: Unit) -> GroupRow:
            await _require_admin(unit, caller)
            return await _group(unit, group_id)

        return await self.db.run(read, transaction=False)

    async def list(self, query: GroupListQuery, *, caller: AccessClaims | None) -> Page:
        """Groups by id (creation order), `q` a case-insensitive substring of the name."""
        values: dict[str, Any] = {"limit": query.limit + 1}
        if query.q is not None:
            values["q"] = f"%{uq.escape_like(query.q)}%"
        statement = gq.GROUPS_PAGE[(query.q is not None, query.cursor is not None)]

        async def read(unit: Unit) -> list[Record]:
            if query.cursor is not None:  # after 401 and 403 (`_read_as_admin`)
                values["after_id"] = _after(query.cursor, cursor.GROUPS)
            return await unit.all(statement, **values)

        records = await self._read_as_admin(read, caller=caller)
        return _page([as_group(record) for record in records], query.limit, cursor.GROUPS)

    async def members(
        self, group_id: uuid.UUID, query: MemberListQuery, *, caller: AccessClaims | None
    ) -> Page:
        """A keyset page of the group's members, as the users API shows users, by id."""
        values: dict[str, Any] = {"group_id": group_id, "limit": query.limit + 1}
        statement = gq.MEMBERS_PAGE if query.cursor is None else gq.MEMBERS_PAGE_AFTER
        scope = cursor.members_of(group_id)  # another group's cursor is refused

        async def read(unit: Unit) -> list[Record]:
            if query.cursor is not None:
                values["after_id"] = _after(query.cursor, scope)
            await _group(unit, group_id)
            return await unit.all(statement, **values)

        # one snapshot: the group and its members
        records = await self._read_as_admin(read, caller=caller, transaction=True)
        return _page([as_row(record) for record in records], query.limit, scope)

    async def member_ids(
        self, group_ids: Sequence[uuid.UUID], *, caller: AccessClaims | None
    ) -> MemberIds:
        """Every member id of each group, in one statement (SCIM's `members` of a page of
        groups); a group with no members, or no such group, maps to an empty list."""

        async def read(unit: Unit) -> list[Record]:
            return await unit.all(gq.MEMBER_IDS, group_ids=list(group_ids))

        found: dict[uuid.UUID, list[uuid.UUID]] = {group_id: [] for group_id in group_ids}
        for record in await self._read_as_admin(read, caller=caller):
            found[record["group_id"]].append(record["user_id"])
        return found

    async def user_groups(self, user_id: uuid.UUID, *, caller: AccessClaims | None) -> GroupRows:
        """Every group of a user, by id: for an admin, or the user themself (anyone
        else gets the 404 of a missing user, so ids do not leak)."""

        async def read(unit: Unit) -> list[Record]:
            if caller is None:
                found = await unit.value(gq.USER_EXISTS, user_id=user_id)
            else:
                values = {**caller_values(caller), "user_id": user_id}
                found = await unit.value(gq.USER_VISIBLE, **values)
                if found is None:
                    raise policy.missing_user(await unit.value(uq.CALLER_IS_ADMIN, **values))
            if found is None:
                raise NotFound(NO_USER)
            return await unit.all(gq.USER_GROUPS, user_id=user_id)

        return [as_group(record) for record in await self.db.run(read)]

    async def _read_as_admin(
        self, work: Work[T], *, caller: AccessClaims | None, transaction: bool = False
    ) -> T:
        """`work`, a read that may be a moment old, on a replica when there are any
        (`Database.read`); who may read is decided on the primary first. Without
        replicas, the check and the read share one unit, as before."""
        if self.db.replicated:
            await self.db.run(partial(_require_admin, caller=caller), transaction=False)
            return await self.db.read(work, transaction=transaction)

        async def checked(unit: Unit) -> T:
            await _require_admin(unit, caller)
            return await work(unit)

        return await self.db.run(checked, transaction=transaction)

    # --- changing ------------------------------------------------------------------

    async def create(
        self,
        data: GroupCreate,
        *,
        caller: AccessClaims | None,
        members: Collection[uuid.UUID] = (),
    ) -> GroupRow:
        """A new group (UUIDv7 id, version 1), with `members` when given (SCIM's POST):
        UnknownMembers, and nothing stored, when one of them is no user. A taken name is
        a 409 on `display_name`, settled by the unique index when requests race."""
        group_id = uuid7()

        async def insert(unit: Unit) -> GroupRow:
            await _require_admin(unit, caller)
            await unit.execute(
                gq.INSERT_GROUP,
                group_id=group_id,
                display_name=data.display_name,
                external_id=data.external_id,
            )
            await self._record(unit, "group.created", group_id, caller)
            if members:
                added = await _add(unit, group_id, _all_users(members, await _users(unit, members)))
                await self._record_members(unit, group_id, caller, added=added)
            return await _group(unit, group_id)

        return await self.db.run(insert)

    async def update(
        self,
        group_id: uuid.UUID,
        patch: GroupUpdate,
        *,
        caller: AccessClaims | None,
        if_match: frozenset[int] | None,
        members: Collection[uuid.UUID] | None = None,
    ) -> GroupRow:
        """A JSON merge patch of the fields, and (SCIM's PUT) the whole member list when
        `members` is given, in one transaction. PreconditionFailed when `if_match` (the
        versions the client knows) does not hold the current one; a change that changes
        nothing keeps the version."""
        changes = patch.changes()

        async def change(unit: Unit) -> GroupRow:
            await _require_admin(unit, caller)
            found = None if members is None else await _users(unit, members)
            current = await _locked(unit, group_id, if_match)
            changed = {name for name, value in changes.items() if current[name] != value}
            if members is not None and found is not None:
                added, removed = await _replace(unit, group_id, _all_users(members, found))
                await self._record_members(unit, group_id, caller, added=added, removed=removed)
                changed |= {"members"} if added or removed else set()
            if changed:
                fields = frozenset(changed - {"members"})
                new = {f"new_{name}": changes[name] for name in fields}
                await unit.execute(gq.set_group(fields), group_id=group_id, **new)
                if fields:
                    data = {"fields": sorted(fields)}
                    await self._record(unit, "group.updated", group_id, caller, data)
            return await _group(unit, group_id)

        return await self.db.run(change)

    async def delete(
        self, group_id: uuid.UUID, *, caller: AccessClaims | None, if_match: frozenset[int] | None
    ) -> None:
        """Delete the group and its memberships (the users stay)."""

        async def remove(unit: Unit) -> None:
            await _require_admin(unit, caller)
            await _locked(unit, group_id, if_match)
            await unit.execute(gq.DELETE_GROUP, group_id=group_id)
            await self._record(unit, "group.deleted", group_id, caller)

        await self.db.run(remove)

    async def add_member(
        self,
        group_id: uuid.UUID,
        user_id: uuid.UUID,
        *,
        caller: AccessClaims | None,
        if_match: frozenset[int] | None = None,
    ) -> GroupRow:
        """Idempotent: a member already there changes nothing (nor the version).
        NotFound for no such group or no such user."""
        return await self.add_members(group_id, [user_id], caller=caller, if_match=if_match)

    async def add_members(
        self,
        group_id: uuid.UUID,
        user_ids: Collection[uuid.UUID],
        *,
        caller: AccessClaims | None,
        if_match: frozenset[int] | None = None,
    ) -> GroupRow:
        """Add these users (those already members stay as they are): NotFound when one is
        no user (`UnknownMembers`, a NotFound, names them) and nothing is stored."""

        async def change(unit: Unit) -> GroupRow:
            await _require_admin(unit, caller)
            users = await _lock_members(unit, group_id, user_ids, if_match)
            added = await _add(unit, group_id, users)
            await self._members_changed(unit, group_id, caller, added=added)
            return await _group(unit, group_id)

        return await self.db.run(change)

    async def remove_member(
        self,
        group_id: uuid.UUID,
        user_id: uuid.UUID,
        *,
        caller: AccessClaims | None,
        if_match: frozenset[int] | None = None,
    ) -> GroupRow:
        """Idempotent: a user who is no member changes nothing. NotFound for no such group
        or no such user."""
        return await self._remove_members(
            group_id, [user_id], caller=caller, if_match=if_match, must_exist=user_id
        )

    async def remove_members(
        self,
        group_id: uuid.UUID,
        user_ids: Collection[uuid.UUID],
        *,
        caller: AccessClaims | None,
        if_match: frozenset[int] | None = None,
    ) -> GroupRow:
        """Remove these users from the group; ids that are no member (or no user) are
        ignored, as a SCIM PATCH `remove` of a value that is not there."""
        return await self._remove_members(
            group_id, list(user_ids), caller=caller, if_match=if_match, must_exist=None
        )

    async def _remove_members(
        self,
        group_id: uuid.UUID,
        user_ids: Sequence[uuid.UUID],
        *,
        caller: AccessClaims | None,
        if_match: frozenset[int] | None,
        must_exist: uuid.UUID | None,
    ) -> GroupRow:
        """The one removal (REST's single member, SCIM's list): NotFound when nothing was
        removed and `must_exist` is no user."""

        async def change(unit: Unit) -> GroupRow:
            await _require_admin(unit, caller)
            await _locked(unit, group_id, if_match)
            removed = await _remove(unit, group_id, list(user_ids))
            await self._members_changed(unit, group_id, caller, removed=removed)
            if (
                not removed
                and must_exist is not None
                and await unit.value(gq.USER_EXISTS, user_id=must_exist) is None
            ):
                raise NotFound(NO_USER)
            return await _group(unit, group_id)

        return await self.db.run(change)

    async def replace_members(
        self,
        group_id: uuid.UUID,
        user_ids: Collection[uuid.UUID],
        *,
        caller: AccessClaims | None,
        if_match: frozenset[int] | None = None,
    ) -> GroupRow:
        """Make the members exactly `user_ids` (SCIM's PUT and PATCH replace). Every id
        must be a user: otherwise `UnknownMembers` and nothing is stored."""

        async def change(unit: Unit) -> GroupRow:
            await _require_admin(unit, caller)
            users = await _lock_members(unit, group_id, user_ids, if_match)
            added, removed = await _replace(unit, group_id, users)
            await self._members_changed(unit, group_id, caller, added=added, removed=removed)
            return await _group(unit, group_id)

        return await self.db.run(change)

    async def leave_all(self, unit: Unit, user_id: uuid.UUID, caller: AccessClaims | None) -> None:
        """Every membership of a user being deleted ends, in the delete's unit: each as a
        removal through this service ends (a new version of the group, its
        `group.member_removed`), so a delete leaves no membership unrecorded. For
        `UserService.delete`, which has authorized the caller and row-locked the user:
        users before groups, the order `_users` takes them in."""
        for record in await unit.all(gq.LOCK_GROUPS_OF_USER, user_id=user_id):
            removed = await _remove(unit, record["id"], [user_id])
            await self._members_changed(unit, record["id"], caller, removed=removed)

    async def _members_changed(
        self,
        unit: Unit,
        group_id: uuid.UUID,
        caller: AccessClaims | None,
        *,
        added: Sequence[uuid.UUID] = (),
        removed: Sequence[uuid.UUID] = (),
    ) -> None:
        """After a change of members alone: a new version (the group's ETag covers its
        members) and the events, when someone really joined or left; else nothing."""
        if added or removed:
            await unit.execute(gq.set_group(frozenset()), group_id=group_id)
            await self._record_members(unit, group_id, caller, added=added, removed=removed)

    # --- events --------------------------------------------------------------------

    async def _record(
        self,
        unit: Unit,
        type: str,
        group_id: uuid.UUID,
        caller: AccessClaims | None,
        data: dict[str, Any] | None = None,
    ) -> None:
        """One `group.*` event in the change's transaction; the actor is the caller, or
        the system (a front's `acting_as`, e.g. SCIM's token, overrides either)."""
        await self.events.write(
            unit, type, actor=_actor(caller), subject_type="group", subject_id=group_id, data=data
        )

    async def _record_members(
        self,
        unit: Unit,
        group_id: uuid.UUID,
        caller: AccessClaims | None,
        *,
        added: Sequence[uuid.UUID] = (),
        removed: Sequence[uuid.UUID] = (),
    ) -> None:
        """One event per member who really joined or left (none for what changed nothing)."""
        for user_id in added:
            data = {"user_id": str(user_id)}
            await self._record(unit, "group.member_added", group_id, caller, data)
        for user_id in removed:
            data = {"user_id": str(user_id)}
            await self._record(unit, "group.member_removed", group_id, caller, data)


# --- the steps the methods share -------------------------------------------------------


async def _require_admin(unit: Unit, caller: AccessClaims | None) -> None:
    """Groups are for admins: 401 for a token no longer honoured, 403 for a non-admin.
    None is the system, which a front has authorized already."""
    if caller is not None:
        is_admin = await unit.value(uq.CALLER_IS_ADMIN, **caller_values(caller))
        policy.require_admin(is_admin, doing="manage groups")


async def _group(unit: Unit, group_id: uuid.UUID) -> GroupRow:
    record = await unit.one(gq.GROUP_BY_ID, group_id=group_id)
    if record is None:
        raise NotFound(NO_GROUP)
    return as_group(record)


async def _locked(unit: Unit, group_id: uuid.UUID, if_match: frozenset[int] | None) -> GroupRow:
    """Row-lock the group, then check If-Match: the check and the change are atomic."""
    record = await unit.one(gq.GROUP_FOR_UPDATE, group_id=group_id)
    if record is None:
        raise NotFound(NO_GROUP)
    if if_match is not None and record["version"] not in if_match:
        raise PreconditionFailed
    return await _group(unit, group_id)


async def _users(unit: Unit, user_ids: Collection[uuid.UUID]) -> list[uuid.UUID]:
    """Which of `user_ids` are users, each locked against a concurrent delete until the
    transaction ends (FOR KEY SHARE, as the foreign key's own check). Taken before the
    group's row lock: a user's delete locks the user, then the user's groups (to bump
    their versions), so this order is the same and two cannot wait for each other."""
    if not user_ids:
        return []
    records = await unit.all(gq.LOCK_USERS, user_ids=list(dict.fromkeys(user_ids)))
    return [record["id"] for record in records]


async def _lock_members(
    unit: Unit,
    group_id: uuid.UUID,
    user_ids: Collection[uuid.UUID],
    if_match: frozenset[int] | None,
) -> list[uuid.UUID]:
    """The users to be members, locked (`_users`), then the group, row-locked with If-Match
    checked (`_locked`), in that order; UnknownMembers when one is no user (after the
    NotFound of a missing group)."""
    found = await _users(unit, user_ids)
    await _locked(unit, group_id, if_match)
    return _all_users(user_ids, found)


def _all_users(wanted: Collection[uuid.UUID], found: list[uuid.UUID]) -> list[uuid.UUID]:
    """`found`, when it is every one of `wanted`; else UnknownMembers (nothing stored)."""
    known = set(found)
    missing = [user_id for user_id in dict.fromkeys(wanted) if user_id not in known]
    if missing:
        raise UnknownMembers(missing)
    return found


def _actor(caller: AccessClaims | None) -> Actor:
    return SYSTEM if caller is None else user_actor(caller.user_id)


async def _add(unit: Unit, group_id: uuid.UUID, user_ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """Insert the memberships not there yet; the users who joined."""
    if not user_ids:
        return []
    records = await unit.all(gq.ADD_MEMBERS, group_id=group_id, user_ids=user_ids)
    return [record["user_id"] for record in records]


async def _remove(unit: Unit, group_id: uuid.UUID, user_ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """Delete these memberships; the users who left."""
    records = await unit.all(gq.REMOVE_MEMBERS, group_id=group_id, user_ids=user_ids)
    return [record["user_id"] for record in records]


async def _replace(
    unit: Unit, group_id: uuid.UUID, user_ids: list[uuid.UUID]
) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    """The members become exactly `user_ids` (users, locked by `_users`); the users who
    joined, and those who left."""
    records = await unit.all(gq.REMOVE_OTHER_MEMBERS, group_id=group_id, user_ids=user_ids)
    added = await _add(unit, group_id, user_ids)
    return added, [record["user_id"] for record in records]


def _after(text: str, scope: str) -> uuid.UUID:
    """The id a cursor of the list `scope` ends at (the users' cursors, sorted by id)."""
    return cursor.decode(text, UserSort.ID, scope=scope).id


def _page(rows: list[dict[str, Any]], limit: int, scope: str) -> Page:
    items = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last = items[-1]["id"]
        position = cursor.Position(scope=scope, sort=UserSort.ID, key=last, id=last)
        next_cursor = cursor.encode(position)
    return Page(items=items, next_cursor=next_cursor)
