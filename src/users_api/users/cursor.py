"""Opaque keyset cursors: the list, the last row's sort key and id, base64url-encoded JSON.

A cursor is bound to the list (`scope`: the users, the groups, one group's members) and
the sort it was made for: a cursor of another list is refused, not read as a position in
this one. Anything that does not decode to exactly that shape is an `InvalidCursor`
(400), never a server error.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import datetime

import orjson

from users_api.errors import InvalidCursor
from users_api.users.schemas import UserSort, as_utc

KeyValue = uuid.UUID | datetime | str

# The lists that page with these cursors (`scope`).
USERS = "users"
GROUPS = "groups"


def members_of(group_id: uuid.UUID) -> str:
    """The scope of one group's members: a cursor of another group's list is refused."""
    return f"groups/{group_id}/members"


@dataclass(frozen=True, slots=True)
class Position:
    """Where the previous page ended in the list `scope`: its last row's sort key and id."""

    scope: str
    sort: UserSort
    key: KeyValue
    id: uuid.UUID


def encode(position: Position) -> str:
    key = position.key
    raw = key.isoformat() if isinstance(key, datetime) else str(key)
    payload = orjson.dumps(
        {"l": position.scope, "s": position.sort.value, "k": raw, "i": str(position.id)}
    )
    return base64.urlsafe_b64encode(payload).rstrip(b"=").decode("ascii")


def decode(cursor: str, sort: UserSort, *, scope: str) -> Position:
    """The position `cursor` holds, when it was made for the list `scope` in `sort`."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = orjson.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        if not isinstance(data, dict) or set(data) != {"l", "s", "k", "i"}:
            raise InvalidCursor
        if data["l"] != scope:
            raise InvalidCursor("The cursor was made for another list.")
        if data["s"] != sort.value:
            raise InvalidCursor("The cursor was made for another sort order.")
        if not isinstance(data["i"], str):
            raise InvalidCursor
        row_id = uuid.UUID(data["i"])
        key = _parse_key(sort, data["k"], row_id)
    except InvalidCursor:
        raise
    except (
        ValueError,
        TypeError,
        OverflowError,
        binascii.Error,
        UnicodeEncodeError,
        orjson.JSONDecodeError,
    ):
        raise InvalidCursor from None
    return Position(scope=scope, sort=sort, key=key, id=row_id)


def _parse_key(sort: UserSort, raw: object, row_id: uuid.UUID) -> KeyValue:
    if not isinstance(raw, str) or "\x00" in raw:
        raise InvalidCursor
    if sort.key == "id":
        if uuid.UUID(raw) != row_id:
            raise InvalidCursor
        return row_id
    if sort.key == "created_at":
        moment = datetime.fromisoformat(raw)
        if moment.tzinfo is None:
            raise InvalidCursor
        return as_utc(moment)
    if len(raw) > 320:
        raise InvalidCursor
    return raw
