"""Delivery of one queued event to one endpoint: the outbox's handler for `webhook` rows.

Each attempt POSTs `{"type", "timestamp", "data": <the event>}` signed the Standard
Webhooks way (the `standardwebhooks` library: `webhook-id` is the event's id on every
attempt, `webhook-timestamp` the attempt's time, `webhook-signature` HMAC-SHA256 over
both and the body) to the address `targets.resolve` checked, and records the attempt.

A 2xx ends it. A 5xx, 408, 429, a timeout, a refused or broken connection, or a target
refused at send time is tried again after WEBHOOK_RETRY_SCHEDULE's wait for that
attempt (±20 % jitter; the sender's lease keeps it from every other sender meanwhile);
any other answer (a 3xx, a 4xx) is final: the receiver refused this event. After
WEBHOOK_MAX_ATTEMPTS failed attempts the endpoint is disabled. The outbox delivers an
endpoint's messages one at a time in order (one sequence per endpoint), so a later
event waits while an earlier one is being retried.

A disabled endpoint loses nothing already queued for it: the event whose last attempt
disabled it, and every one behind it, are held (`Parked`) and go out in order once an
admin enables the endpoint again (`WebhookService.update`). Events that happen while it
is disabled are not queued for it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from standardwebhooks import Webhook

from users_api import __version__
from users_api.db.database import Database, Record, Unit
from users_api.events.writer import SYSTEM, EventWriter
from users_api.ids import parse_uuid
from users_api.lean import leaving_out
from users_api.metrics import count_webhook_delivery
from users_api.outbox.sender import Parked, RetryAfter
from users_api.security.mfa import SecretBox
from users_api.webhooks import queries as q
from users_api.webhooks.targets import RefusedTarget, Target, resolve

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

JITTER = 0.2
# Answers worth trying again besides 5xx: the receiver timed out, or asked for less.
_RETRYABLE = frozenset({408, 429})
MAX_ERROR_LENGTH = 500
DISABLED = "the webhook endpoint is disabled; its events wait until it is enabled"


def wait_after(attempt: int, schedule: Sequence[float]) -> timedelta:
    """The wait after the `attempt`-th failed attempt: the schedule's, ±20 % jitter (the
    last wait repeats when attempts outnumber it)."""
    seconds = schedule[min(attempt, len(schedule)) - 1]
    return timedelta(seconds=seconds * random.uniform(1 - JITTER, 1 + JITTER))  # noqa: S311  # jitter, no secret


def body(event: Mapping[str, Any]) -> bytes:
    """What is POSTed and signed: the event with its type and time beside it."""
    document = {"type": event["type"], "timestamp": event["occurred_at"], "data": event}
    return json.dumps(document, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class Outcome:
    status_code: int | None
    error: str | None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def retryable(self) -> bool:
        code = self.status_code
        return code is None or code >= 500 or code in _RETRYABLE

    def label(self, *, retried: bool, disabled: bool) -> str:
        """The attempt in `users_api_webhook_deliveries_total`: `delivered`, `failed` (another
        attempt is due), `disabled` (the last one, and the endpoint with it) or `rejected`
        (an answer that no retry would change, such as 400: the event is dropped)."""
        if self.delivered:
            return "delivered"
        if retried:
            return "failed"
        return "disabled" if disabled else "rejected"


@dataclass(slots=True)
class WebhookSender:
    """One per app; its client's connections are closed with the app (`close`)."""

    db: Database
    box: SecretBox
    schedule: Sequence[float]
    max_attempts: int
    allow_private: bool
    timeout: float
    # Writes `webhook.disabled` when an endpoint is disabled, in that transaction.
    events: EventWriter | None = None
    _client: httpx.AsyncClient | None = field(default=None, repr=False)

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            # Loaded by the first attempt: ~1.7 MiB that a worker which sends no webhook
            # never needs. Without its command-line client's pygments and rich.
            with leaving_out("pygments", "rich"):
                import httpx

            # No proxies from the environment (the address checked is the one reached),
            # no redirects (a 3xx could point anywhere), a bound on every phase, and no
            # kept connections: they are pooled by address, and one whose TLS was checked
            # for one name must not carry another name's request.
            self._client = httpx.AsyncClient(
                # Each phase's bound past the attempt's (`attempt`): that one ends it.
                timeout=httpx.Timeout(self.timeout + 1),
                limits=httpx.Limits(max_keepalive_connections=0),
                follow_redirects=False,
                trust_env=False,
                headers={"user-agent": f"users-api-webhooks/{__version__}"},
            )
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def deliver(self, payload: Mapping[str, Any], attempt: int) -> None:
        """The outbox handler: one attempt, recorded; RetryAfter when another is due."""
        endpoint_id = parse_uuid(payload["endpoint_id"])
        event = payload["event"]
        endpoint = await self.db.run(_endpoint(endpoint_id), transaction=False)
        if endpoint is None:
            log.info("webhook endpoint %s is gone: event not sent", endpoint_id)
            return
        if not endpoint["enabled"]:
            raise Parked(DISABLED)
        secret, current = self.box.open(endpoint["secret"], endpoint_id)
        if not current:  # sealed under MFA_PREVIOUS_SECRET_KEY: seal it under SECRET_KEY
            sealed = self.box.seal(secret, endpoint_id)
            await self.db.run(_reseal(endpoint_id, sealed), transaction=False)
        outcome = await self.attempt(endpoint["url"], secret, event)
        again = not outcome.delivered and outcome.retryable
        last = attempt >= self.max_attempts
        wait = wait_after(attempt, self.schedule) if again and not last else None
        disable = again and last
        await self.db.run(self._record(endpoint_id, event, attempt, outcome, wait, disable=disable))
        count_webhook_delivery(outcome.label(retried=wait is not None, disabled=disable))
        if wait is not None:
            raise RetryAfter(outcome.error or "not delivered", wait)
        if disable:
            raise Parked(DISABLED)
        if not outcome.delivered:
            log.warning(
                "webhook event %s to endpoint %s failed for good (attempt %d): %s",
                event["id"],
                endpoint_id,
                attempt,
                outcome.error,
            )

    async def attempt(self, url: str, secret: str, event: Mapping[str, Any]) -> Outcome:
        """POST the signed event once, to the address checked now."""
        content = body(event)
        now = datetime.now(UTC)
        message_id = str(event["id"])
        signature = Webhook(secret).sign(message_id, now, content)
        try:
            async with asyncio.timeout(self.timeout):
                target = await resolve(url, allow_private=self.allow_private)
        except RefusedTarget as exc:
            return Outcome(None, f"refused: {exc}"[:MAX_ERROR_LENGTH])
        except TimeoutError:
            return Outcome(None, "the URL's name did not resolve in time")
        headers = {
            "host": target.host_header(),
            "content-type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature,
        }
        # TLS is checked against the name, though the connection goes to the address.
        extensions: dict[str, Any] = (
            {"sni_hostname": target.host} if url.startswith("https:") else {}
        )
        try:
            # The whole attempt within the timeout, every address and a receiver that
            # drips its answer byte by byte included.
            async with asyncio.timeout(self.timeout):
                return await self._post(target, content, headers, extensions)
        except TimeoutError:
            return Outcome(None, f"no answer within {self.timeout:g} s")

    async def _post(
        self,
        target: Target,
        content: bytes,
        headers: dict[str, str],
        extensions: dict[str, Any],
    ) -> Outcome:
        client = self.client()
        import httpx  # loaded by `client()`

        response: httpx.Response | None = None
        failure: Exception | None = None
        for address in target.addresses:  # the next one only when one refuses
            request = client.build_request(
                "POST",
                target.request_url(address),
                content=content,
                headers=headers,
                extensions=extensions,
            )
            try:
                # Streamed and not read: a receiver's answer can be as large as it likes.
                response = await client.send(request, stream=True)
                await response.aclose()
                break
            except httpx.ConnectError as exc:
                failure = exc
            except httpx.HTTPError as exc:
                return Outcome(None, _describe(exc))
        if response is None:
            return Outcome(None, _describe(failure) if failure else "no address")
        error = None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
        return Outcome(response.status_code, error)

    def _record(
        self,
        endpoint_id: uuid.UUID,
        event: Mapping[str, Any],
        attempt: int,
        outcome: Outcome,
        wait: timedelta | None,
        *,
        disable: bool,
    ) -> Callable[[Unit], Awaitable[None]]:
        async def record(unit: Unit) -> None:
            await unit.execute(
                q.RECORD_ATTEMPT,
                id=endpoint_id,
                event_id=parse_uuid(str(event["id"])),
                attempt=attempt,
                status_code=outcome.status_code,
                error=outcome.error,
                next_retry_at=None if wait is None else datetime.now(UTC) + wait,
            )
            if not disable:
                return
            disabled = await unit.value(q.DISABLE_ENDPOINT, id=endpoint_id)
            if disabled is not None:
                log.warning("webhook endpoint %s disabled after %d attempts", endpoint_id, attempt)
                if self.events is not None:
                    await self.events.write(
                        unit,
                        "webhook.disabled",
                        actor=SYSTEM,
                        subject_type="webhook",
                        subject_id=endpoint_id,
                        data={"attempts": attempt, "error": outcome.error},
                    )

        return record


def _reseal(endpoint_id: uuid.UUID, sealed: bytes) -> Callable[[Unit], Awaitable[None]]:
    async def reseal(unit: Unit) -> None:
        await unit.execute(q.RESEAL, id=endpoint_id, secret=sealed)

    return reseal


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:MAX_ERROR_LENGTH]


def _endpoint(endpoint_id: uuid.UUID) -> Callable[[Unit], Awaitable[Record | None]]:
    async def read(unit: Unit) -> Record | None:
        return await unit.one(q.ENDPOINT_FOR_SENDING, id=endpoint_id)

    return read
