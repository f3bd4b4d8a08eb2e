"""argon2id hashing off the event loop, and the password policy (zxcvbn's estimate too).

Hashing takes tens of milliseconds of CPU and 7 MiB of memory: it runs on a small
thread pool of its own (argon2-cffi releases the GIL while it works), so a login storm
queues instead of stalling every other request. A dedicated pool rather than the shared
one also bounds memory: glibc keeps a malloc arena per thread, and each thread that ever
hashed keeps its hash's memory around (handing it back costs a page fault per 4 KiB on
every hash, a third more CPU per login, so it is kept).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from time import perf_counter
from typing import TypeVar

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from users_api.metrics import HASH_QUEUE, HASH_SECONDS
from users_api.security import strength

# argon2id at one of the OWASP Password Storage Cheat Sheet's rows, which it rates as equal
# defences that trade memory for passes: m=7 MiB, t=5, p=1 rather than m=19 MiB, t=2. Every
# hashing thread keeps its m resident for the life of the worker (see above), so the row
# with the least memory lets a worker stay within 100 MiB; it also hashes ~20 % faster
# here, since 7 MiB stays closer to the CPU's caches. Hashes made with other parameters
# (the 19 MiB row included) are upgraded at the next login.
ARGON2_TIME_COST = 5
ARGON2_MEMORY_KIB = 7_168
ARGON2_PARALLELISM = 1
MAX_LENGTH = 128


_T = TypeVar("_T")


def default_hash_concurrency() -> int:
    """One hashing thread per CPU this process may run on: more only queue in the kernel
    instead of in the pool, and each keeps its hash's memory."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no sched_getaffinity (macOS)
        return os.cpu_count() or 1


# Niceness of the hashing threads (Linux nice is per thread): CPU-bound hashes yield to
# the event loop's short requests instead of taking turns with them.
HASHING_NICENESS = 5


def yield_to_requests() -> None:
    """Lower the calling thread's CPU priority.

    When every CPU is busy, a login storm would otherwise get the same share of CPU as
    the event loop, and every read would wait behind slices of hashing: its p99 went up
    fivefold in the benchmark. At niceness 5 hashing gets about a quarter of a CPU the
    loop saturates (all of an idle one): logins slow down but keep going (niceness 10
    measured the same read p99 but a third of the logins).
    """
    with contextlib.suppress(OSError, AttributeError):  # not permitted, or not POSIX
        os.nice(HASHING_NICENESS)


@dataclass
class Passwords:
    """Hash and verify on `concurrency` dedicated threads; more requests wait their turn."""

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
    _executor: ThreadPoolExecutor | None = field(default=None, init=False)
    _estimator: ThreadPoolExecutor | None = field(default=None, init=False)
    _turns: asyncio.Semaphore | None = field(default=None, init=False)
    _dummy_hash: str | None = field(default=None, init=False)

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[HashingTurn]:
        """A place at the head of the hashing queue, held for the block.

        A login waits here before it takes a database connection. The other way round,
        every queued login held a pooled connection while it waited for a thread, and a
        storm of logins bigger than the pool left none for any other request. There are
        two places per thread: while one holder hashes, the other runs the statements
        around its own hash, so the thread does not sit idle while a login talks to the
        database (one place per thread measured 0.80-0.84x of the raw server's logins in
        the benchmark, two 0.93x).
        """
        if self._turns is None:
            self._turns = asyncio.Semaphore(2 * self.concurrency)
        HASH_QUEUE.inc()
        try:
            await self._turns.acquire()
        finally:
            HASH_QUEUE.dec()
        try:
            yield HashingTurn(self)
        finally:
            self._turns.release()

    async def _run(self, function: Callable[..., _T], *args: str) -> _T:
        """Run on a hashing thread; callers hold a turn, so it waits for one hash at most."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                self.concurrency, thread_name_prefix="argon2", initializer=yield_to_requests
            )
        HASH_QUEUE.inc()  # until a thread takes it (`_timed`)
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, _timed, function, *args
        )

    async def violation(
        self, password: str, *, email: str, username: str, min_length: int
    ) -> Violation | None:
        """`policy_violation`, on a thread of its own.

        zxcvbn's estimate is pure Python: it holds the GIL for milliseconds (bounded, see
        `strength`), so it cannot run beside the event loop, but on its own thread, at the
        hashing threads' lower CPU priority, it is cut into the interpreter's 5 ms turns
        instead of stalling every request for its whole length. One thread: estimates
        take turns (zxcvbn keeps the one under way in module globals), and a flood of
        them takes at most one CPU.
        """
        if self._estimator is None:
            self._estimator = ThreadPoolExecutor(
                1, thread_name_prefix="zxcvbn", initializer=yield_to_requests
            )
        check = functools.partial(
            policy_violation, password, email=email, username=username, min_length=min_length
        )
        return await asyncio.get_running_loop().run_in_executor(self._estimator, check)

    def close(self) -> None:
        """Let the threads go (at shutdown); a later call starts new ones."""
        for executor in (self._executor, self._estimator):
            if executor is not None:
                executor.shutdown(wait=False, cancel_futures=True)
        self._executor = self._estimator = None
        self._turns = None  # bound to the loop that is ending

    async def hash(self, password: str) -> str:
        async with self.turn() as turn:
            return await turn.hash(password)

    async def verify_and_update(self, password: str, hashed: str | None) -> tuple[bool, str | None]:
        """Verify; when the stored hash uses old parameters, also return a fresh hash."""
        async with self.turn() as turn:
            return await turn.verify_and_update(password, hashed)


def _timed(function: Callable[..., _T], *args: str) -> _T:
    """On the hashing thread: out of the queue, and the hash timed."""
    HASH_QUEUE.dec()
    started = perf_counter()
    try:
        return function(*args)
    finally:
        HASH_SECONDS.observe(perf_counter() - started)


@dataclass(frozen=True, slots=True)
class HashingTurn:
    """The hashing a holder of `Passwords.turn()` does: at most one hash ahead of it."""

    passwords: Passwords

    async def hash(self, password: str) -> str:
        return await self.passwords._run(self.passwords._hash.hash, password)

    async def verify_and_update(self, password: str, hashed: str | None) -> tuple[bool, str | None]:
        """Verify; when the stored hash uses old parameters, also return a fresh hash.

        No hash (a user provisioned without a password) matches no password, after the
        same work as a real verification, so it is not told apart by time either.
        """
        if hashed is None:
            await self.verify_dummy(password)
            return False, None
        return await self.passwords._run(self.passwords._hash.verify_and_update, password, hashed)

    async def verify_dummy(self, password: str) -> None:
        """Spend what a real verification costs, for a user that does not exist.

        Without it an unknown username answers measurably faster than a wrong password.
        """
        if self.passwords._dummy_hash is None:
            self.passwords._dummy_hash = await self.hash("not the password of anyone")
        await self.verify_and_update(password, self.passwords._dummy_hash)


@dataclass(frozen=True, slots=True)
class Violation:
    """Why a password is refused. `reason` completes "The password ...", and `str()`
    adds zxcvbn's advice when the estimate was the reason."""

    reason: str
    score: int | None = None  # zxcvbn's, when the estimate refused it
    warning: str = ""
    suggestions: tuple[str, ...] = ()

    def __str__(self) -> str:
        advice = " ".join(text for text in (self.warning, *self.suggestions) if text)
        return f"{self.reason}: {advice}" if advice else self.reason

    def feedback(self) -> dict[str, object] | None:
        """zxcvbn's verdict, for clients that show it: None for the other reasons."""
        if self.score is None:
            return None
        return {"score": self.score, "warning": self.warning, "suggestions": self.suggestions}


def policy_violation(
    password: str, *, email: str, username: str, min_length: int
) -> Violation | None:
    """Why the password is refused, or None. Length is counted in characters.

    Milliseconds of CPU (zxcvbn's estimate, in pure Python): serving runs it on a thread
    of its own, `Passwords.violation`.
    """
    if len(password) < min_length:
        return Violation(f"must be at least {min_length} characters long")
    if len(password) > MAX_LENGTH:
        return Violation(f"must be at most {MAX_LENGTH} characters long")
    lowered = password.lower()
    if strength.is_common(lowered):
        return Violation("is one of the most common passwords")
    if lowered in {email.lower(), username.lower()}:
        return Violation("must not be the same as the email or the username")
    estimate = strength.estimate(password, user_inputs=(email, username))
    if estimate.score < strength.MIN_SCORE:
        return Violation(
            f"is too easy to guess (zxcvbn rates it {estimate.score} of 4, "
            f"and {strength.MIN_SCORE} is needed)",
            score=estimate.score,
            warning=estimate.warning,
            suggestions=estimate.suggestions,
        )
    return None
