"""The contract's one spelling of a time: RFC 3339 in UTC, ending in `Z`.

Pydantic and orjson (`OPT_UTC_Z`) write response bodies this way; what is written as
text before it reaches them (SCIM's `meta`, an event's `occurred_at` in a webhook body)
goes through `rfc3339`, so a client sees one format everywhere.
"""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(moment: datetime) -> str:
    """`2026-11-23T09:30:00.123456Z`; a naive `moment` is taken to be UTC already."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.isoformat() + "Z"
