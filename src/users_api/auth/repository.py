"""SQL for refresh tokens and failed logins. No rules, no commits."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, ScalarSelect, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from users_api.auth.models import LoginFailure, RefreshToken


class RefreshTokenRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, token: RefreshToken) -> None:
        self.session.add(token)
        await self.session.flush()

    async def get_by_hash(self, token_hash: str) -> RefreshToken | None:
        statement = select(RefreshToken).where(RefreshToken.token_hash == token_hash)
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def get_by_hash_for_update(self, token_hash: str) -> RefreshToken | None:
        """Lock the row and reload it: what an earlier read saw may be stale."""
        statement = (
            select(RefreshToken)
            .where(RefreshToken.token_hash == token_hash)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def revoke_family(self, family_id: uuid.UUID) -> None:
        await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=func.now())
        )

    async def revoke_user(self, user_id: uuid.UUID) -> None:
        await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=func.now())
        )


class LoginFailureRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def nth_newest(
        self,
        *,
        account_key: str,
        per_account: int,
        address: str,
        per_address: int,
        since: timedelta,
    ) -> tuple[datetime | None, datetime | None, datetime]:
        """When the `per_account`-th newest failure of the account and the `per_address`-th
        of the address happened in the window (None where there are fewer), and the
        database's clock: one round trip."""
        marks = select(
            _nth_newest(LoginFailure.account_key == account_key, per_account, since),
            _nth_newest(LoginFailure.client_address == address, per_address, since),
            func.now(),
        )
        account_mark, address_mark, now = (await self.session.execute(marks)).one()
        return account_mark, address_mark, now

    async def record(self, *, account_key: str, address: str, keep: timedelta) -> None:
        """Store a failure, and forget this key's and address's expired ones."""
        await self.session.execute(
            delete(LoginFailure).where(
                or_(
                    LoginFailure.account_key == account_key,
                    LoginFailure.client_address == address,
                ),
                LoginFailure.failed_at <= func.now() - keep,
            )
        )
        self.session.add(LoginFailure(account_key=account_key, client_address=address))
        await self.session.flush()


def _nth_newest(
    key_filter: ColumnElement[bool], n: int, since: timedelta
) -> ScalarSelect[datetime]:
    return (
        select(LoginFailure.failed_at)
        .where(key_filter, LoginFailure.failed_at > func.now() - since)
        .order_by(LoginFailure.failed_at.desc())
        .offset(n - 1)
        .limit(1)
        .scalar_subquery()
    )
