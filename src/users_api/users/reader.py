"""The rules for reading users: who may see whom. Writes live in `service.py`."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from users_api.auth.tokens import AccessClaims
from users_api.db.direct import DirectPool
from users_api.errors import Forbidden, InvalidCursor, NotFound, Unauthorized
from users_api.users import cursor
from users_api.users.reads import UserReads, UserRow
from users_api.users.schemas import UserListQuery


@dataclass(frozen=True, slots=True)
class RowPage:
    items: list[UserRow]
    next_cursor: str | None


def _signed_in(caller_is_admin: bool | None) -> bool:
    """None: the caller's row did not match (deleted, deactivated, or token revoked)."""
    if caller_is_admin is None:
        raise Unauthorized
    return caller_is_admin


def _admin_only(caller_is_admin: bool) -> None:
    if not caller_is_admin:
        raise Forbidden("Only an admin may list users.")


class UserReader:
    """Stateless, one per app: each read borrows a pooled connection for its one statement
    and gives it back before the response is written."""

    def __init__(self, pool: DirectPool) -> None:
        self.pool = pool

    async def get(self, user_id: uuid.UUID, *, caller: AccessClaims) -> UserRow:
        """Admins see anyone; others only themselves (404 for the rest, not 403)."""
        async with self.pool.connection() as connection:
            reads = UserReads(connection)
            user = await reads.user_by_id(caller, user_id)
            if user is None:  # why: no such user, not theirs to see, or not signed in
                _signed_in(await reads.caller_is_admin(caller))
                raise NotFound("No user with this id.")
        return user

    async def list(self, query: UserListQuery, *, caller: AccessClaims) -> RowPage:
        try:
            after = cursor.decode(query.cursor, query.sort) if query.cursor else None
        except InvalidCursor:
            # Who may ask is answered first (401, 403), as for every other request.
            async with self.pool.connection() as connection:
                is_admin = await UserReads(connection).caller_is_admin(caller)
            _admin_only(_signed_in(is_admin))
            raise
        async with self.pool.connection() as connection:
            reads = UserReads(connection)
            rows = await reads.page(caller, query, after=after, limit=query.limit + 1)
            if not rows:  # why: nothing matched, not an admin, or not signed in
                _admin_only(_signed_in(await reads.caller_is_admin(caller)))
        items = rows[: query.limit]
        next_cursor = None
        if len(rows) > query.limit:
            last = items[-1]
            next_cursor = cursor.encode(
                cursor.Position(sort=query.sort, key=last[query.sort.key], id=last["id"])
            )
        return RowPage(items=items, next_cursor=next_cursor)
