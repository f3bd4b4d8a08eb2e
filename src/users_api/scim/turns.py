"""A SCIM PATCH is read, applied and stored under the version it read: how two at once
on one resource both land, with no 412 that the client did not ask for.

Identity providers send their changes in parallel (Entra adds a group's members one
request each); two PATCHes of one group read the same version and the second one's
store finds it changed. Within a worker the PATCHes of a resource take turns (a lock
per resource, held only while one is pending); between workers, the one that lost is
tried again on the new version. A client that sent `If-Match` asked for the version it
named, and gets its 412.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from users_api.errors import PreconditionFailed

T = TypeVar("T")

# How long one PATCH keeps trying while other workers keep changing its resource: a
# worker with a queue of PATCHes of one group (Entra's member adds) may win many rounds
# in a row, so a count of tries is not enough; the pauses grow, and the queue drains.
PATIENCE_SECONDS = 10.0
# the longest pause between two tries (each pause is a random part of it)
LONGEST_PAUSE_SECONDS = 0.05


class Turns:
    """The PATCHes of one worker's resources, each resource's in turn (one per service)."""

    def __init__(self) -> None:
        # a resource's lock lives while a PATCH of it holds or waits for it
        self._locks: weakref.WeakValueDictionary[uuid.UUID, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    @asynccontextmanager
    async def _turn(self, resource_id: uuid.UUID) -> AsyncIterator[None]:
        lock = self._locks.get(resource_id)
        if lock is None:
            lock = self._locks[resource_id] = asyncio.Lock()
        async with lock:
            yield

    async def patched(
        self,
        resource_id: uuid.UUID,
        if_match: frozenset[int] | None,
        store: Callable[[], Awaitable[T]],
    ) -> T:
        """`store()` (read, apply, store under the version read) until it lands."""
        clock = asyncio.get_running_loop().time
        give_up = clock() + PATIENCE_SECONDS
        async with self._turn(resource_id):
            for attempt in itertools.count(1):
                try:
                    return await store()
                except PreconditionFailed:
                    if if_match is not None or clock() >= give_up:
                        raise
                # another worker stored first: again, on its version, after a pause that
                # grows with each loss (full jitter, so two losers do not meet again)
                longest = min(LONGEST_PAUSE_SECONDS, 0.001 * 2**attempt)
                await asyncio.sleep(random.uniform(0, longest))  # noqa: S311  # jitter
        raise AssertionError("unreachable: the loop returns or raises")
