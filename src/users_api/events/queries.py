"""Every statement about audit events, compiled once. No rules."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import (
    ColumnElement,
    DateTime,
    Integer,
    Text,
    Uuid,
    any_,
    bindparam,
    delete,
    func,
    insert,
    select,
    tuple_,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from users_api.db.statements import Statement, compile_statement
from users_api.events.models import Event

INSERT_EVENT = compile_statement(
    insert(Event)
    .values(
        id=bindparam("id", type_=Uuid),
        type=bindparam("type", type_=Text),
        actor_type=bindparam("actor_type", type_=Text),
        actor_id=bindparam("actor_id", type_=Uuid),
        subject_type=bindparam("subject_type", type_=Text),
        subject_id=bindparam("subject_id", type_=Uuid),
        request_id=bindparam("request_id", type_=Text),
        ip_address=bindparam("ip_address", type_=Text),
        data=bindparam("data", type_=JSONB),
    )
    .returning(Event.occurred_at)
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

# One batch of events older than the cutoff, oldest first; rows another pruner holds
# are skipped (SKIP LOCKED), so several workers prune side by side without waiting.
_EXPIRED = (
    select(Event.id)
    .where(Event.occurred_at < bindparam("cutoff", type_=DateTime(timezone=True)))
    .order_by(Event.occurred_at)
    .limit(bindparam("batch", type_=Integer))
    .with_for_update(skip_locked=True)
    .scalar_subquery()
)
PRUNE_BATCH = compile_statement(
    select(func.count()).select_from(
        delete(Event).where(Event.id.in_(_EXPIRED)).returning(Event.id).cte("pruned")
    )
)
