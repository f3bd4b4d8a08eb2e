"""Every statement about audit events, compiled once. No rules."""

from __future__ import annotations

from sqlalchemy import Text, Uuid, bindparam, insert
from sqlalchemy.dialects.postgresql import JSONB

from users_api.db.statements import compile_statement
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
