"""The rules for users: validation beyond syntax, hashing, conflicts, optimistic locking."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from users_api.auth.passwords import Passwords, policy_violation
from users_api.errors import Conflict, InvalidInput, NotFound, PreconditionFailed
from users_api.users import cursor
from users_api.users.models import EMAIL_UNIQUE_INDEX, USERNAME_UNIQUE_INDEX, User
from users_api.users.repository import UserRepository, sort_key
from users_api.users.schemas import UserCreate, UserListQuery, UserUpdate

_FIELD_OF_INDEX = {EMAIL_UNIQUE_INDEX: "email", USERNAME_UNIQUE_INDEX: "username"}


@dataclass(frozen=True, slots=True)
class Page:
    items: Sequence[User]
    next_cursor: str | None


def conflict_from(exc: IntegrityError) -> Conflict:
    """Name the field whose unique index the database refused; anything else re-raises."""
    constraint = getattr(exc.orig.__cause__, "constraint_name", None) if exc.orig else None
    field = _FIELD_OF_INDEX.get(constraint or "")
    if field is None:
        raise exc
    return Conflict(f"This {field} is already taken.", field=field)


class UserService:
    def __init__(
        self, session: AsyncSession, passwords: Passwords, *, password_min_length: int
    ) -> None:
        self.session = session
        self.users = UserRepository(session)
        self.passwords = passwords
        self.password_min_length = password_min_length

    def _check_password(self, password: str, *, email: str, username: str, loc: str) -> None:
        reason = policy_violation(
            password, email=email, username=username, min_length=self.password_min_length
        )
        if reason is not None:
            raise InvalidInput(loc=("body", loc), msg=f"Password {reason}.")

    async def create(self, data: UserCreate) -> User:
        self._check_password(
            data.password, email=data.email, username=data.username, loc="password"
        )
        user = User(
            email=data.email,
            username=data.username,
            full_name=data.full_name,
            password_hash=await self.passwords.hash(data.password),
            is_active=True if data.is_active is None else data.is_active,
            is_admin=bool(data.is_admin),
        )
        try:
            return await self.users.add(user)
        except IntegrityError as exc:
            raise conflict_from(exc) from None

    async def get(self, user_id: uuid.UUID) -> User:
        user = await self.users.get(user_id)
        if user is None:
            raise NotFound("No user with this id.")
        return user

    async def list(self, query: UserListQuery) -> Page:
        after = cursor.decode(query.cursor, query.sort) if query.cursor else None
        rows = await self.users.list_page(query, after=after, limit=query.limit + 1)
        items = rows[: query.limit]
        next_cursor = None
        if len(rows) > query.limit:
            last = items[-1]
            next_cursor = cursor.encode(
                cursor.Position(sort=query.sort, key=sort_key(last, query.sort), id=last.id)
            )
        return Page(items=items, next_cursor=next_cursor)

    async def _locked(self, user_id: uuid.UUID, if_match: frozenset[int] | None) -> User:
        """Load and row-lock the user, so the version check and the write are atomic."""
        user = await self.users.get(user_id, for_update=True)
        if user is None:
            raise NotFound("No user with this id.")
        if if_match is not None and user.version not in if_match:
            raise PreconditionFailed
        return user

    async def update(
        self, user_id: uuid.UUID, patch: UserUpdate, *, if_match: frozenset[int] | None
    ) -> User:
        user = await self._locked(user_id, if_match)
        changes: dict[str, Any] = patch.changes()
        password = changes.pop("password", None)
        if password is not None:
            self._check_password(
                password,
                email=changes.get("email", user.email),
                username=changes.get("username", user.username),
                loc="password",
            )
            user.password_hash = await self.passwords.hash(password)
        for name, value in changes.items():
            if getattr(user, name) != value:
                setattr(user, name, value)
        try:
            await self.users.flush()
        except IntegrityError as exc:
            raise conflict_from(exc) from None
        except StaleDataError:
            raise PreconditionFailed from None
        return user

    async def delete(self, user_id: uuid.UUID, *, if_match: frozenset[int] | None) -> None:
        user = await self._locked(user_id, if_match)
        await self.users.delete(user)
