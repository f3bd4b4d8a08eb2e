"""The rules of webhook endpoints (admins only), and the one fan-out of an event to them.

`fan_out` is called in the transaction that writes an event: one outbox message per
enabled endpoint that wants it, so an endpoint is told of an event exactly when the
event (and its change) committed. The sender delivers them (`delivery.py`).
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from typing import Any

import orjson
from uuid_utils.compat import uuid7

from users_api.db.database import Database, Record, Unit
from users_api.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from users_api.events.writer import Event, EventWriter, Fragment, matching_types, user_actor
from users_api.outbox.sender import Sender, discard, enqueue, resume
from users_api.security.mfa import SecretBox
from users_api.security.tokens import AccessClaims
from users_api.users import queries as users_q
from users_api.users.queries import caller_values
from users_api.webhooks import queries as q
from users_api.webhooks.schemas import WebhookCreate, WebhookUpdate
from users_api.webhooks.targets import RefusedTarget, Unresolvable, check_url, resolve

SECRET_PREFIX = "whsec_"  # noqa: S105  # a prefix, not a secret
SECRET_BYTES = 32
# How long a registration waits for the URL's name to resolve (then: checked when sent).
RESOLVE_SECONDS = 2.0
# The key the signing secrets are sealed under is SECRET_KEY's, for this use only.
BOX_INFO = b"users-api webhook signing secrets v1"


def sequence_key(endpoint_id: uuid.UUID) -> str:
    """The outbox sequence of an endpoint: its messages go out one at a time, in order."""
    return f"{q.KIND}:{endpoint_id}"


def patterns(event_type: str) -> list[str]:
    """Every pattern an endpoint may list that names `event_type`."""
    return [event_type, f"{event_type.partition('.')[0]}.*", "*"]


async def fan_out_event(unit: Unit, event: Event) -> None:
    """The events writer's subscriber: every event written goes to the endpoints that
    want it, in the event's transaction."""
    await fan_out(unit, event.as_json())


async def fan_out(unit: Unit, event: Mapping[str, Any]) -> None:
    """Queue `event` (JSON-ready: `id`, `type`, `occurred_at`, …) for every enabled
    endpoint that wants it, in `unit`'s transaction."""
    await unit.execute(q.FAN_OUT, **_fan_out_values(event))


def _fan_out_values(event: Mapping[str, Any]) -> dict[str, Any]:
    # orjson writes times (ISO 8601, as `isoformat`) and ids itself; other values (an
    # address) as their text.
    payload = orjson.dumps(dict(event), default=str).decode()
    return {"event": payload, "patterns": patterns(event["type"])}


# `fan_out_event` as part of the statement that writes the event (events/writer.py).
FANNING_OUT = Fragment(
    cte=lambda event: q.fan_out(event).cte("fan_out"),
    values=lambda event: _fan_out_values(event.as_json()),
)


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _check_events(events: Sequence[str]) -> list[str]:
    """Each pattern names a known type (`user.created`), a prefix of some (`user.*`), or
    every one (`*`): the audit list's filter rule, `matching_types`."""
    for index, pattern in enumerate(events):
        if pattern == "*":
            continue
        try:
            matching_types(pattern)
        except ValueError as exc:
            raise InvalidInput(loc=("body", "events", index), msg=str(exc)) from None
    return list(dict.fromkeys(events))  # each once, in the order given


@dataclass(frozen=True, slots=True)
class WebhookService:
    """Stateless, one per app."""

    db: Database
    box: SecretBox
    events: EventWriter
    _: KW_ONLY
    allow_private: bool
    outbox: Sender | None = None

    async def _admin_first(self, caller: AccessClaims) -> None:
        """Who may ask is answered before the URL is looked at (or resolved)."""

        async def check(unit: Unit) -> None:
            await _require_admin(unit, caller)

        await self.db.run(check, transaction=False)

    async def _check_url(self, url: str) -> str:
        """The registration check (`targets.py`): a name that resolves now must resolve
        to public addresses only; one that does not resolve now is checked when sent."""
        try:
            check_url(url, allow_private=self.allow_private)
            async with asyncio.timeout(RESOLVE_SECONDS):
                await resolve(url, allow_private=self.allow_private)
        except (Unresolvable, TimeoutError):
            pass
        except RefusedTarget as exc:
            raise InvalidInput(loc=("body", "url"), msg=str(exc)) from None
        return url

    async def create(self, body: WebhookCreate, *, caller: AccessClaims) -> tuple[Record, str]:
        """The new endpoint, and its signing secret (shown once, stored sealed)."""
        await self._admin_first(caller)
        url = await self._check_url(body.url)
        events = _check_events(body.events)
        endpoint_id = uuid7()
        secret = new_secret()
        sealed = self.box.seal(secret, endpoint_id)

        async def create(unit: Unit) -> Record:
            await _require_admin(unit, caller)
            # Written before the endpoint: it is not sent its own creation.
            await self._record(unit, "webhook.created", endpoint_id, caller, {"events": events})
            record = await unit.one(
                q.INSERT_ENDPOINT,
                id=endpoint_id,
                url=url,
                events=events,
                description=body.description,
                secret=sealed,
            )
            assert record is not None  # INSERT … RETURNING
            return record

        return await self.db.run(create), secret

    async def endpoints(self, *, caller: AccessClaims) -> list[Record]:
        async def read(unit: Unit) -> list[Record]:
            await _require_admin(unit, caller)
            return await unit.all(q.ENDPOINTS)

        return await self.db.run(read, transaction=False)

    async def get(self, endpoint_id: uuid.UUID, *, caller: AccessClaims) -> Record:
        async def read(unit: Unit) -> Record:
            await _require_admin(unit, caller)
            return _found(await unit.one(q.ENDPOINT, id=endpoint_id))

        return await self.db.run(read, transaction=False)

    async def update(
        self, endpoint_id: uuid.UUID, patch: WebhookUpdate, *, caller: AccessClaims
    ) -> Record:
        await self._admin_first(caller)
        fields = patch.model_fields_set
        url = await self._check_url(patch.url) if patch.url is not None else None
        events = _check_events(patch.events) if patch.events is not None else None

        async def update(unit: Unit) -> Record:
            await _require_admin(unit, caller)
            current = _found(await unit.one(q.ENDPOINT_FOR_UPDATE, id=endpoint_id))
            wanted = {  # what a PATCH may change, by the names `webhook.updated` lists
                "url": url if url is not None else current["url"],
                "events": events if events is not None else current["events"],
                "description": (
                    patch.description if "description" in fields else current["description"]
                ),
                "enabled": patch.enabled if patch.enabled is not None else current["enabled"],
            }
            changed = sorted(name for name, value in wanted.items() if value != current[name])
            if not changed:
                return current  # as a user's PATCH: no change, no new version
            record = await unit.one(q.UPDATE_ENDPOINT, id=endpoint_id, **wanted)
            assert record is not None  # the row is locked
            await self._record(unit, "webhook.updated", endpoint_id, caller, {"fields": changed})
            if record["enabled"] and not current["enabled"]:
                await resume(unit, sequence_key(endpoint_id))  # what waited, in order
                if self.outbox is not None:
                    unit.on_commit(self.outbox.wake)
            return record

        return await self.db.run(update)

    async def delete(self, endpoint_id: uuid.UUID, *, caller: AccessClaims) -> None:
        """The endpoint, its delivery log and its undelivered messages go."""

        async def delete(unit: Unit) -> None:
            await _require_admin(unit, caller)
            _found(await unit.value(q.DELETE_ENDPOINT, id=endpoint_id))
            await discard(unit, sequence_key(endpoint_id))
            await self._record(unit, "webhook.deleted", endpoint_id, caller)

        await self.db.run(delete)

    async def _record(
        self,
        unit: Unit,
        type: str,
        endpoint_id: uuid.UUID,
        caller: AccessClaims,
        data: dict[str, Any] | None = None,
    ) -> None:
        """One `webhook.*` event in the change's transaction (never the URL, which may
        carry a receiver's own token, nor the secret)."""
        await self.events.write(
            unit,
            type,
            actor=user_actor(caller.user_id),
            subject_type="webhook",
            subject_id=endpoint_id,
            data=data,
        )

    async def deliveries(
        self, endpoint_id: uuid.UUID, *, limit: int, caller: AccessClaims
    ) -> list[Record]:
        async def read(unit: Unit) -> list[Record]:
            await _require_admin(unit, caller)
            _found(await unit.one(q.ENDPOINT, id=endpoint_id))
            return await unit.all(q.DELIVERIES, id=endpoint_id, limit=limit)

        return await self.db.run(read)

    async def retry(
        self, endpoint_id: uuid.UUID, event_id: uuid.UUID, *, caller: AccessClaims
    ) -> None:
        """Send an event this endpoint was sent once again (after its earlier ones, with
        the same `webhook-id`); 409 while the endpoint is disabled."""
        key = sequence_key(endpoint_id)

        async def retry(unit: Unit) -> None:
            await _require_admin(unit, caller)
            endpoint = _found(await unit.one(q.ENDPOINT, id=endpoint_id))
            event = await unit.value(q.SENT_EVENT, sequence_key=key, event_id=str(event_id))
            if event is None:
                raise NotFound("This endpoint was never sent this event.")
            if not endpoint["enabled"]:
                raise Conflict("The endpoint is disabled; enable it first.")
            payload = {"endpoint_id": str(endpoint_id), "event": orjson.loads(event)}
            await enqueue(unit, q.KIND, payload, sequence_key=key)

        await self.db.run(retry)
        if self.outbox is not None:
            self.outbox.wake()


async def _require_admin(unit: Unit, caller: AccessClaims) -> None:
    """401 unless the token is honoured, 403 unless its user is an admin."""
    is_admin = await unit.value(users_q.CALLER_IS_ADMIN, **caller_values(caller))
    if is_admin is None:
        raise Unauthorized
    if not is_admin:
        raise Forbidden("Only an admin may manage webhooks.")


def _found(record: Any) -> Any:
    if record is None:
        raise NotFound("No webhook endpoint with this id.")
    return record
