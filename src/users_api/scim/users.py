"""SCIM Users: reads here (a filter is a condition on the users table), every change
through the users service, the one place the rules of users live."""

from __future__ import annotations

import json
import uuid
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Select, bindparam, func, select
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement

from users_api.db.database import Database, Record, Unit
from users_api.db.statements import _DIALECT, Statement, compile_statement
from users_api.groups.models import Group, GroupMember
from users_api.scim import mapping, turns
from users_api.scim.errors import ScimError, not_found
from users_api.scim.patch import apply_patch
from users_api.users.models import User
from users_api.users.queries import PUBLIC_FIELDS, public_columns
from users_api.users.service import UserService

COLUMNS = (*public_columns(User), User.external_id, User.scim)
FIELDS = (*PUBLIC_FIELDS, "external_id", "scim")
_BY_ID = compile_statement(select(*COLUMNS).where(User.id == bindparam("user_id")))
# The groups of a page of users at once (SCIM's read-only `groups`): `with_memberships`.
_GROUPS = compile_statement(
    select(GroupMember.user_id, Group.id, Group.display_name)
    .join(Group, Group.id == GroupMember.group_id)
    .where(GroupMember.user_id == func.any(bindparam("ids")))
    .order_by(GroupMember.user_id, Group.id)
)


async def with_memberships(
    unit: Unit, rows: list[dict[str, Any]], statement: Statement, key: str
) -> list[dict[str, Any]]:
    """`rows` with each one's memberships under `key`, as (id, name) pairs: a user's
    groups, a group's members, read for a whole page in one statement. `statement` takes
    the rows' `ids` and gives records of (row id, the other's id, the other's name)."""
    if not rows:
        return rows
    by_id: dict[uuid.UUID, list[tuple[uuid.UUID, str]]] = {row["id"]: [] for row in rows}
    for record in await unit.all(statement, ids=list(by_id)):
        by_id[record[0]].append((record[1], record[2]))
    for row in rows:
        row[key] = by_id[row["id"]]
    return rows


async def _with_groups(unit: Unit, records: list[Record]) -> list[dict[str, Any]]:
    rows = await with_memberships(unit, [as_row(record) for record in records], _GROUPS, "groups")
    for row in rows:
        row["tag"] = tag(row["version"], row["groups"])
    return rows


def tag(version: int, groups: list[tuple[uuid.UUID, str]]) -> int:
    """The SCIM User's version (`meta.version`, `ETag`): the user's, and its read-only
    `groups` with it, which change apart from the user (a join, a leave, a group's new
    name). Without groups it is the user's version; with them the groups' checksum is
    added below it, so a cached User with stale groups is never answered 304."""
    if not groups:
        return version
    listed = "\n".join(f"{group_id} {name}" for group_id, name in sorted(groups))
    return (version << 32) | zlib.crc32(listed.encode())


def _guard(current: dict[str, Any], if_match: frozenset[int] | None) -> frozenset[int] | None:
    """412 unless `If-Match` names the User as it is now; then the user's own version,
    for the service to hold the change to (None: no If-Match, no condition)."""
    if if_match is None:
        return None
    if current["tag"] not in if_match:
        raise ScimError(412, "The resource has changed since the given version (If-Match).")
    return frozenset({current["version"]})


def as_row(record: Record) -> dict[str, Any]:
    row = dict(zip(FIELDS, record, strict=True))
    if isinstance(row["scim"], str):  # asyncpg reads jsonb as text
        row["scim"] = json.loads(row["scim"])
    return row


def compiled(statement: ClauseElement) -> tuple[Statement, dict[str, Any]]:
    """A statement built for one request (a filter), compiled with its values."""
    done = statement.compile(dialect=_DIALECT)
    assert isinstance(done, SQLCompiler)  # a statement, so SQL with positions
    return Statement(sql=str(done), names=tuple(done.positiontup or ())), dict(done.params)


@dataclass(frozen=True, slots=True)
class Page:
    total: int
    rows: list[dict[str, Any]]


# What turns records into resources' rows, reading what comes with them in the same unit.
Rows = Callable[[Unit, list[Record]], Awaitable[list[dict[str, Any]]]]


async def read_one(
    db: Database, read: Callable[[Unit], Awaitable[list[dict[str, Any]]]]
) -> dict[str, Any]:
    """The one resource `read` finds, read with what comes with it (a user's groups, a
    group's members) in one snapshot; 404 when there is none. Users and Groups alike."""
    rows = await db.run(read)
    if not rows:
        raise not_found()
    return rows[0]


async def read_page(
    db: Database,
    counted: ClauseElement,
    page: Select[*tuple[Any, ...]],
    *,
    start: int,
    count: int,
    rows: Rows,
) -> Page:
    """`count` rows of `page` (ordered) from the `start`-th (1-based), and how many there
    are (`counted`): two statements on one connection, one snapshot, for Users and Groups
    alike. Maybe a moment old: access was decided on the primary (the token, `scim.routes`)."""
    total_statement, total_values = compiled(counted)
    page_statement, page_values = compiled(page.offset(start - 1).limit(count))

    async def read(unit: Unit) -> tuple[int, list[dict[str, Any]]]:
        total: int = await unit.value(total_statement, **total_values)
        if count == 0 or total < start:
            return total, []
        return total, await rows(unit, await unit.all(page_statement, **page_values))

    total, found = await db.read(read, transaction=True)
    return Page(total=total, rows=found)


@dataclass(frozen=True, slots=True)
class ScimUsers:
    db: Database
    users: UserService
    # this worker's PATCHes of each resource, in turn
    turns: turns.Turns = field(default_factory=turns.Turns)

    async def get(self, user_id: uuid.UUID) -> dict[str, Any]:
        async def read(unit: Unit) -> list[dict[str, Any]]:
            record = await unit.one(_BY_ID, user_id=user_id)
            return await _with_groups(unit, [record] if record is not None else [])

        return await read_one(self.db, read)  # the user and their groups

    async def list(
        self,
        condition: ColumnElement[bool],
        order: list[Any],
        *,
        start: int,
        count: int,
    ) -> Page:
        """`count` users from the `start`-th (1-based) that meet `condition`, and how many
        do: two statements on one connection."""
        return await read_page(
            self.db,
            select(func.count()).select_from(User).where(condition),
            select(*COLUMNS).where(condition).order_by(*order, User.id),
            start=start,
            count=count,
            rows=_with_groups,
        )

    async def create(self, resource: Any) -> dict[str, Any]:
        data = mapping.to_new_user(resource)
        created = await self.users.create(data, caller=None, system=True)
        return await self.get(created["id"])

    async def replace(
        self, user_id: uuid.UUID, resource: Any, if_match: frozenset[int] | None
    ) -> dict[str, Any]:
        current = await self.get(user_id)
        guard = _guard(current, if_match)
        patch = mapping.to_replacement(resource, current)
        await self.users.update(user_id, patch, caller=None, if_match=guard, address="scim")
        return await self.get(user_id)

    async def patch(
        self, user_id: uuid.UUID, body: Any, if_match: frozenset[int] | None
    ) -> dict[str, Any]:
        """Apply the operations to the user as SCIM shows it, then replace it with the
        result under its version (`turns.patched`: a concurrent change, tried again)."""

        async def store() -> dict[str, Any]:
            current = await self.get(user_id)
            _guard(current, if_match)
            document = mapping.to_resource(current, "")
            patched = mapping.formatted_follows_parts(
                document, apply_patch(document, body, mapping.USER_SHAPE)
            )
            change = mapping.to_replacement(patched, current)
            await self.users.update(
                user_id,
                change,
                caller=None,
                if_match=frozenset({current["version"]}),
                address="scim",
            )
            return await self.get(user_id)

        return await self.turns.patched(user_id, if_match, store)

    async def delete(self, user_id: uuid.UUID, if_match: frozenset[int] | None) -> None:
        guard = None if if_match is None else _guard(await self.get(user_id), if_match)
        await self.users.delete(user_id, caller=None, if_match=guard)
