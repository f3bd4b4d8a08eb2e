"""Every statement about groups and their members, written with SQLAlchemy and compiled
once. No rules: who may ask is the service's (`users.queries.CALLER_IS_ADMIN` and
`admin_or_self`, the same fragments the users statements use)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Integer,
    Select,
    all_,
    any_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert

from users_api.db.statements import Statement, compile_statement
from users_api.groups.models import Group, GroupMember
from users_api.groups.schemas import GroupOut
from users_api.users.models import User
from users_api.users.queries import admin_or_self, caller_honoured, public_columns

GroupRow = dict[str, Any]
# What a response shows of a group, in the order it shows it: the output schema decides.
GROUP_FIELDS = tuple(GroupOut.model_fields)

_MEMBER_COUNT = (
    select(func.count())
    .where(GroupMember.group_id == Group.id)
    .correlate_except(GroupMember)
    .scalar_subquery()
    .label("member_count")
)
# What every statement that returns groups selects (`as_group` reads it by position): for
# other fronts' statements too (SCIM's filters), so a group reads the same everywhere.
GROUP_COLUMNS = [
    *(getattr(Group, name) for name in GROUP_FIELDS if name != "member_count"),
    _MEMBER_COUNT,
]


def as_group(record: Any) -> GroupRow:
    """A record that starts with `GROUP_COLUMNS`, by position."""
    return dict(zip(GROUP_FIELDS, record, strict=False))


def _ids(name: str) -> Any:
    return bindparam(name, type_=ARRAY(Group.id.type))


GROUP_BY_ID = compile_statement(select(*GROUP_COLUMNS).where(Group.id == bindparam("group_id")))

# The group, row-locked: a change of it or of its members is checked (If-Match) and
# written under this lock, so two changes of one group are one after the other.
GROUP_FOR_UPDATE = compile_statement(
    select(Group.id, Group.version)
    .where(Group.id == bindparam("group_id"))
    .with_for_update(of=Group)
)

INSERT_GROUP = compile_statement(
    insert(Group)
    .values(
        id=bindparam("group_id", type_=Group.id.type),
        display_name=bindparam("display_name", type_=Group.display_name.type),
        external_id=bindparam("external_id", type_=Group.external_id.type),
        version=literal_column("1", Integer),
    )
    .returning(Group.id)
)

DELETE_GROUP = compile_statement(delete(Group).where(Group.id == bindparam("group_id")))


def set_fields(fields: frozenset[str]) -> Statement:
    """SET the fields of a locked group (or none: its members changed), bump `version`
    and `updated_at`: the one version bump of a group."""
    values: dict[str, Any] = {name: bindparam(f"new_{name}") for name in sorted(fields)}
    values |= {"version": Group.version + literal_column("1", Integer), "updated_at": func.now()}
    return compile_statement(update(Group).where(Group.id == bindparam("group_id")).values(values))


_SET = {
    fields: set_fields(fields)
    for fields in (
        frozenset(),
        frozenset({"display_name"}),
        frozenset({"external_id"}),
        frozenset({"display_name", "external_id"}),
    )
}


def set_group(fields: frozenset[str]) -> Statement:
    return _SET[fields]


# --- members -------------------------------------------------------------------------

# Which of these ids are users, each row locked against a concurrent delete (KEY SHARE,
# what the foreign key's own check takes) until the membership is written.
LOCK_USERS = compile_statement(
    select(User.id)
    .where(User.id == any_(_ids("user_ids")))
    .with_for_update(read=True, key_share=True)
)

ADD_MEMBERS = compile_statement(
    pg_insert(GroupMember)
    .from_select(
        ["group_id", "user_id"],
        select(
            bindparam("group_id", type_=GroupMember.group_id.type),
            func.unnest(_ids("user_ids")),
        ),
    )
    .on_conflict_do_nothing()
    .returning(GroupMember.user_id)
)

REMOVE_MEMBERS = compile_statement(
    delete(GroupMember)
    .where(
        GroupMember.group_id == bindparam("group_id"), GroupMember.user_id == any_(_ids("user_ids"))
    )
    .returning(GroupMember.user_id)
)

# The groups a user is a member of, row-locked in id order (two deletes of users who
# share groups lock them alike), for the user's delete: each membership then ends as a
# removal does, under its group's lock (`GroupService.leave_all`).
LOCK_GROUPS_OF_USER = compile_statement(
    select(Group.id)
    .where(
        Group.id.in_(
            select(GroupMember.group_id).where(GroupMember.user_id == bindparam("user_id"))
        )
    )
    .order_by(Group.id)
    .with_for_update(of=Group)
)

# Every member not in `user_ids` leaves (what a SCIM PUT or a replace of `members` does).
REMOVE_OTHER_MEMBERS = compile_statement(
    delete(GroupMember)
    .where(
        GroupMember.group_id == bindparam("group_id"),
        GroupMember.user_id != all_(_ids("user_ids")),
    )
    .returning(GroupMember.user_id)
)

MEMBER_IDS = compile_statement(
    select(GroupMember.group_id, GroupMember.user_id)
    .where(GroupMember.group_id == any_(_ids("group_ids")))
    .order_by(GroupMember.group_id, GroupMember.user_id)
)


def _members_page(*, after: bool) -> Statement:
    statement: Select[Any] = (
        select(*public_columns(User))
        .join(GroupMember, GroupMember.user_id == User.id)
        .where(GroupMember.group_id == bindparam("group_id"))
    )
    if after:
        statement = statement.where(User.id > bindparam("after_id", type_=User.id.type))
    return compile_statement(statement.order_by(User.id).limit(bindparam("limit")))


MEMBERS_PAGE = _members_page(after=False)
MEMBERS_PAGE_AFTER = _members_page(after=True)

# --- lists ---------------------------------------------------------------------------


def _groups_page(*, search: bool, after: bool) -> Statement:
    statement: Select[Any] = select(*GROUP_COLUMNS)
    if search:
        statement = statement.where(Group.display_name.ilike(bindparam("q"), escape="\\"))
    if after:
        statement = statement.where(Group.id > bindparam("after_id", type_=Group.id.type))
    return compile_statement(statement.order_by(Group.id).limit(bindparam("limit")))


GROUPS_PAGE = {
    (search, after): _groups_page(search=search, after=after)
    for search in (False, True)
    for after in (False, True)
}

USER_GROUPS = compile_statement(
    select(*GROUP_COLUMNS)
    .join(GroupMember, GroupMember.group_id == Group.id)
    .where(GroupMember.user_id == bindparam("user_id"))
    .order_by(Group.id)
)

# The user exists and the caller may see it (an honoured admin, or the user themself).
USER_VISIBLE = compile_statement(
    select(User.id).where(
        User.id == bindparam("user_id"),
        exists().where(caller_honoured(), admin_or_self(bindparam("user_id"))),
    )
)

USER_EXISTS = compile_statement(select(User.id).where(User.id == bindparam("user_id")))
