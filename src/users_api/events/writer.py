"""The one writer of audit events, and the hook that fans them out (webhooks).

Every service calls `EventWriter.write` with the `Unit` of the change it records, so the
event commits with the change and rolls back with it. Who asked (the request id and the
client's address) is read from the request's context (`http.request_id`,
`http.client`), not handed down every signature; outside a request (the CLI, start-up,
background tasks) both are None.

Subscribers (`EventWriter.subscribe`) are called right after each event is written, in
the same transaction, with the same `Unit`: what they write (a webhook's outbox rows)
exists exactly when the event does. A subscriber that raises rolls the change back.

A subscriber may also come with a `Fragment`: the same work as a CTE of the statement
that makes the change (`queries.recording`). When every subscriber has one, a change
that is one statement (a profile PATCH) writes itself, its event and the fan-out in one
round trip, with no transaction around it (`EventWriter.folded`); the rows written are
the same either way.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal

import orjson
from sqlalchemy import CTE
from uuid_utils.compat import uuid7

from users_api.db.database import Unit
from users_api.events import queries as q
from users_api.http.client import current_address
from users_api.http.request_id import current_request_id
from users_api.metrics import count_event
from users_api.timestamps import rfc3339

ActorType = Literal["user", "scim", "system"]

# Contract, "Audit events and webhooks": every type there is.
EVENT_TYPES: tuple[str, ...] = (
    "user.created",
    "user.updated",
    "user.deleted",
    "user.activated",
    "user.deactivated",
    "user.password_changed",
    "user.password_reset",
    "user.email_verified",
    "user.mfa_enabled",
    "user.mfa_disabled",
    "auth.login_succeeded",
    "auth.login_failed",
    "auth.login_throttled",
    "auth.refresh_reused",
    "auth.session_ended",
    "group.created",
    "group.updated",
    "group.deleted",
    "group.member_added",
    "group.member_removed",
    "scim_token.created",
    "scim_token.revoked",
    # Beyond the contract's list: endpoints are changes of state too.
    "webhook.created",
    "webhook.updated",
    "webhook.deleted",
    "webhook.disabled",
)
_KNOWN = frozenset(EVENT_TYPES)
# What a `type` filter may name: a type, or every type of a prefix (`user.*`).
TYPE_FILTERS: tuple[str, ...] = (
    *EVENT_TYPES,
    *dict.fromkeys(f"{name.partition('.')[0]}.*" for name in EVENT_TYPES),
)

# What an event's data may never hold, at any depth: a key naming a secret is a bug.
_SECRET_KEYS = frozenset(
    {
        "password",
        "current_password",
        "password_hash",
        "hash",
        "token",
        "access_token",
        "refresh_token",
        "mfa_token",
        "token_hash",
        "secret",
        "code",
        "codes",
        "recovery_codes",
    }
)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who made the change: a user (by token), a SCIM client (its token's id), or the
    system (the CLI, start-up, the service's own tasks)."""

    type: ActorType
    id: uuid.UUID | None = None


SYSTEM = Actor("system")


def user_actor(user_id: uuid.UUID | None) -> Actor:
    return Actor("user", user_id)


@dataclass(frozen=True, slots=True)
class Event:
    """An event as written: its row, and the contract's JSON shape (`as_json`)."""

    id: uuid.UUID
    type: str
    occurred_at: datetime
    actor: Actor
    subject_type: str
    subject_id: uuid.UUID | None
    request_id: str | None
    ip_address: str | None
    data: Mapping[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The contract's shape, JSON-ready (ids and times as strings): the audit list's
        items and a webhook's `data`."""
        return {
            "id": str(self.id),
            "type": self.type,
            "occurred_at": rfc3339(self.occurred_at),
            "actor": {
                "type": self.actor.type,
                "id": None if self.actor.id is None else str(self.actor.id),
            },
            "subject": {
                "type": self.subject_type,
                "id": None if self.subject_id is None else str(self.subject_id),
            },
            "request_id": self.request_id,
            "ip_address": self.ip_address,
            "data": dict(self.data),
        }


# Called with the change's unit and the event just written, in its transaction.
Subscriber = Callable[[Unit, Event], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Fragment:
    """A subscriber's work as part of the statement that writes the event: its CTE over
    the event's CTE (`queries.recording`), and the values it binds for an event."""

    cte: Callable[[CTE], CTE]
    values: Callable[[Event], dict[str, Any]]


# A front that acts for someone else than the service can tell (SCIM: the token's id)
# says so around its calls (`acting_as`); it then stands for the actor of every event.
_ACTING: ContextVar[Actor | None] = ContextVar("acting_as", default=None)


@contextmanager
def acting_as(actor: Actor) -> Iterator[None]:
    """Record `actor` as the actor of every event written inside (e.g. the SCIM front,
    around the user service's calls)."""
    token = _ACTING.set(actor)
    try:
        yield
    finally:
        _ACTING.reset(token)


def matching_types(pattern: str) -> tuple[str, ...]:
    """The known types a filter names: one type, or every type of a prefix `user.*`.
    ValueError when it names none."""
    if pattern.endswith(".*"):
        prefix = pattern[:-1]
        found = tuple(name for name in EVENT_TYPES if name.startswith(prefix))
    else:
        found = (pattern,) if pattern in _KNOWN else ()
    if not found:
        raise ValueError(f"{pattern!r} is no event type, nor a prefix of one like 'user.*'")
    return found


class EventWriter:
    """One per app (and one per CLI command): writes events, then calls its subscribers."""

    __slots__ = ("_fragments", "_subscribers")

    def __init__(
        self,
        subscribers: tuple[Subscriber, ...] = (),
        fragments: Mapping[Subscriber, Fragment] | None = None,
    ) -> None:
        self._subscribers: list[Subscriber] = list(subscribers)
        self._fragments: dict[Subscriber, Fragment] = dict(fragments or {})

    def subscribe(self, subscriber: Subscriber) -> None:
        """Call `subscriber` after every event, in the event's transaction (webhooks)."""
        self._subscribers.append(subscriber)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.remove(subscriber)

    @property
    def folded(self) -> tuple[Fragment, ...] | None:
        """The subscribers as fragments of a change's statement; None when one of them can
        only be called (then the change writes its event with `write`, in a transaction)."""
        fragments = tuple(self._fragments.get(subscriber) for subscriber in self._subscribers)
        return None if None in fragments else fragments  # type: ignore[return-value]

    def event(
        self,
        type: str,
        *,
        actor: Actor,
        subject_type: str,
        subject_id: uuid.UUID | None,
        data: Mapping[str, Any] | None = None,
    ) -> Event:
        """The event to write: `data` holds what changed by name (never a password, hash,
        token or secret: a key naming one raises, as the bug it is). Its time is the
        clock that also orders its id (UUIDv7)."""
        if type not in _KNOWN:
            raise ValueError(f"unknown event type {type!r}")
        payload = dict(data or {})
        _refuse_secrets(payload)
        return Event(
            id=uuid7(),
            type=type,
            occurred_at=datetime.now(UTC),
            actor=_ACTING.get() or actor,
            subject_type=subject_type,
            subject_id=subject_id,
            request_id=current_request_id(),
            ip_address=current_address(),
            data=payload,
        )

    async def write(
        self,
        unit: Unit,
        type: str,
        *,
        actor: Actor,
        subject_type: str,
        subject_id: uuid.UUID | None,
        data: Mapping[str, Any] | None = None,
    ) -> Event:
        """Write one event in `unit`'s transaction, and hand it to the subscribers: as
        parts of the event's own statement when each has a fragment (the webhook
        fan-out), else called one after the other."""
        event = self.event(
            type, actor=actor, subject_type=subject_type, subject_id=subject_id, data=data
        )
        fragments = self.folded
        if fragments:
            statement = q.inserting(tuple(fragment.cte for fragment in fragments))
            await unit.execute(statement, **self.folded_values(event, fragments))
        else:
            await unit.execute(q.INSERT_EVENT, **event_values(event))
            for subscriber in self._subscribers:
                await subscriber(unit, event)
        self.written(unit, event)
        return event

    def folded_values(self, event: Event, fragments: tuple[Fragment, ...]) -> dict[str, Any]:
        """What a statement built by `queries.recording` with `fragments` binds for `event`."""
        values = event_values(event)
        for fragment in fragments:
            values.update(fragment.values(event))
        return values

    def written(self, unit: Unit, event: Event) -> None:
        """Count `event` once its change commits (`users_api_events_written_total`): an
        event rolled back, or written by an attempt that is retried, was never written."""
        unit.on_commit(partial(count_event, event.type))


def event_values(event: Event) -> dict[str, Any]:
    """The event's row, as `queries.INSERT_EVENT` and `queries.recording` bind it."""
    return {
        "event_id": event.id,
        "event_type": event.type,
        "event_occurred_at": event.occurred_at,
        "event_actor_type": event.actor.type,
        "event_actor_id": event.actor.id,
        "event_subject_type": event.subject_type,
        "event_subject_id": event.subject_id,
        "event_request_id": event.request_id,
        "event_ip_address": event.ip_address,
        "event_data": orjson.dumps(dict(event.data)).decode(),
    }


def _refuse_secrets(data: Any) -> None:
    if isinstance(data, Mapping):
        for key, value in data.items():
            if str(key).lower() in _SECRET_KEYS:
                raise ValueError(f"an event's data may not hold {key!r}")
            _refuse_secrets(value)
    elif isinstance(data, list | tuple):
        for value in data:
            _refuse_secrets(value)


def build_writer() -> EventWriter:
    """The app's and the CLI's writer: the one place where subscribers are attached, so
    every front fans its events out alike."""
    from users_api.webhooks.service import FANNING_OUT, fan_out_event  # webhooks build on events

    return EventWriter((fan_out_event,), {fan_out_event: FANNING_OUT})
