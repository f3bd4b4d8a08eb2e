"""The password module keeps no more memory, threads and CPU priority than it needs."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import runpy
import subprocess
import sys
import threading
from pathlib import Path

from users_api.security import strength
from users_api.security.passwords import (
    HASHING_NICENESS,
    Passwords,
    default_hash_concurrency,
)


def test_one_hashing_thread_per_usable_cpu() -> None:
    assert default_hash_concurrency() == len(os.sched_getaffinity(0))


def _zxcvbn_lists() -> dict[str, list[str]]:
    """zxcvbn's own lists, from its module run apart (`sys.modules` untouched)."""
    spec = importlib.util.find_spec("zxcvbn")
    assert spec is not None
    assert spec.submodule_search_locations is not None
    path = Path(next(iter(spec.submodule_search_locations))) / "frequency_lists.py"
    lists: dict[str, list[str]] = runpy.run_path(str(path))["FREQUENCY_LISTS"]
    return lists


_KEPT = """
import gc, sys, tracemalloc
from users_api.security import strength
tracemalloc.start()
if sys.argv[1] == "ours":
    strength.load()
else:
    import zxcvbn
gc.collect()
print(tracemalloc.get_traced_memory()[0])
"""


def _kept_by(way: str) -> int:
    """Bytes still allocated in a fresh interpreter after loading zxcvbn `way`."""
    run = subprocess.run(
        [sys.executable, "-c", _KEPT, way], capture_output=True, text=True, check=True
    )
    return int(run.stdout)


def test_zxcvbn_s_dictionaries_are_kept_compact() -> None:
    """Its dicts of 94,000 words keep ~11 MiB; `RankedWords` 1.4 MiB, zxcvbn's code 0.5."""
    stock, ours = _kept_by("stock"), _kept_by("ours")
    assert stock > 10 * 2**20, stock
    assert ours < 2.5 * 2**20, ours


def test_zxcvbn_matches_every_word_at_its_rank() -> None:
    strength.load()
    from zxcvbn import matching

    lists = _zxcvbn_lists()
    assert set(matching.RANKED_DICTIONARIES) >= set(lists)
    for name, words in lists.items():
        ranked = matching.RANKED_DICTIONARIES[name]
        assert isinstance(ranked, strength.RankedWords)
        assert all(ranked[word] == rank for rank, word in enumerate(words, 1)), name
        assert "not a word of any list" not in ranked


def test_the_most_common_passwords_are_zxcvbn_s_first_10000() -> None:
    ranked = _zxcvbn_lists()["passwords"]
    assert all(strength.is_common(word) for word in ranked[:10_000])
    assert not any(strength.is_common(word) for word in ranked[10_000:])


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
