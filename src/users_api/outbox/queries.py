"""Every outbox statement, compiled once. No rules."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    ColumnElement,
    DateTime,
    Integer,
    Interval,
    Text,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    literal_column,
    null,
    select,
)
from sqlalchemy import update as sql_update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import aliased

from users_api.cluster.retention import expired_batch
from users_api.db.statements import compile_statement
from users_api.outbox.models import OutboxMessage

_ONE = literal_column("1", Integer)
_NONE = literal_column("0", Integer)
# The payload keys that hold what only the recipient may read (a mail's text and link,
# with its token): dropped once the message is delivered.
_SECRET_KEYS: ColumnElement[Any] = literal_column("'{text,link}'::text[]")

ENQUEUE = compile_statement(
    insert(OutboxMessage).values(
        kind=bindparam("kind", type_=Text),
        payload=bindparam("payload", type_=JSONB),
        sequence_key=bindparam("sequence_key", type_=Text),
    )
)

_EARLIER = aliased(OutboxMessage, name="earlier")

# Due rows nobody else holds, moved `lease` into the future and counted as an attempt,
# in one statement: another sender's claim skips them (SKIP LOCKED) while this one runs,
# and sees them no more once it commits; a sender that dies leaves them due again when
# the lease runs out. A row of a sequence waits while an earlier one of it is undelivered
# (claimed or not), so a sequence is delivered in order by one sender at a time.
_DUE = (
    select(OutboxMessage.id)
    .where(
        OutboxMessage.delivered_at.is_(None),
        OutboxMessage.next_attempt_at <= func.now(),
        ~exists().where(
            _EARLIER.sequence_key == OutboxMessage.sequence_key,
            _EARLIER.delivered_at.is_(None),
            _EARLIER.id < OutboxMessage.id,
        ),
    )
    .order_by(OutboxMessage.next_attempt_at)
    .limit(bindparam("limit", type_=Integer))
    .with_for_update(skip_locked=True)
    .scalar_subquery()
)
CLAIM = compile_statement(
    sql_update(OutboxMessage)
    .where(OutboxMessage.id.in_(_DUE))
    .values(
        next_attempt_at=func.now() + bindparam("lease", type_=Interval),
        attempts=OutboxMessage.attempts + _ONE,
    )
    .returning(OutboxMessage.id, OutboxMessage.kind, OutboxMessage.payload, OutboxMessage.attempts)
)

# Delivered: what the payload must not keep (a mailed token) is dropped with it.
DELIVERED = compile_statement(
    sql_update(OutboxMessage)
    .where(OutboxMessage.id == bindparam("id"))
    .values(
        delivered_at=func.now(),
        last_error=null(),
        payload=OutboxMessage.payload.op("-")(_SECRET_KEYS),
    )
)

# A message that cannot go out now and must not be lost (its webhook endpoint is
# disabled): undelivered, due never, and held at the head of its sequence, so the
# messages behind it wait too, until `RESUME` makes it due again.
_NEVER = literal_column("'infinity'::timestamptz", DateTime(timezone=True))
PARK = compile_statement(
    sql_update(OutboxMessage)
    .where(OutboxMessage.id == bindparam("id"))
    .values(next_attempt_at=_NEVER, last_error=bindparam("error", type_=Text))
)
# A sequence's parked message due again at once, with its attempts counted afresh. Rows
# merely waiting behind it, or leased by a sender, are left alone.
RESUME = compile_statement(
    sql_update(OutboxMessage)
    .where(
        OutboxMessage.sequence_key == bindparam("sequence_key", type_=Text),
        OutboxMessage.delivered_at.is_(None),
        OutboxMessage.next_attempt_at == _NEVER,
    )
    .values(next_attempt_at=func.now(), attempts=_NONE, last_error=null())
)

# A sequence's undelivered messages, gone with what they were for (a deleted endpoint).
DISCARD = compile_statement(
    delete(OutboxMessage).where(
        OutboxMessage.sequence_key == bindparam("sequence_key", type_=Text),
        OutboxMessage.delivered_at.is_(None),
    )
)

FAILED = compile_statement(
    sql_update(OutboxMessage)
    .where(OutboxMessage.id == bindparam("id"))
    .values(
        next_attempt_at=func.now() + bindparam("delay", type_=Interval),
        last_error=bindparam("error", type_=Text),
    )
)

# Claimed rows handed back by a sender that stops (`Sender.stop`): due again at once, not
# when their lease runs out; those it never began to deliver lose the attempt their claim
# counted. Delivered rows are left alone.
RELEASE = compile_statement(
    sql_update(OutboxMessage)
    .where(
        OutboxMessage.id == func.any(bindparam("ids", type_=ARRAY(BigInteger))),
        OutboxMessage.delivered_at.is_(None),
    )
    .values(
        next_attempt_at=func.now(),
        attempts=OutboxMessage.attempts
        - case((OutboxMessage.id == bindparam("delivering", type_=BigInteger), _NONE), else_=_ONE),
    )
)

BACKLOG = compile_statement(
    select(func.count(), func.min(OutboxMessage.created_at)).where(
        OutboxMessage.delivered_at.is_(None)
    )
)


# One batch of the messages delivered (or given up) before DELIVERY_RETENTION_DAYS ago,
# oldest first; a message still to deliver has no `delivered_at` and is never taken.
PRUNE_DELIVERED = expired_batch(OutboxMessage.id, OutboxMessage.delivered_at)
