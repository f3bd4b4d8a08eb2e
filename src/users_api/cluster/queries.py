"""Every lease statement, compiled once. No rules."""

from __future__ import annotations

from sqlalchemy import Boolean, Interval, String, bindparam, func, or_
from sqlalchemy.dialects.postgresql import insert

from users_api.cluster.models import ClusterLease
from users_api.db.statements import compile_statement

_new = insert(ClusterLease).values(
    name=bindparam("name", type_=String),
    holder=bindparam("holder", type_=String),
    expires_at=func.now() + bindparam("seconds", type_=Interval),
)
# The lease `name` for `seconds`, in one statement (so through any pooler): taken when
# free or run out, kept (renewed) when `renew` and already ours; a row back means ours.
TAKE = compile_statement(
    _new.on_conflict_do_update(
        index_elements=[ClusterLease.name],
        set_={"holder": _new.excluded.holder, "expires_at": _new.excluded.expires_at},
        where=or_(
            ClusterLease.expires_at <= func.now(),
            bindparam("renew", type_=Boolean) & (ClusterLease.holder == _new.excluded.holder),
        ),
    ).returning(ClusterLease.holder)
)
