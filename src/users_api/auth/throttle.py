"""Login throttling, kept in PostgreSQL so every worker and replica sees one count."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from users_api.auth.repository import LoginFailureRepository
from users_api.db.locks import LOGIN_LOCK_CLASS


@dataclass(frozen=True, slots=True)
class ThrottleRules:
    per_account: int
    per_address: int
    window: timedelta


class LoginThrottle:
    def __init__(self, session: AsyncSession, rules: ThrottleRules) -> None:
        self.session = session
        self.failures = LoginFailureRepository(session)
        self.rules = rules

    async def serialize(self, account_key: str) -> None:
        """Take a transaction lock per account, so racing attempts are counted one by one."""
        await self.session.execute(
            select(func.pg_advisory_xact_lock(LOGIN_LOCK_CLASS, func.hashtext(account_key)))
        )

    async def retry_after(self, *, account_key: str, address: str) -> int | None:
        """Seconds until a login may be tried again, or None when it may be tried now."""
        rules = self.rules
        account_mark, address_mark, now = await self.failures.nth_newest(
            account_key=account_key,
            per_account=rules.per_account,
            address=address,
            per_address=rules.per_address,
            since=rules.window,
        )
        blocked = [moment for moment in (account_mark, address_mark) if moment is not None]
        if not blocked:
            return None
        wait = (max(blocked) + rules.window - now).total_seconds()
        return max(1, math.ceil(wait))

    async def record_failure(self, *, account_key: str, address: str) -> None:
        await self.failures.record(account_key=account_key, address=address, keep=self.rules.window)
