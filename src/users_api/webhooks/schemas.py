"""Bodies and queries of the webhook endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from users_api.events.writer import EVENT_TYPES
from users_api.merge_patch import document_absent_not_null, refuse_null
from users_api.texts import NO_NUL, NO_NUL_PATTERN
from users_api.users.schemas import RequestBody

# Where the document says what a schema can: an http(s) URL (public addresses only is the
# service's rule, `targets.py`), and the event patterns there are.
Url = Annotated[
    str,
    StringConstraints(min_length=1, max_length=2048),
    Field(json_schema_extra={"format": "uri", "pattern": "^https?://"}),
]
PATTERNS = ("*", *sorted({f"{kind.partition('.')[0]}.*" for kind in EVENT_TYPES}), *EVENT_TYPES)
# An event type (`user.created`), every type under a prefix (`user.*`), or all (`*`).
EventPattern = Annotated[
    str, StringConstraints(max_length=64), Field(json_schema_extra={"enum": list(PATTERNS)})
]
Events = Annotated[list[EventPattern], Field(min_length=1, max_length=64)]
Description = Annotated[str, StringConstraints(max_length=500), NO_NUL, NO_NUL_PATTERN]
# Only `description` takes null; the others may be left out, never sent as null.
_NOT_NULLABLE = ("url", "events", "enabled")


class WebhookCreate(RequestBody):
    url: Url = Field(
        description="`https://` or `http://`, to a public address; no credentials, "
        "`#fragment`, spaces or control characters (percent-encode them)."
    )
    events: Events = Field(description="Event types, `prefix.*`, or `*` for every event.")
    description: Description | None = None


class WebhookUpdate(RequestBody):
    """A merge patch: only the fields sent change; `"description": null` clears it.
    `enabled` is JSON `true` or `false`: `"yes"` or `1` is a mistake, not a request."""

    model_config = ConfigDict(json_schema_extra=document_absent_not_null(*_NOT_NULLABLE))

    url: Url | None = None
    events: Events | None = None
    description: Description | None = None
    enabled: bool | None = None

    _reject_null = field_validator(*_NOT_NULLABLE, mode="before")(refuse_null)


class WebhookOut(BaseModel):
    id: uuid.UUID
    url: str
    events: list[str]
    description: str | None
    enabled: bool
    created_at: datetime
    updated_at: datetime
    version: int


class WebhookCreated(WebhookOut):
    secret: str = Field(
        description="The signing secret (`whsec_…`, Standard Webhooks): shown this once."
    )


class WebhookList(BaseModel):
    items: list[WebhookOut]


class DeliveryOut(BaseModel):
    """One attempt to deliver one event."""

    id: int
    event_id: uuid.UUID
    attempt: int
    # Always sent; null when there is none (the document drops nulls from examples, so
    # these are not "required" there).
    status_code: int | None = Field(None, description="The receiver's status; null: no answer.")
    error: str | None = Field(None, description="What went wrong; null: delivered.")
    attempted_at: datetime
    next_retry_at: datetime | None = Field(None, description="Null: no further attempt.")


class DeliveryList(BaseModel):
    items: list[DeliveryOut]


class DeliveryQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(50, ge=1, le=200, description="How many attempts, newest first.")


class RetryAccepted(BaseModel):
    endpoint_id: uuid.UUID
    event_id: uuid.UUID
