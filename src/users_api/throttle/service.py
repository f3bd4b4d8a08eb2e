"""Login throttling, kept in PostgreSQL so every worker and replica sees one count.

The failures live in `login_failures`, counted under the account's advisory lock, which
the caller takes first (in the statement that finds the account, or `lock_user`).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from users_api.config import Settings
from users_api.db.database import Unit
from users_api.errors import DomainError, TooManyAttempts
from users_api.throttle import queries as q


@dataclass(frozen=True, slots=True)
class LoginThrottle:
    """At most `per_account` failures of one account and `per_address` from one client
    address within `window`; stateless, one per app."""

    per_account: int
    per_address: int
    window: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> LoginThrottle:
        return cls(
            per_account=settings.login_failures_per_account,
            per_address=settings.login_failures_per_address,
            window=timedelta(seconds=settings.login_failure_window_seconds),
        )

    async def lock_user(self, unit: Unit, user_id: uuid.UUID) -> str:
        """Take the account lock of a user known by id; its account key."""
        locked = await unit.one(q.LOCK_USER_ACCOUNT, user_id=user_id)
        assert locked is not None  # one row always
        key: str = locked["account_key"]
        return key

    async def wait(self, unit: Unit, *, account_key: str, address: str) -> int | None:
        """Seconds until this account may be tried again from `address`; None: now."""
        marks = await unit.one(
            q.THROTTLE_MARKS,
            account_key=account_key,
            per_account=self.per_account,
            address=address,
            per_address=self.per_address,
            window=self.window,
        )
        assert marks is not None  # one row always
        return seconds_to_wait(
            (marks["account"], marks["address"]), now=marks["now"], window=self.window
        )

    async def answer(
        self,
        unit: Unit,
        *,
        account_key: str,
        address: str,
        check: Callable[[], Awaitable[bool]],
        refusal: DomainError,
    ) -> DomainError | None:
        """An answer given for the account (a `current_password`, a second-factor code),
        as a login's password is: throttled (429 past the limit, also for the right
        answer), and a wrong one counted as a failed login. None when `check` passes;
        else the error to answer with, which the caller returns so that the failure is
        committed. The account's lock must be held (`lock_user`)."""
        wait = await self.wait(unit, account_key=account_key, address=address)
        if wait is not None:
            return TooManyAttempts(wait)
        if await check():
            return None
        await self.record_failure(unit, account_key=account_key, address=address)
        return refusal

    async def record_failure(self, unit: Unit, *, account_key: str, address: str) -> None:
        """Count a failure (and forget this key's and address's expired ones). The caller
        must commit it even though it answers an error: return the error, do not raise."""
        failure = {"account_key": account_key, "address": address}
        await unit.execute(q.FORGET_EXPIRED_FAILURES, **failure, window=self.window)
        await unit.execute(q.RECORD_FAILURE, **failure)


def seconds_to_wait(
    marks: Iterable[datetime | None], *, now: datetime, window: timedelta
) -> int | None:
    """Seconds until a login may be tried again, or None when it may be tried now.

    `marks` are when the limit-th newest failure (of the account, of the address)
    happened within the window; None where there were fewer. The newest mark decides.
    """
    blocked = [moment for moment in marks if moment is not None]
    if not blocked:
        return None
    wait = (max(blocked) + window - now).total_seconds()
    return max(1, math.ceil(wait))
