"""SCIM Groups (RFC 7643 4.2) on the groups service: reads here (a filter is a condition
on the groups table), every change through `GroupService`, where the rules of groups live.
`displayName` is `display_name`, `externalId` is `external_id`, `members` are users
(`value` = user id)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from scim2_models.path import (
    AttrPath,
    Comparison,
    FilterNode,
    Present,
    ValuePath,
)
from sqlalchemy import ColumnElement, bindparam, exists, func, select, true

from users_api.db.database import Database, Record, Unit
from users_api.db.statements import compile_statement
from users_api.errors import UnknownMembers
from users_api.groups.models import Group, GroupMember
from users_api.groups.schemas import GroupCreate, GroupUpdate
from users_api.groups.service import GroupService
from users_api.scim import turns
from users_api.scim.bodies import lifted
from users_api.scim.discovery import GROUP_SCHEMA
from users_api.scim.errors import ScimError, invalid_filter, invalid_value, mutability
from users_api.scim.filters import ConditionFilter, MembershipFilter, Operand, compare, parse
from users_api.scim.patch import Shape, apply_patch
from users_api.scim.users import Page, read_one, read_page, with_memberships
from users_api.timestamps import rfc3339
from users_api.users.models import User

_CANONICAL = {
    name.lower(): name for name in ("id", "externalId", "displayName", "members", "meta", "schemas")
}
GROUP_SHAPE = Shape(
    canonical=lambda name: _CANONICAL.get(name.lower()),
    read_only=frozenset({"id", "meta", "schemas"}),
    core_schema=GROUP_SCHEMA,
)
_COLUMNS = (
    Group.id,
    Group.display_name,
    Group.external_id,
    Group.created_at,
    Group.updated_at,
    Group.version,
)
_FIELDS = ("id", "display_name", "external_id", "created_at", "updated_at", "version")
_BY_ID = compile_statement(select(*_COLUMNS).where(Group.id == bindparam("group_id")))
# Each member's id and username (SCIM's `display`), for a page of groups at once:
# `with_memberships`.
_MEMBERS = compile_statement(
    select(GroupMember.group_id, GroupMember.user_id, User.username)
    .join(User, User.id == GroupMember.user_id)
    .where(GroupMember.group_id == func.any(bindparam("ids")))
    .order_by(GroupMember.group_id, GroupMember.user_id)
)


def etag(version: int) -> str:
    return f'W/"{version}"'


def to_resource(row: dict[str, Any], base_url: str, *, members: bool = True) -> dict[str, Any]:
    resource: dict[str, Any] = {"schemas": [GROUP_SCHEMA], "id": str(row["id"])}
    if row["external_id"] is not None:
        resource["externalId"] = row["external_id"]
    resource["displayName"] = row["display_name"]
    if members:  # no `display`: what a client sends there is not stored
        resource["members"] = [
            {
                "value": str(user_id),
                "type": "User",
                "$ref": f"{base_url}/Users/{user_id}",
            }
            for user_id, _username in row.get("members", [])
        ]
    resource["meta"] = {
        "resourceType": "Group",
        "created": rfc3339(row["created_at"]),
        "lastModified": rfc3339(row["updated_at"]),
        "location": f"{base_url}/Groups/{row['id']}",
        "version": etag(row["version"]),
    }
    return resource


def _fields(resource: Any) -> tuple[GroupUpdate, list[uuid.UUID] | None]:
    """A Group body as the service's fields and member ids (None: none sent)."""
    if not isinstance(resource, dict):
        raise ScimError(400, "The body must be a JSON object.", "invalidSyntax")
    normalized: dict[str, Any] = {}
    for key, value in lifted(resource, GROUP_SCHEMA).items():
        name = _CANONICAL.get(key.lower())
        if name is None:
            if key.lower().startswith("urn:"):  # an extension schema the service keeps none of
                continue
            # As for a User: an attribute the schema does not name is refused, not dropped.
            raise invalid_value(f"{key} is not an attribute of {GROUP_SCHEMA}.")
        normalized[name] = value
    display_name = normalized.get("displayName")
    if not isinstance(display_name, str) or not display_name:
        raise invalid_value("displayName is required.")
    external_id = normalized.get("externalId")
    if external_id is not None and not isinstance(external_id, str):
        raise invalid_value("externalId must be a string.")
    try:
        update = GroupUpdate.model_validate(
            {"display_name": display_name, "external_id": external_id or None}
        )
    except ValidationError as exc:
        raise invalid_value(f"{exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}") from None
    members = normalized.get("members")
    if members is None:
        return update, None
    if not isinstance(members, list):
        raise invalid_value("members must be a list.")
    return update, [_member_id(member) for member in members]


def _member_id(member: Any) -> uuid.UUID:
    value = member.get("value") if isinstance(member, dict) else None
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise invalid_value(f"No user with this id: {value}.") from None


class GroupFilter(ConditionFilter):
    """A filter on SCIM Groups as a condition on the groups table."""

    def visit_present(self, node: Present) -> ColumnElement[bool]:
        path = node.attr_path
        if path.attr.lower() == "members":
            return exists().where(GroupMember.group_id == Group.id)
        operand = _operand(path)
        present: ColumnElement[bool] = operand.expression.is_not(None)
        return present

    def visit_comparison(self, node: Comparison) -> ColumnElement[bool]:
        path = node.attr_path
        if path.attr.lower() == "members":
            if (path.sub_attr or "value").lower() != "value":
                raise invalid_filter("Members are filtered by value.")
            return member_condition(Comparison(AttrPath("value"), node.op, node.value))
        return compare(_operand(path), node.op, node.value)

    def visit_value_path(self, node: ValuePath) -> ColumnElement[bool]:
        if node.attr_path.attr.lower() != "members":
            raise invalid_filter(f"{node.attr_path} is not a multi-valued attribute.")
        return member_condition(node.val_filter)


def member_condition(node: FilterNode, group: Any = Group.id) -> ColumnElement[bool]:
    """Some member of the group passes `node` (on `value`, the user id)."""
    return exists().where(GroupMember.group_id == group, _MemberFilter().visit(node))


class _MemberFilter(MembershipFilter):
    def visit_comparison(self, node: Comparison) -> ColumnElement[bool]:
        if node.attr_path.attr.lower() != "value":
            raise invalid_filter("A member is filtered by its value.")
        return compare(Operand(GroupMember.user_id, "uuid"), node.op, node.value)


def _operand(path: AttrPath) -> Operand:
    attr, sub = path.attr.lower(), (path.sub_attr or "").lower() or None
    operands = {
        ("id", None): Operand(Group.id, "uuid"),
        ("displayname", None): Operand(Group.display_name, "text"),
        ("externalid", None): Operand(Group.external_id, "exact"),
        ("meta", "created"): Operand(Group.created_at, "time"),
        ("meta", "lastmodified"): Operand(Group.updated_at, "time"),
    }
    operand = operands.get((attr, sub))
    if operand is None or (path.uri is not None and path.uri.lower() != GROUP_SCHEMA.lower()):
        raise invalid_filter(f"{path} is not an attribute groups can be filtered on.")
    return operand


def group_order(path: AttrPath) -> Any:
    operand = _operand(path)
    return func.lower(operand.expression) if operand.kind == "text" else operand.expression


def group_condition(text: str | None) -> ColumnElement[bool]:
    return GroupFilter().visit(parse(text)) if text else true()


async def _without_members(unit: Unit, records: list[Record]) -> list[dict[str, Any]]:
    return [dict(zip(_FIELDS, record, strict=True)) for record in records]


@dataclass(frozen=True, slots=True)
class ScimGroups:
    db: Database
    groups: GroupService
    # this worker's PATCHes of each resource, in turn
    turns: turns.Turns = field(default_factory=turns.Turns)

    async def _with_members(self, unit: Unit, records: list[Record]) -> list[dict[str, Any]]:
        rows = [dict(zip(_FIELDS, record, strict=True)) for record in records]
        return await with_memberships(unit, rows, _MEMBERS, "members")

    async def get(self, group_id: uuid.UUID) -> dict[str, Any]:
        async def read(unit: Unit) -> list[dict[str, Any]]:
            record = await unit.one(_BY_ID, group_id=group_id)
            return await self._with_members(unit, [record] if record is not None else [])

        return await read_one(self.db, read)  # the group and its members

    async def list(
        self,
        condition: ColumnElement[bool],
        order: list[Any],
        *,
        start: int,
        count: int,
        members: bool,
    ) -> Page:
        return await read_page(
            self.db,
            select(func.count()).select_from(Group).where(condition),
            select(*_COLUMNS).where(condition).order_by(*order, Group.id),
            start=start,
            count=count,
            rows=self._with_members if members else _without_members,
        )

    async def create(self, resource: Any) -> dict[str, Any]:
        update, members = _fields(resource)
        data = GroupCreate.model_validate(update.changes())
        try:
            created = await self.groups.create(data, caller=None, members=members or ())
        except UnknownMembers as exc:
            raise invalid_value(exc.detail) from None
        return await self.get(created["id"])

    async def replace(
        self, group_id: uuid.UUID, resource: Any, if_match: frozenset[int] | None
    ) -> dict[str, Any]:
        if isinstance(resource, dict):
            sent_id = next((v for k, v in resource.items() if k.lower() == "id"), None)
            if sent_id is not None and str(sent_id) != str(group_id):
                raise mutability("id is read-only.")
        update, members = _fields(resource)
        try:
            await self.groups.update(
                group_id, update, caller=None, if_match=if_match, members=members or []
            )
        except UnknownMembers as exc:
            raise invalid_value(exc.detail) from None
        return await self.get(group_id)

    async def patch(
        self, group_id: uuid.UUID, body: Any, if_match: frozenset[int] | None
    ) -> dict[str, Any]:
        """The operations on the group as SCIM shows it, stored as a replacement under its
        version (`turns.patched`: a concurrent change, tried again)."""

        async def store() -> dict[str, Any]:
            current = await self.get(group_id)
            if if_match is not None and current["version"] not in if_match:
                raise ScimError(412, "The resource has changed since the given version (If-Match).")
            document = to_resource(current, "")
            patched = apply_patch(document, body, GROUP_SHAPE)
            update, members = _fields(patched)
            try:
                await self.groups.update(
                    group_id,
                    update,
                    caller=None,
                    if_match=frozenset({current["version"]}),
                    members=members or [],
                )
            except UnknownMembers as exc:
                raise invalid_value(exc.detail) from None
            return await self.get(group_id)

        return await self.turns.patched(group_id, if_match, store)

    async def delete(self, group_id: uuid.UUID, if_match: frozenset[int] | None) -> None:
        await self.groups.delete(group_id, caller=None, if_match=if_match)
