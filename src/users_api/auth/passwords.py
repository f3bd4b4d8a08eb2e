"""argon2id hashing off the event loop, and the password policy.

Hashing takes tens of milliseconds of CPU and ~19 MiB of memory: it runs in worker
threads behind a `CapacityLimiter`, so a login storm queues instead of stalling every
other request or exhausting memory (argon2-cffi releases the GIL while it works).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache

import anyio.to_thread
from anyio import CapacityLimiter
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

# OWASP Password Storage Cheat Sheet: argon2id, m=19 MiB, t=2, p=1.
ARGON2_TIME_COST = 2
ARGON2_MEMORY_KIB = 19_456
ARGON2_PARALLELISM = 1
COMMON_PASSWORDS_COUNT = 10_000


def default_hash_concurrency() -> int:
    return max(2, os.cpu_count() or 2)


@dataclass
class Passwords:
    """Hash and verify in worker threads; at most `concurrency` at a time."""

    concurrency: int = field(default_factory=default_hash_concurrency)
    _hash: PasswordHash = field(
        default_factory=lambda: PasswordHash(
            (
                Argon2Hasher(
                    time_cost=ARGON2_TIME_COST,
                    memory_cost=ARGON2_MEMORY_KIB,
                    parallelism=ARGON2_PARALLELISM,
                ),
            )
        )
    )
    _limiter: CapacityLimiter | None = field(default=None, init=False)
    _dummy_hash: str | None = field(default=None, init=False)

    @property
    def limiter(self) -> CapacityLimiter:
        # Made on first use: a limiter belongs to the event loop that runs it.
        if self._limiter is None:
            self._limiter = CapacityLimiter(self.concurrency)
        return self._limiter

    async def hash(self, password: str) -> str:
        return await anyio.to_thread.run_sync(self._hash.hash, password, limiter=self.limiter)

    async def verify_and_update(self, password: str, hashed: str) -> tuple[bool, str | None]:
        """Verify; when the stored hash uses old parameters, also return a fresh hash."""
        return await anyio.to_thread.run_sync(
            self._hash.verify_and_update, password, hashed, limiter=self.limiter
        )

    async def verify_dummy(self, password: str) -> None:
        """Spend what a real verification costs, for a user that does not exist.

        Without it an unknown username answers measurably faster than a wrong password.
        """
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash("not the password of anyone")
        await self.verify_and_update(password, self._dummy_hash)


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """The 10,000 most common passwords, lower-cased (zxcvbn's ranked list)."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(FREQUENCY_LISTS["passwords"][:COMMON_PASSWORDS_COUNT])


def policy_violation(password: str, *, email: str, username: str, min_length: int) -> str | None:
    """Why the password is refused, or None. Length is counted in characters."""
    if len(password) < min_length:
        return f"must be at least {min_length} characters long"
    if len(password) > 128:
        return "must be at most 128 characters long"
    lowered = password.lower()
    if lowered in common_passwords():
        return "is one of the most common passwords"
    if lowered in {email.lower(), username.lower()}:
        return "must not be the same as the email or the username"
    return None
