"""SQL for users in the request's session: get, lock, insert, delete. No rules, no HTTP,
no commits. The hot reads (by id, keyset pages) are in `reads.py`."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from users_api.db.locks import ADMIN_SET_LOCK_CLASS, IDENTITY_LOCK_CLASS
from users_api.users.models import User


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
            .with_for_update(read=True, key_share=True)
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
