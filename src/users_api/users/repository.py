"""SQL for users: get, keyset list, insert, delete. No rules, no HTTP, no commits."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, func, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from users_api.db.locks import ADMIN_SET_LOCK_CLASS, IDENTITY_LOCK_CLASS
from users_api.users.cursor import KeyValue, Position
from users_api.users.models import User
from users_api.users.schemas import UserListQuery, UserSort


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def sort_column(sort: UserSort) -> ColumnElement[Any]:
    """The expression a sort orders by; text keys order case-insensitively."""
    if sort.key == "username":
        return func.lower(User.username)
    if sort.key == "email":
        return func.lower(User.email)
    if sort.key == "created_at":
        return User.created_at  # type: ignore[return-value]  # InstrumentedAttribute
    return User.id  # type: ignore[return-value]


def sort_key(user: User, sort: UserSort) -> KeyValue:
    """What the cursor stores to find a loaded row's place in `sort_column` order.

    Text keys are kept as stored and lower-cased by the database when compared: Python's
    `str.lower` differs from PostgreSQL's `lower()` for some letters (such as "İ").
    """
    if sort.key == "username":
        return user.username
    if sort.key == "email":
        return user.email
    if sort.key == "created_at":
        return user.created_at
    return user.id


class UserRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, user_id: uuid.UUID) -> User | None:
        """By primary key; a user already loaded in this session costs no query."""
        return await self.session.get(User, user_id)

    async def get_for_update(self, user_id: uuid.UUID) -> User | None:
        """Lock the row and reload it: what an earlier read saw may be stale."""
        statement = (
            select(User)
            .where(User.id == user_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def get_for_key_share(self, user_id: uuid.UUID) -> User | None:
        """Reload the row and keep it from being deleted until this transaction ends.

        Taken before writing rows that reference the user (refresh tokens): a delete
        locks the user first and its cascade the tokens second, so the same order here
        means neither a foreign-key violation nor a deadlock.
        """
        statement = (
            select(User)
            .where(User.id == user_id)
            .with_for_update(key_share=True)
            .execution_options(populate_existing=True)
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def get_by_login(self, identifier: str) -> User | None:
        """By email when it has an `@` (usernames cannot), else by username; any case."""
        column = User.email if "@" in identifier else User.username
        statement = select(User).where(func.lower(column) == identifier.lower())
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def count_active_admins(self, *, excluding: uuid.UUID) -> int:
        statement = select(func.count()).where(
            User.is_admin.is_(True), User.is_active.is_(True), User.id != excluding
        )
        return (await self.session.execute(statement)).scalar_one()

    async def lock_admin_set(self) -> None:
        """Serialize every change that could remove an active admin."""
        await self.session.execute(select(func.pg_advisory_xact_lock(ADMIN_SET_LOCK_CLASS, 0)))

    async def lock_identity_changes(self) -> None:
        """Serialize changes of emails and usernames (taken before any row lock)."""
        await self.session.execute(select(func.pg_advisory_xact_lock(IDENTITY_LOCK_CLASS, 0)))

    async def add(self, user: User) -> User:
        """Insert and flush, so a unique violation surfaces here as IntegrityError."""
        self.session.add(user)
        await self.session.flush()
        return user

    async def flush(self) -> None:
        await self.session.flush()

    async def delete(self, user: User) -> None:
        await self.session.delete(user)
        await self.session.flush()

    async def list_page(
        self, query: UserListQuery, *, after: Position | None, limit: int
    ) -> Sequence[User]:
        statement = _filtered(select(User), query)
        column = sort_column(query.sort)
        if after is not None:
            bound = tuple_(column, User.id)
            key = func.lower(after.key) if isinstance(after.key, str) else after.key
            position = tuple_(key, after.id)
            if query.sort.key == "id":
                statement = statement.where(
                    User.id < after.id if query.sort.descending else User.id > after.id
                )
            else:
                statement = statement.where(
                    bound < position if query.sort.descending else bound > position
                )
        if query.sort.key == "id":
            order = [User.id.desc() if query.sort.descending else User.id.asc()]
        elif query.sort.descending:
            order = [column.desc(), User.id.desc()]
        else:
            order = [column.asc(), User.id.asc()]
        statement = statement.order_by(*order).limit(limit)
        return (await self.session.execute(statement)).scalars().all()


def _filtered(statement: Select[User], query: UserListQuery) -> Select[User]:
    if query.q is not None:
        pattern = f"%{_escape_like(query.q)}%"
        statement = statement.where(
            or_(
                User.email.ilike(pattern, escape="\\"),
                User.username.ilike(pattern, escape="\\"),
                User.full_name.ilike(pattern, escape="\\"),
            )
        )
    if query.email is not None:
        statement = statement.where(func.lower(User.email) == func.lower(query.email))
    if query.username is not None:
        statement = statement.where(func.lower(User.username) == func.lower(query.username))
    if query.is_active is not None:
        statement = statement.where(User.is_active.is_(query.is_active))
    if query.is_admin is not None:
        statement = statement.where(User.is_admin.is_(query.is_admin))
    if query.created_after is not None:
        statement = statement.where(User.created_at > query.created_after)
    if query.created_before is not None:
        statement = statement.where(User.created_at < query.created_before)
    return statement
