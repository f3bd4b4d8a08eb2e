"""Creating a user (`POST /users`) in two short statements around the hash.

The hash takes tens of milliseconds on a worker thread; the rest of a creation should
cost next to nothing on the event loop, which shares the CPU with the hash. Through the
session it cost milliseconds (the caller as an ORM object, BEGIN, the unit of work's
INSERT, COMMIT), and the session held a pooled connection while the hash ran. Here the
caller's check is the hot read's one statement, the INSERT ... RETURNING is a second
(a single statement is its own transaction), and no connection is held in between.

Who may create whom, and the password policy, are the service's rules (`service.py`).
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from typing import Any

from sqlalchemy import bindparam, insert, literal_column
from uuid_utils.compat import uuid7

from users_api.auth.passwords import Passwords
from users_api.auth.tokens import AccessClaims
from users_api.db.direct import DirectPool, compile_statement
from users_api.errors import Unauthorized
from users_api.users.models import User
from users_api.users.reads import UserReads, UserRow, as_row, public_columns
from users_api.users.schemas import UserCreate
from users_api.users.service import check_password, refuse_creation, unique_as_conflict

_INSERTED = ("id", "email", "username", "full_name", "password_hash", "is_active", "is_admin")
_INSERT = compile_statement(
    insert(User)
    .values(
        {
            **{name: bindparam(name) for name in _INSERTED},
            # Both counters start at 1, as the model's defaults (and the ORM) start them.
            "version": literal_column("1"),
            "auth_version": literal_column("1"),
        }
    )
    .returning(*public_columns(User))
)


@dataclass(frozen=True, slots=True)
class UserCreation:
    """Stateless, one per app, like `UserReader`."""

    pool: DirectPool
    passwords: Passwords
    _: KW_ONLY
    password_min_length: int
    allow_registration: bool

    async def create(self, data: UserCreate, *, caller: AccessClaims | None) -> UserRow:
        caller_is_admin = caller is not None and await self._is_admin(caller)
        refuse_creation(
            data,
            signed_in=caller is not None,
            admin=caller_is_admin,
            allow_registration=self.allow_registration,
        )
        check_password(
            data.password,
            email=data.email,
            username=data.username,
            min_length=self.password_min_length,
        )
        values: dict[str, Any] = {
            "id": uuid7(),
            "email": data.email,
            "username": data.username,
            "full_name": data.full_name,
            "password_hash": await self.passwords.hash(data.password),
            "is_active": True if data.is_active is None else data.is_active,
            "is_admin": bool(data.is_admin),
        }
        async with self.pool.connection() as connection:
            with unique_as_conflict():
                record = await connection.fetchrow(_INSERT.sql, *_INSERT.args(values))
        assert record is not None  # INSERT ... RETURNING returns the row it inserted
        return as_row(record)

    async def _is_admin(self, caller: AccessClaims) -> bool:
        """Whether the caller is an admin; Unauthorized when their token is not honoured."""
        async with self.pool.connection() as connection:
            is_admin = await UserReads(connection).caller_is_admin(caller)
        if is_admin is None:
            raise Unauthorized
        return is_admin
