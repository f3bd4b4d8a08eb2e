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
import random
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from users_api.errors import PreconditionFailed

T = TypeVar("T")

# Tries of one PATCH against other workers' changes of the same resource.
ATTEMPTS = 8


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
        async with self._turn(resource_id):
            for attempt in range(1, ATTEMPTS + 1):
                try:
                    return await store()
                except PreconditionFailed:
                    if if_match is not None or attempt == ATTEMPTS:
                        raise
                # another worker stored first: again, on its version, a moment apart
                await asyncio.sleep(random.uniform(0, 0.002 * attempt))  # noqa: S311  # jitter
        raise AssertionError("unreachable: the last attempt returns or raises")
