"""The common PATCH in one statement: a new name, email or username, and nothing else.

Through the session a PATCH is five round trips of ORM (BEGIN, the caller, the row
`FOR UPDATE`, the UPDATE, COMMIT), most of a change's time. A change of plain profile
fields needs none of the service's rules beyond who may change whom and If-Match, and
both fit in the UPDATE's WHERE clause, beside the caller's token check (as the hot
reads do it, `reads.py`):

    UPDATE users SET ..., version = version + 1, updated_at = now()
    FROM users AS caller
    WHERE <caller's token honoured> AND users.id = :id
      AND (caller.is_admin OR caller.id = users.id)
      AND users.version = ANY(:if_match)            -- with If-Match only
      AND <some field really changes>
    RETURNING <the public fields>

PostgreSQL re-checks the WHERE clause on the newest row version if a concurrent change
got there first (READ COMMITTED), so If-Match is as strict as the row lock's. When no
row comes back, the statement changed nothing and `apply` answers None: the caller
then runs the service's full rules, which say why (401, 404, 412, or an unchanged user).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    and_,
    any_,
    bindparam,
    func,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import aliased

from users_api.auth.tokens import AccessClaims
from users_api.db.direct import DirectPool, Statement, compile_statement
from users_api.db.locks import IDENTITY_LOCK_CLASS
from users_api.users.models import User
from users_api.users.reads import UserRow, as_row, public_columns
from users_api.users.schemas import UserUpdate
from users_api.users.service import unique_as_conflict

# What a quick update may change; anything else (a password, the admin fields) needs
# the service: hashing, the last-admin rule, revocation.
QUICK_FIELDS = frozenset({"full_name", "email", "username"})
_IDENTITY_FIELDS = frozenset({"email", "username"})

_caller = aliased(User, name="caller")
_IDENTITY_LOCK = compile_statement(
    select(func.pg_advisory_xact_lock(literal_column(f"{IDENTITY_LOCK_CLASS}, 0")))
)


def _new(field: str) -> str:
    return f"new_{field}"


@lru_cache(maxsize=16)
def _update_statement(fields: frozenset[str], conditional: bool) -> Statement:
    """One statement per set of changed fields, with or without If-Match."""
    ordered = sorted(fields)
    conditions: list[ColumnElement[bool]] = [
        _caller.id == bindparam("caller_id"),
        _caller.auth_version == bindparam("auth_version"),
        _caller.is_active.is_(True),
        User.id == bindparam("user_id"),
        or_(_caller.is_admin.is_(True), _caller.id == User.id),
        or_(*(getattr(User, field).is_distinct_from(bindparam(_new(field))) for field in ordered)),
    ]
    if conditional:
        conditions.append(User.version == any_(bindparam("if_match", type_=ARRAY(BigInteger))))
    statement = (
        update(User)
        .where(and_(*conditions))
        .values(
            {
                **{field: bindparam(_new(field)) for field in ordered},
                "version": User.version + literal_column("1", Integer),
                "updated_at": func.now(),
            }
        )
        .returning(*public_columns(User))
    )
    return compile_statement(statement)


class QuickUpdate:
    """Stateless, one per app, like `UserReader`: a connection per call, from the pool."""

    def __init__(self, pool: DirectPool) -> None:
        self.pool = pool

    @staticmethod
    def covers(patch: UserUpdate) -> bool:
        fields = patch.model_fields_set
        return bool(fields) and fields <= QUICK_FIELDS

    async def apply(
        self,
        user_id: uuid.UUID,
        patch: UserUpdate,
        *,
        caller: AccessClaims,
        if_match: Collection[int] | None,
    ) -> UserRow | None:
        """The changed user, or None when nothing was changed (see the module's doc).

        Email and username changes take the identity lock first, as the service does,
        so two users swapping names wait in line instead of deadlocking.
        """
        changes = patch.changes()
        statement = _update_statement(frozenset(changes), if_match is not None)
        values: dict[str, Any] = {
            "caller_id": caller.user_id,
            "auth_version": caller.auth_version,
            "user_id": user_id,
            "if_match": list(if_match or ()),
            **{_new(field): value for field, value in changes.items()},
        }
        args = statement.args(values)
        async with self.pool.connection() as connection:
            with unique_as_conflict():
                if changes.keys() & _IDENTITY_FIELDS:
                    async with connection.transaction():
                        await connection.execute(_IDENTITY_LOCK.sql)
                        record = await connection.fetchrow(statement.sql, *args)
                else:
                    record = await connection.fetchrow(statement.sql, *args)
        return as_row(record) if record is not None else None
