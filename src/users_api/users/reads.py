"""SQL for the hot reads, each one statement that also checks the caller's token version.

A request that reads users must first know that its caller still exists, is active and
holds a token of the current `auth_version` (revocation), and may see what it asks for.
Asking that in the same statement as the read costs no extra round trip: the caller's
row is a subquery in the WHERE clause, which PostgreSQL evaluates once, before the scan
(an InitPlan), and a caller who does not qualify gets no rows at all. Only a read that
found nothing asks again, with `caller_is_admin`, to tell "not signed in" (401) from
"not allowed" (403) from "nothing there" (404, an empty page): the rare answers pay the
second round trip, not the common ones. The rows are exactly the public columns, so
each becomes a dict by zipping it with the names. The statements run on the driver
connection (see `db/direct.py`); no rules live here.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    bindparam,
    exists,
    func,
    or_,
    select,
    tuple_,
)
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


def as_row(record: Any) -> UserRow:
    """A record of `public_columns`, by position: a third cheaper than `dict(record)`."""
    return dict(zip(PUBLIC_FIELDS, record, strict=True))


_caller = aliased(User, name="caller")


def _is_caller() -> ColumnElement[bool]:
    return and_(
        _caller.id == bindparam("caller_id"),
        _caller.auth_version == bindparam("auth_version"),
        _caller.is_active.is_(True),
    )


_CALLER_IS_ADMIN = compile_statement(select(_caller.is_admin).where(_is_caller()))

_USER_BY_ID = compile_statement(
    select(*public_columns(User)).where(
        User.id == bindparam("user_id"),
        exists().where(
            _is_caller(),
            or_(_caller.is_admin.is_(True), _caller.id == bindparam("user_id")),
        ),
    )
)


class UserReads:
    def __init__(self, connection: DriverConnection) -> None:
        self.connection = connection

    async def caller_is_admin(self, caller: AccessClaims) -> bool | None:
        """None when the caller's row does not match: not signed in (any longer)."""
        values = _caller_values(caller)
        is_admin: bool | None = await self.connection.fetchval(
            _CALLER_IS_ADMIN.sql, *_CALLER_IS_ADMIN.args(values)
        )
        return is_admin

    async def user_by_id(self, caller: AccessClaims, user_id: uuid.UUID) -> UserRow | None:
        """The user, if there is one and the caller may see it (an admin, or themself)."""
        values = {**_caller_values(caller), "user_id": user_id}
        record = await self.connection.fetchrow(_USER_BY_ID.sql, *_USER_BY_ID.args(values))
        return as_row(record) if record is not None else None

    async def page(
        self, caller: AccessClaims, query: UserListQuery, *, after: Position | None, limit: int
    ) -> list[UserRow]:
        """Up to `limit` users in `query.sort` order after `after`, filtered by `query`;
        none unless the caller is an admin."""
        filters = {name: getattr(query, name) for name in _FILTERS}
        shape = _Shape(
            sort=query.sort,
            filters=frozenset(name for name, value in filters.items() if value is not None),
            after=after is not None,
        )
        values: dict[str, Any] = {**_caller_values(caller), "limit": limit, **filters}
        if query.q is not None:
            values["q"] = f"%{_escape_like(query.q)}%"
        if after is not None:
            values["after_key"], values["after_id"] = after.key, after.id
        statement = _page_statement(shape)
        records = await self.connection.fetch(statement.sql, *statement.args(values))
        # as_row, inlined: one Python call fewer per row
        return [dict(zip(PUBLIC_FIELDS, record, strict=True)) for record in records]


def _caller_values(caller: AccessClaims) -> dict[str, Any]:
    return {"caller_id": caller.user_id, "auth_version": caller.auth_version}


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


def _sort_expression(sort: UserSort) -> ColumnElement[Any]:
    """What a sort orders by; text keys order case-insensitively (as the indexes do)."""
    column: ColumnElement[Any] = getattr(User, sort.key)
    return func.lower(column) if sort.key in ("username", "email") else column


def _ordering(sort: UserSort) -> list[ColumnElement[Any]]:
    keys: list[ColumnElement[Any]] = [_sort_expression(sort)]
    if sort.key != "id":
        keys.append(User.__table__.c.id)
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
    bound = tuple_(_sort_expression(sort), User.id)
    position = tuple_(key, bindparam("after_id", type_=User.id.type))
    return bound < position if sort.descending else bound > position


@lru_cache(maxsize=256)
def _page_statement(shape: _Shape) -> Statement:
    caller_is_admin = select(_caller.is_admin).where(_is_caller()).scalar_subquery()
    page: Select[Any] = select(*public_columns(User)).where(
        caller_is_admin, *_filter_conditions(shape.filters)
    )
    if shape.after:
        page = page.where(_after_condition(shape.sort))
    statement = page.order_by(*_ordering(shape.sort)).limit(bindparam("limit"))
    return compile_statement(statement)
