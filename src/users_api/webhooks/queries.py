"""Every webhook statement, compiled once. No rules."""

from __future__ import annotations

from sqlalchemy import (
    CTE,
    Boolean,
    Insert,
    Integer,
    LargeBinary,
    String,
    Text,
    Uuid,
    bindparam,
    delete,
    func,
    insert,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from users_api.cluster.retention import expired_batch
from users_api.db.statements import compile_statement
from users_api.outbox.models import OutboxMessage
from users_api.webhooks.models import WebhookDelivery, WebhookEndpoint

KIND = "webhook"
_KIND = literal_column(f"'{KIND}'", String)
_ID = bindparam("id", type_=Uuid)
_ONE = literal_column("1", Integer)

# The endpoint as the API shows it (never its secret).
PUBLIC = (
    WebhookEndpoint.id,
    WebhookEndpoint.url,
    WebhookEndpoint.event_types.label("events"),
    WebhookEndpoint.description,
    WebhookEndpoint.enabled,
    WebhookEndpoint.created_at,
    WebhookEndpoint.updated_at,
    WebhookEndpoint.version,
)
PUBLIC_FIELDS = tuple(column.key for column in PUBLIC)

INSERT_ENDPOINT = compile_statement(
    insert(WebhookEndpoint)
    .values(
        id=_ID,
        url=bindparam("url", type_=Text),
        event_types=bindparam("events", type_=ARRAY(String)),
        description=bindparam("description", type_=Text),
        secret=bindparam("secret", type_=LargeBinary),
    )
    .returning(*PUBLIC)
)
ENDPOINTS = compile_statement(
    select(*PUBLIC).order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
)
ENDPOINT = compile_statement(select(*PUBLIC).where(WebhookEndpoint.id == _ID))
ENDPOINT_FOR_UPDATE = compile_statement(
    select(*PUBLIC).where(WebhookEndpoint.id == _ID).with_for_update()
)
UPDATE_ENDPOINT = compile_statement(
    update(WebhookEndpoint)
    .where(WebhookEndpoint.id == _ID)
    .values(
        url=bindparam("url", type_=Text),
        event_types=bindparam("events", type_=ARRAY(String)),
        description=bindparam("description", type_=Text),
        enabled=bindparam("enabled"),
        updated_at=func.now(),
        version=WebhookEndpoint.version + _ONE,
    )
    .returning(*PUBLIC)
)
DELETE_ENDPOINT = compile_statement(
    delete(WebhookEndpoint).where(WebhookEndpoint.id == _ID).returning(WebhookEndpoint.id)
)
# Disabled after its last attempt failed: the endpoint's id when this disabled it (NULL
# when it was disabled already, or is gone).
DISABLE_ENDPOINT = compile_statement(
    update(WebhookEndpoint)
    .where(WebhookEndpoint.id == _ID, WebhookEndpoint.enabled.is_(True))
    .values(
        enabled=literal_column("false", Boolean),
        updated_at=func.now(),
        version=WebhookEndpoint.version + _ONE,
    )
    .returning(WebhookEndpoint.id)
)

# What the sender needs of an endpoint for one attempt.
ENDPOINT_FOR_SENDING = compile_statement(
    select(WebhookEndpoint.url, WebhookEndpoint.secret, WebhookEndpoint.enabled).where(
        WebhookEndpoint.id == _ID
    )
)

# The secret sealed again under the current key (after a SECRET_KEY rotation).
RESEAL = compile_statement(
    update(WebhookEndpoint)
    .where(WebhookEndpoint.id == _ID)
    .values(secret=bindparam("secret", type_=LargeBinary))
)


# One outbox message per enabled endpoint that wants the event, in the event's
# transaction; each endpoint's messages form one sequence (delivered in order).
def fan_out(event: CTE | None = None) -> Insert:
    """One outbox message per enabled endpoint that wants the event bound as `event` (its
    type's `patterns`); with `event`, the CTE that wrote it: nothing when it wrote none."""
    wanted = select(
        _KIND,
        func.jsonb_build_object(
            literal_column("'endpoint_id'", Text),
            WebhookEndpoint.id,
            literal_column("'event'", Text),
            bindparam("event", type_=JSONB),
        ),
        func.concat(literal_column(f"'{KIND}:'", Text), WebhookEndpoint.id),
    ).where(
        WebhookEndpoint.enabled.is_(True),
        WebhookEndpoint.event_types.overlap(bindparam("patterns", type_=ARRAY(String))),
    )
    if event is not None:
        wanted = wanted.where(select(event).exists())
    return insert(OutboxMessage).from_select(["kind", "payload", "sequence_key"], wanted)


FAN_OUT = compile_statement(fan_out())


_EVENT = OutboxMessage.payload.op("->", return_type=JSONB)(literal_column("'event'"))
# The event as it was sent to the endpoint (to send it again), newest copy.
SENT_EVENT = compile_statement(
    select(_EVENT)
    .where(
        OutboxMessage.kind == _KIND,
        OutboxMessage.sequence_key == bindparam("sequence_key", type_=String),
        _EVENT.op("->>")(literal_column("'id'")) == bindparam("event_id", type_=Text),
    )
    .order_by(OutboxMessage.id.desc())
    .limit(_ONE)
)

RECORD_ATTEMPT = compile_statement(
    insert(WebhookDelivery).values(
        endpoint_id=_ID,
        event_id=bindparam("event_id", type_=Uuid),
        attempt=bindparam("attempt", type_=Integer),
        status_code=bindparam("status_code", type_=Integer),
        error=bindparam("error", type_=Text),
        next_retry_at=bindparam("next_retry_at", type_=WebhookDelivery.next_retry_at.type),
    )
)
DELIVERIES = compile_statement(
    select(
        WebhookDelivery.id,
        WebhookDelivery.event_id,
        WebhookDelivery.attempt,
        WebhookDelivery.status_code,
        WebhookDelivery.error,
        WebhookDelivery.attempted_at,
        WebhookDelivery.next_retry_at,
    )
    .where(WebhookDelivery.endpoint_id == _ID)
    .order_by(WebhookDelivery.id.desc())
    .limit(bindparam("limit", type_=Integer))
)


# One batch of the deliveries log past DELIVERY_RETENTION_DAYS, oldest first.
PRUNE_DELIVERIES = expired_batch(WebhookDelivery.id, WebhookDelivery.attempted_at)
