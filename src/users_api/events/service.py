"""Reading the audit log (admins only), and removing what is past its retention.

No HTTP. Events are written by `writer.EventWriter` only, from the services that make
the changes; this module only reads and prunes them.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from users_api.cluster.retention import Retention
from users_api.db.database import Database, Record, Unit
from users_api.errors import Forbidden, InvalidCursor
from users_api.events import queries as q
from users_api.events.schemas import AuditEventQuery
from users_api.security.tokens import AccessClaims
from users_api.users import policy
from users_api.users.queries import CALLER_IS_ADMIN, caller_values

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EventPage:
    items: list[dict[str, Any]]
    next_cursor: str | None


def encode_cursor(occurred_at: datetime, event_id: uuid.UUID) -> str:
    """Where a page ended: its last event's time and id, base64url JSON."""
    payload = orjson.dumps({"t": occurred_at.isoformat(), "i": str(event_id)})
    return base64.urlsafe_b64encode(payload).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """InvalidCursor (400) for anything `encode_cursor` did not make."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = orjson.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        if not isinstance(data, dict) or set(data) != {"t", "i"}:
            raise InvalidCursor
        raw_time, raw_id = data["t"], data["i"]
        if not isinstance(raw_time, str) or not isinstance(raw_id, str):
            raise InvalidCursor
        moment = datetime.fromisoformat(raw_time)
        if moment.tzinfo is None:
            raise InvalidCursor
        return moment.astimezone(UTC), uuid.UUID(raw_id)
    except InvalidCursor:
        raise
    except (ValueError, TypeError, OverflowError, binascii.Error, orjson.JSONDecodeError):
        raise InvalidCursor from None


def as_item(record: Record) -> dict[str, Any]:
    """A row as the contract's event (asyncpg reads jsonb as text)."""
    return {
        "id": record["id"],
        "type": record["type"],
        "occurred_at": record["occurred_at"],
        "actor": {"type": record["actor_type"], "id": record["actor_id"]},
        "subject": {"type": record["subject_type"], "id": record["subject_id"]},
        "request_id": record["request_id"],
        "ip_address": record["ip_address"],
        "data": json.loads(record["data"]),
    }


@dataclass(frozen=True, slots=True)
class AuditService:
    """Stateless, one per app."""

    db: Database

    async def list(self, query: AuditEventQuery, *, caller: AccessClaims) -> EventPage:
        """A page of events, newest first; admins only (401, then 403)."""
        values: dict[str, Any] = {**caller_values(caller), "limit": query.limit + 1}
        after = None
        if query.cursor is not None:
            try:
                after = decode_cursor(query.cursor)
            except InvalidCursor:
                await self._require_admin(values)  # who may ask is answered first
                raise
            values["after_at"], values["after_id"] = after
        types = query.types()
        values.update(
            types=list(types or ()),
            type=types[0] if types else None,
            actor_id=query.actor_id,
            subject_id=query.subject_id,
            since=query.since,
            until=query.until,
        )
        shape = q.PageShape(
            types=types is not None,
            actor=query.actor_id is not None,
            subject=query.subject_id is not None,
            since=query.since is not None,
            until=query.until is not None,
            after=after is not None,
            one_type=types is not None and len(types) == 1,
        )
        statement = q.page(shape)

        async def read(unit: Unit) -> list[Record]:
            if not replicated:  # else decided on the primary, below
                _require_admin(await unit.value(CALLER_IS_ADMIN, **values))
            return await unit.all(statement, **values)

        replicated = self.db.replicated
        if replicated:
            # Who may read is decided on the primary; the page may be a moment old.
            await self._require_admin(values)
        records = await self.db.read(read)
        items = [as_item(record) for record in records[: query.limit]]
        next_cursor = None
        if len(records) > query.limit:
            last = records[query.limit - 1]
            next_cursor = encode_cursor(last["occurred_at"], last["id"])
        return EventPage(items=items, next_cursor=next_cursor)

    async def _require_admin(self, values: dict[str, Any]) -> None:
        async def read(unit: Unit) -> None:
            _require_admin(await unit.value(CALLER_IS_ADMIN, **values))

        await self.db.run(read, transaction=False)


def _require_admin(caller_is_admin: bool | None) -> None:
    if not policy.signed_in(caller_is_admin):
        raise Forbidden("Only an admin may read the audit log.")


# --- retention ---------------------------------------------------------------------


def audit_retention(days: int) -> Retention:
    """AUDIT_RETENTION_DAYS: events older than that go (`cluster.retention`)."""
    return Retention("audit-retention", q.PRUNE, days)
