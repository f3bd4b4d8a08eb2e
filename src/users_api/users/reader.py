"""The rules for reading users: who may see whom. Writes live in `service.py`."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from users_api.auth.tokens import AccessClaims
from users_api.db.direct import driver_connection
from users_api.errors import Forbidden, InvalidCursor, NotFound, Unauthorized
from users_api.users import cursor
from users_api.users.reads import Found, UserReads, UserRow
from users_api.users.schemas import UserListQuery


@dataclass(frozen=True, slots=True)
class RowPage:
    items: list[UserRow]
    next_cursor: str | None


def _signed_in(found: Found | None) -> Found:
    """The caller's row did not match: deleted, deactivated, or the token was revoked."""
    if found is None:
        raise Unauthorized
    return found


def _admin_only(found: Found) -> Found:
    if not found.caller_is_admin:
        raise Forbidden("Only an admin may list users.")
    return found


class UserReader:
    """Stateless, one per app: each read borrows a pooled connection for its one statement
    and gives it back before the response is written."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @asynccontextmanager
    async def _reads(self) -> AsyncIterator[UserReads]:
        async with driver_connection(self.engine) as connection:
            yield UserReads(connection)

    async def get(self, user_id: uuid.UUID, *, caller: AccessClaims) -> UserRow:
        """Admins see anyone; others only themselves (404 for the rest, not 403)."""
        async with self._reads() as reads:
            user = await reads.user_by_id(caller, user_id)
        found = _signed_in(user)
        if not found.rows or not (found.caller_is_admin or user_id == caller.user_id):
            raise NotFound("No user with this id.")
        return found.rows[0]

    async def list(self, query: UserListQuery, *, caller: AccessClaims) -> RowPage:
        try:
            after = cursor.decode(query.cursor, query.sort) if query.cursor else None
        except InvalidCursor:
            # Who may ask is answered first (401, 403), as for every other request.
            async with self._reads() as reads:
                me = await reads.user_by_id(caller, caller.user_id)
            _admin_only(_signed_in(me))
            raise
        async with self._reads() as reads:
            page = await reads.page(caller, query, after=after, limit=query.limit + 1)
        found = _admin_only(_signed_in(page))
        items = list(found.rows[: query.limit])
        next_cursor = None
        if len(found.rows) > query.limit:
            last = items[-1]
            next_cursor = cursor.encode(
                cursor.Position(sort=query.sort, key=last[query.sort.key], id=last["id"])
            )
        return RowPage(items=items, next_cursor=next_cursor)
