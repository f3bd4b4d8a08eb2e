"""Every statement about audit events, compiled once. No rules."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    CTE,
    ColumnElement,
    DateTime,
    Integer,
    Text,
    Uuid,
    any_,
    bindparam,
    insert,
    select,
    tuple_,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.sql.dml import ReturningUpdate
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.selectable import Select

from users_api.cluster.retention import expired_batch
from users_api.db.statements import Statement, compile_statement
from users_api.events.models import Event

# An event's columns, each bound as `event_<column>` (`writer.event_values`).
_BOUND: dict[str, Any] = {
    "id": Uuid,
    "type": Text,
    "occurred_at": DateTime(timezone=True),
    "actor_type": Text,
    "actor_id": Uuid,
    "subject_type": Text,
    "subject_id": Uuid,
    "request_id": Text,
    "ip_address": Text,
    "data": JSONB,
}
_VALUES: list[BindParameter[Any]] = [
    bindparam(f"event_{name}", type_=type_) for name, type_ in _BOUND.items()
]

INSERT_EVENT = compile_statement(insert(Event).values(dict(zip(_BOUND, _VALUES, strict=True))))


def recording(
    change: ReturningUpdate[tuple[object, ...]], fragments: Sequence[Callable[[CTE], CTE]]
) -> Select[tuple[object, ...]]:
    """`change` and the event of it as one statement: the event is written only when
    `change` returns a row, and each fragment (a subscriber's part, e.g. the webhook
    fan-out) is a CTE over the event's. One round trip, and atomic without a
    transaction around it: a statement commits whole or not at all."""
    changed = change.cte("changed")
    event = (
        insert(Event)
        .from_select(list(_BOUND), select(*_VALUES).where(select(changed).exists()))
        .returning(Event.id)
        .cte("event")
    )
    return select(*changed.c).add_cte(event, *(fragment(event) for fragment in fragments))


@lru_cache(maxsize=8)
def inserting(fragments: tuple[Callable[[CTE], CTE], ...]) -> Statement:
    """The event and each fragment over it (a subscriber's part) as one statement: the
    event written on its own, in one round trip instead of one per subscriber more."""
    event = insert(Event).values(dict(zip(_BOUND, _VALUES, strict=True))).returning(Event.id)
    written = event.cte("event")
    return compile_statement(
        select(written.c.id).add_cte(*(fragment(written) for fragment in fragments))
    )


# --- pages -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PageShape:
    """What decides the text of a page statement (not the values bound into it)."""

    types: bool
    actor: bool
    subject: bool
    since: bool
    until: bool
    after: bool
    # `types` names exactly one (bound as `type`, not `types`).
    one_type: bool = False


EVENT_COLUMNS = (
    Event.id,
    Event.type,
    Event.occurred_at,
    Event.actor_type,
    Event.actor_id,
    Event.subject_type,
    Event.subject_id,
    Event.request_id,
    Event.ip_address,
    Event.data,
)


@lru_cache(maxsize=64)
def page(shape: PageShape) -> Statement:
    """Newest first by (`occurred_at`, `id`): a backward scan of one of the table's
    indexes that stops after `limit` rows, each filter an equality or range on the
    index's columns, and the cursor a row comparison that continues the scan."""
    conditions: list[ColumnElement[bool]] = []
    if shape.one_type:  # an equality: the type's index is then read in order
        conditions.append(Event.type == bindparam("type", type_=Text))
    elif shape.types:
        conditions.append(Event.type == any_(bindparam("types", type_=ARRAY(Text))))
    if shape.actor:
        conditions.append(Event.actor_id == bindparam("actor_id", type_=Uuid))
    if shape.subject:
        conditions.append(Event.subject_id == bindparam("subject_id", type_=Uuid))
    if shape.since:
        conditions.append(Event.occurred_at >= bindparam("since", type_=DateTime(timezone=True)))
    if shape.until:
        conditions.append(Event.occurred_at < bindparam("until", type_=DateTime(timezone=True)))
    if shape.after:
        conditions.append(
            tuple_(Event.occurred_at, Event.id)
            < tuple_(
                bindparam("after_at", type_=DateTime(timezone=True)),
                bindparam("after_id", type_=Uuid),
            )
        )
    statement = (
        select(*EVENT_COLUMNS)
        .where(*conditions)
        .order_by(Event.occurred_at.desc(), Event.id.desc())
        .limit(bindparam("limit", type_=Integer))
    )
    return compile_statement(statement)


# --- retention ---------------------------------------------------------------------

# One batch of events past retention, oldest first (`ix_events_occurred_at_id`).
PRUNE = expired_batch(Event.id, Event.occurred_at)
