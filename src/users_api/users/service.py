"""The rules for changing users: who may do what, hashing, conflicts, optimistic locking,
the last admin. Reads live in `reader.py`."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from users_api.auth.passwords import Passwords, policy_violation
from users_api.auth.service import honoured
from users_api.auth.tokens import AccessClaims
from users_api.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    PreconditionFailed,
    Unauthorized,
)
from users_api.users.models import EMAIL_UNIQUE_INDEX, USERNAME_UNIQUE_INDEX, User
from users_api.users.repository import UserRepository
from users_api.users.schemas import UserCreate, UserUpdate

_FIELD_OF_INDEX = {EMAIL_UNIQUE_INDEX: "email", USERNAME_UNIQUE_INDEX: "username"}
_ADMIN_ONLY_FIELDS = frozenset({"is_admin", "is_active"})
_UNIQUE_FIELDS = frozenset({"email", "username"})


def conflict_on(constraint: str | None) -> Conflict | None:
    """The 409 naming the field whose unique index refused a write; None for others."""
    field = _FIELD_OF_INDEX.get(constraint or "")
    if field is None:
        return None
    return Conflict(f"This {field} is already taken.", field=field)


@contextmanager
def unique_as_conflict() -> Iterator[None]:
    """`conflict_on` for statements run on the driver connection (`db/direct.py`)."""
    try:
        yield
    except asyncpg.UniqueViolationError as exc:
        conflict = conflict_on(exc.constraint_name)
        if conflict is None:
            raise
        raise conflict from None


def conflict_from(exc: IntegrityError) -> Conflict:
    """`conflict_on` for the session's errors; anything but a known index re-raises."""
    constraint = getattr(exc.orig.__cause__, "constraint_name", None) if exc.orig else None
    conflict = conflict_on(constraint)
    if conflict is None:
        raise exc
    return conflict


def refuse_creation(
    data: UserCreate, *, signed_in: bool, admin: bool, allow_registration: bool
) -> None:
    """Admins create anyone; others register themselves while registration is open, and
    never as an admin or with `is_active` chosen."""
    if admin:
        return
    if not allow_registration:
        if not signed_in:
            raise Unauthorized("Registration is closed.")
        raise Forbidden("Registration is closed; only an admin may create users.")
    if data.model_fields_set & _ADMIN_ONLY_FIELDS:
        raise Forbidden("Only an admin may set is_admin or is_active.")


def check_password(password: str, *, email: str, username: str, min_length: int) -> None:
    reason = policy_violation(password, email=email, username=username, min_length=min_length)
    if reason is not None:
        raise InvalidInput(loc=("body", "password"), msg=f"Password {reason}.")


class UserService:
    def __init__(
        self,
        session: AsyncSession,
        passwords: Passwords,
        *,
        password_min_length: int,
    ) -> None:
        self.session = session
        self.users = UserRepository(session)
        self.passwords = passwords
        self.password_min_length = password_min_length

    async def actor(self, caller: AccessClaims) -> User:
        """The caller's row, while their token is honoured (else Unauthorized)."""
        return honoured(await self.users.get(caller.user_id), caller)

    def _check_password(self, password: str, *, email: str, username: str) -> None:
        check_password(
            password, email=email, username=username, min_length=self.password_min_length
        )

    async def create_admin(self, *, email: str, username: str, password: str) -> User:
        """For start-up and the CLI: no caller, the password policy still holds."""
        data = UserCreate(email=email, username=username, password=password, is_admin=True)
        admin = User(email=data.email, username=data.username, is_admin=True)
        self._check_password(data.password, email=data.email, username=data.username)
        admin.password_hash = await self.passwords.hash(data.password)
        try:
            return await self.users.add(admin)
        except IntegrityError as exc:
            raise conflict_from(exc) from None

    async def ensure_admin(self, *, email: str, username: str, password: str) -> User | None:
        """Create this admin unless a user already has the email; None when nothing was done.

        Idempotent, and safe when several workers start at once: the loser of the race
        sees the unique index refuse the email and does nothing.
        """
        if await self.users.get_by_login(email) is not None:
            return None
        try:
            async with self.session.begin_nested():
                return await self.create_admin(email=email, username=username, password=password)
        except Conflict as exc:
            if exc.field == "email":
                return None
            raise

    async def _locked(
        self, user_id: uuid.UUID, *, actor: User, if_match: frozenset[int] | None
    ) -> User:
        """Load and row-lock the user, so the version check and the write are atomic."""
        user = None
        if actor.is_admin or user_id == actor.id:
            user = await self.users.get_for_update(user_id)
        if user is None:
            raise NotFound("No user with this id.")
        if if_match is not None and user.version not in if_match:
            raise PreconditionFailed
        return user

    async def _guard_last_admin(self, user: User, *, removing: bool) -> None:
        """Refuse to leave no active admin. Callers hold the admin-set lock."""
        last = removing and user.is_admin and user.is_active
        if last and await self.users.count_active_admins(excluding=user.id) == 0:
            raise Conflict("This would leave no active admin.")

    async def update(
        self,
        user_id: uuid.UUID,
        patch: UserUpdate,
        *,
        actor: User,
        if_match: frozenset[int] | None,
    ) -> User:
        changes: dict[str, Any] = patch.changes()
        touches_admin_set = bool(changes.keys() & _ADMIN_ONLY_FIELDS)
        # Advisory locks first, then the row: one order everywhere, so no deadlock.
        if touches_admin_set:
            await self.users.lock_admin_set()
        if changes.keys() & _UNIQUE_FIELDS:
            # Two users swapping names would each wait for the other's index entry.
            await self.users.lock_identity_changes()
        user = await self._locked(user_id, actor=actor, if_match=if_match)
        if touches_admin_set and not actor.is_admin:
            raise Forbidden("Only an admin may change is_admin or is_active.")
        password = changes.pop("password", None)
        if password is not None:
            await self._change_password(user, password, patch, changes, actor=actor)
        removing = changes.get("is_admin") is False or changes.get("is_active") is False
        await self._guard_last_admin(user, removing=removing)
        if changes.get("is_active") is False and user.is_active:
            user.auth_version += 1  # deactivation kills every token at once
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

    async def _change_password(
        self,
        user: User,
        password: str,
        patch: UserUpdate,
        changes: dict[str, Any],
        *,
        actor: User,
    ) -> None:
        # One turn for both hashes: the row is locked, so queue once, not twice.
        async with self.passwords.turn() as hashing:
            if user.id == actor.id:
                current = patch.current_password
                if current is None:
                    raise Forbidden("Send current_password to change your own password.")
                ok, _ = await hashing.verify_and_update(current, user.password_hash)
                if not ok:
                    raise Forbidden("current_password is not correct.")
            self._check_password(
                password,
                email=changes.get("email", user.email),
                username=changes.get("username", user.username),
            )
            user.password_hash = await hashing.hash(password)
        user.auth_version += 1  # a new password kills every token at once

    async def delete(
        self, user_id: uuid.UUID, *, actor: User, if_match: frozenset[int] | None
    ) -> None:
        await self.users.lock_admin_set()
        user = await self._locked(user_id, actor=actor, if_match=if_match)
        await self._guard_last_admin(user, removing=True)
        await self.users.delete(user)
