"""The password module keeps no more memory, threads and CPU priority than it needs."""

from __future__ import annotations

import asyncio
import os
import sys
import threading

import pytest

from users_api.security.passwords import (
    HASHING_NICENESS,
    Passwords,
    common_passwords,
    default_hash_concurrency,
)


def test_one_hashing_thread_per_usable_cpu() -> None:
    assert default_hash_concurrency() == len(os.sched_getaffinity(0))


def test_common_passwords_leave_zxcvbn_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same 10,000 as zxcvbn's own module, without importing (and keeping) zxcvbn."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    expected = frozenset(FREQUENCY_LISTS["passwords"][:10_000])
    for name in [name for name in sys.modules if name.partition(".")[0] == "zxcvbn"]:
        monkeypatch.delitem(sys.modules, name)
    common_passwords.cache_clear()

    assert common_passwords() == expected
    assert [name for name in sys.modules if name.partition(".")[0] == "zxcvbn"] == []


def _own_niceness() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


async def test_hashing_threads_yield_the_cpu_to_the_event_loop() -> None:
    passwords = Passwords(concurrency=1)
    try:
        loop_niceness = _own_niceness()
        hashing_niceness = await passwords._run(_own_niceness)
    finally:
        passwords.close()
    assert hashing_niceness == min(19, loop_niceness + HASHING_NICENESS)
    assert _own_niceness() == loop_niceness  # the event loop's thread is untouched


async def test_two_turns_per_hashing_thread() -> None:
    """While one holder hashes, one more may run its statements; the rest queue."""
    passwords = Passwords(concurrency=1)
    holding = most = 0

    async def hold() -> None:
        nonlocal holding, most
        async with passwords.turn():
            holding += 1
            most = max(most, holding)
            await asyncio.sleep(0.01)
            holding -= 1

    await asyncio.gather(*(hold() for _ in range(6)))
    passwords.close()
    assert most == 2
