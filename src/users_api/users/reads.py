"""SQL for the hot reads, each one statement that also checks the caller's token version.

A request that reads users must first know that its caller still exists, is active and
holds a token of the current `auth_version` (revocation). Asking that in the same
statement as the read costs no extra round trip: the caller's row is the statement's
first table, the data is joined to it, and a missing caller row means "not signed in".
The statements run on the driver connection (see `db/direct.py`); no rules live here.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, bindparam, func, or_, select, true, tuple_
from sqlalchemy.orm import aliased

from users_api.auth.tokens import AccessClaims
from users_api.db.direct import DriverConnection, Statement, compile_statement
from users_api.users.cursor import Position
from users_api.users.models import User
from users_api.users.schemas import UserListQuery, UserOut, UserSort

# What a response shows of a user, in the order it shows it: the output schema decides.
PUBLIC_FIELDS = tuple(UserOut.model_fields)
UserRow = dict[str, Any]


def public_columns(entity: Any) -> list[Any]:
    """`entity`'s public columns, in that order: every statement that returns users."""
    return [getattr(entity, name) for name in PUBLIC_FIELDS]


_CALLER_IS_ADMIN = "caller_is_admin"
_caller = aliased(User, name="caller")
_target = aliased(User, name="target")


def _is_caller() -> ColumnElement[bool]:
    return and_(
        _caller.id == bindparam("caller_id"),
        _caller.auth_version == bindparam("auth_version"),
        _caller.is_active.is_(True),
    )


_USER_BY_ID = compile_statement(
    select(
        _caller.is_admin.label(_CALLER_IS_ADMIN),
        *public_columns(_target),
    )
    .select_from(_caller)
    .outerjoin(_target, _target.id == bindparam("user_id"))
    .where(_is_caller())
)


@dataclass(frozen=True, slots=True)
class Found:
    """What a read found: who the caller is, and the rows (none when nothing matched)."""

    caller_is_admin: bool
    rows: Sequence[UserRow]


def _found(records: Sequence[Any]) -> Found | None:
    """None when the caller's row did not match: not signed in (any longer).

    Each record is the caller's column, then the public fields in the schema's order
    (both statements select them so); a NULL id is the outer join finding no user.
    Zipping by position costs a third less than `dict(record)` on a 50-row page.
    """
    if not records:
        return None
    caller_is_admin: bool = records[0][0]
    rows = [
        dict(zip(PUBLIC_FIELDS, record[1:], strict=True))
        for record in records
        if record[1] is not None
    ]
    return Found(caller_is_admin=caller_is_admin, rows=rows)


class UserReads:
    def __init__(self, connection: DriverConnection) -> None:
        self.connection = connection

    async def user_by_id(self, caller: AccessClaims, user_id: uuid.UUID) -> Found | None:
        values = {
            "caller_id": caller.user_id,
            "auth_version": caller.auth_version,
            "user_id": user_id,
        }
        record = await self.connection.fetchrow(_USER_BY_ID.sql, *_USER_BY_ID.args(values))
        return _found([record] if record is not None else [])

    async def page(
        self, caller: AccessClaims, query: UserListQuery, *, after: Position | None, limit: int
    ) -> Found | None:
        """Up to `limit` users in `query.sort` order after `after`, filtered by `query`."""
        filters = {name: getattr(query, name) for name in _FILTERS}
        shape = _Shape(
            sort=query.sort,
            filters=frozenset(name for name, value in filters.items() if value is not None),
            after=after is not None,
        )
        values: dict[str, Any] = {
            "caller_id": caller.user_id,
            "auth_version": caller.auth_version,
            "limit": limit,
            **filters,
        }
        if query.q is not None:
            values["q"] = f"%{_escape_like(query.q)}%"
        if after is not None:
            values["after_key"], values["after_id"] = after.key, after.id
        statement = _page_statement(shape)
        return _found(await self.connection.fetch(statement.sql, *statement.args(values)))


# --- the list statement: one per query shape, compiled on first use ------------------

_FILTERS = (
    "q",
    "email",
    "username",
    "is_active",
    "is_admin",
    "created_after",
    "created_before",
)


@dataclass(frozen=True, slots=True)
class _Shape:
    """What decides the text of a list statement (not the values bound into it)."""

    sort: UserSort
    filters: frozenset[str]
    after: bool


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _sort_expression(columns: Any, sort: UserSort) -> ColumnElement[Any]:
    """What a sort orders by; text keys order case-insensitively (as the indexes do)."""
    column: ColumnElement[Any] = getattr(columns, sort.key)
    return func.lower(column) if sort.key in ("username", "email") else column


def _ordering(columns: Any, sort: UserSort) -> list[ColumnElement[Any]]:
    keys = [_sort_expression(columns, sort)]
    if sort.key != "id":
        keys.append(columns.id)
    return [key.desc() if sort.descending else key.asc() for key in keys]


def _filter_conditions(filters: frozenset[str]) -> list[ColumnElement[bool]]:
    conditions: dict[str, ColumnElement[bool]] = {
        "q": or_(
            User.email.ilike(bindparam("q"), escape="\\"),
            User.username.ilike(bindparam("q"), escape="\\"),
            User.full_name.ilike(bindparam("q"), escape="\\"),
        ),
        "email": func.lower(User.email) == func.lower(bindparam("email")),
        "username": func.lower(User.username) == func.lower(bindparam("username")),
        "is_active": User.is_active == bindparam("is_active"),
        "is_admin": User.is_admin == bindparam("is_admin"),
        "created_after": User.created_at > bindparam("created_after"),
        "created_before": User.created_at < bindparam("created_before"),
    }
    return [conditions[name] for name in _FILTERS if name in filters]


def _after_condition(sort: UserSort) -> ColumnElement[bool]:
    """Rows past the cursor: a row comparison on (key, id), which the indexes serve."""
    if sort.key == "id":
        after_id = bindparam("after_id", type_=User.id.type)
        return User.id < after_id if sort.descending else User.id > after_id
    key: ColumnElement[Any] = bindparam("after_key", type_=getattr(User, sort.key).type)
    if sort.key in ("username", "email"):
        key = func.lower(key)
    bound = tuple_(_sort_expression(User, sort), User.id)
    position = tuple_(key, bindparam("after_id", type_=User.id.type))
    return bound < position if sort.descending else bound > position


@lru_cache(maxsize=256)
def _page_statement(shape: _Shape) -> Statement:
    page: Select[Any] = select(*public_columns(User)).where(*_filter_conditions(shape.filters))
    if shape.after:
        page = page.where(_after_condition(shape.sort))
    lateral = page.order_by(*_ordering(User, shape.sort)).limit(bindparam("limit")).lateral("page")
    # The outer ORDER BY repeats the inner one: a join promises no order of its own.
    statement = (
        select(_caller.is_admin.label(_CALLER_IS_ADMIN), *lateral.c)
        .select_from(_caller)
        .outerjoin(lateral, true())
        .where(_is_caller())
        .order_by(*_ordering(lateral.c, shape.sort))
    )
    return compile_statement(statement)
