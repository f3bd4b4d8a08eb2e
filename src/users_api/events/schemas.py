"""The audit list's query and its documented shapes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints, WithJsonSchema, field_validator

from users_api.events.writer import TYPE_FILTERS, matching_types
from users_api.users.schemas import Cursor, date_time_text, utc_bound

_TYPE_FILTERS_MAX = 30


class AuditEventQuery(BaseModel):
    """Query parameters of `GET /audit-events`; `type` may be repeated."""

    limit: Annotated[int, Field(ge=1, le=200)] = 50
    cursor: Cursor = None
    type: Annotated[
        list[
            Annotated[
                str,
                StringConstraints(max_length=64),
                WithJsonSchema({"type": "string", "enum": list(TYPE_FILTERS)}),
            ]
        ],
        Field(
            max_length=_TYPE_FILTERS_MAX,
            description="An event type (`user.created`) or a prefix (`user.*`); repeatable.",
        ),
    ] = []
    actor_id: uuid.UUID | None = None
    subject_id: uuid.UUID | None = None
    since: datetime | None = Field(default=None, description="Events at or after this time.")
    until: datetime | None = Field(default=None, description="Events before this time.")

    @field_validator("type", mode="after")
    @classmethod
    def _known_types(cls, value: list[str]) -> list[str]:
        for pattern in value:
            matching_types(pattern)  # ValueError: 422
        return value

    @field_validator("since", "until", mode="before")
    @classmethod
    def _date_time_text(cls, value: Any) -> Any:
        return date_time_text(value)

    @field_validator("since", "until", mode="after")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        return utc_bound(value)

    def types(self) -> tuple[str, ...] | None:
        """The event types the `type` filters name together (None: no filter)."""
        if not self.type:
            return None
        return tuple(sorted({name for pattern in self.type for name in matching_types(pattern)}))


class ActorOut(BaseModel):
    type: Literal["user", "scim", "system"]
    id: uuid.UUID | None


class SubjectOut(BaseModel):
    type: str
    id: uuid.UUID | None


class AuditEventOut(BaseModel):
    id: uuid.UUID
    type: str
    occurred_at: datetime
    actor: ActorOut
    subject: SubjectOut
    request_id: str | None
    ip_address: str | None
    data: dict[str, Any] = Field(description="What changed, by name; never a secret.")


class AuditEventPage(BaseModel):
    items: list[AuditEventOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page."
    )
