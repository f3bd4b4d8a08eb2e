"""Reading the events table as it is committed, for the audit tests."""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

AUDIT = "/api/v1/audit-events"


async def events(engine: AsyncEngine, *types: str) -> list[dict[str, Any]]:
    """The committed events (of `types`, when given), oldest first."""
    query = "SELECT * FROM events"
    params: dict[str, Any] = {}
    if types:
        query += " WHERE type = ANY(:types)"
        params["types"] = list(types)
    async with engine.connect() as connection:
        rows = (await connection.execute(text(query + " ORDER BY id"), params)).mappings().all()
    found = []
    for row in rows:
        event = dict(row)
        if isinstance(event["data"], str):
            event["data"] = json.loads(event["data"])
        found.append(event)
    return found


async def one_event(engine: AsyncEngine, type_: str) -> dict[str, Any]:
    found = await events(engine, type_)
    assert len(found) == 1, found
    return found[0]


def ids(*values: Any) -> list[uuid.UUID | None]:
    return [None if value is None else uuid.UUID(str(value)) for value in values]
