"""Request and response bodies of the Groups endpoints (input and output kept apart)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from users_api.groups.models import DISPLAY_NAME_MAX_LENGTH, EXTERNAL_ID_MAX_LENGTH
from users_api.merge_patch import document_absent_not_null, refuse_null
from users_api.texts import NO_NUL, NO_NUL_PATTERN
from users_api.users.schemas import Cursor, RequestBody, SearchText

# Trimmed before its length is checked: ` Ops` is `Ops` (and taken when `Ops` is), a name
# of spaces alone is no name (422).
DisplayName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=DISPLAY_NAME_MAX_LENGTH),
    NO_NUL,
    Field(
        description="Unique case-insensitively; its case as given is kept, leading and "
        "trailing white space is not (a name of white space alone is refused).",
        json_schema_extra={"pattern": "^[^\\x00]*$"},
    ),
]
ExternalId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=EXTERNAL_ID_MAX_LENGTH),
    NO_NUL,
    NO_NUL_PATTERN,
]


class GroupCreate(RequestBody):
    display_name: DisplayName
    external_id: ExternalId | None = None


class GroupUpdate(RequestBody):
    """A JSON merge patch: absent fields stay, `"external_id": null` clears it."""

    # `display_name` may be left out but never sent as null.
    model_config = ConfigDict(json_schema_extra=document_absent_not_null("display_name"))

    # None only stands for "absent": a null sent is refused.
    display_name: DisplayName | None = None
    external_id: ExternalId | None = None

    _reject_null = field_validator("display_name", mode="before")(refuse_null)

    def changes(self) -> dict[str, Any]:
        """The fields the client sent, and only those."""
        return self.model_dump(include=self.model_fields_set)


class GroupOut(BaseModel):
    id: uuid.UUID
    display_name: str
    external_id: str | None
    created_at: datetime
    updated_at: datetime
    version: int = Field(
        description="Starts at 1, grows by one on every change (its members' too); the ETag."
    )
    member_count: int = Field(ge=0)


class GroupPage(BaseModel):
    items: list[GroupOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page."
    )


class GroupList(BaseModel):
    """Every group of a user (a user is in few: no pages)."""

    items: list[GroupOut]


Limit = Annotated[int, Field(ge=1, le=200)]


class GroupListQuery(BaseModel):
    """Query parameters of `GET /groups`: ordered by id (creation order)."""

    limit: Limit = 50
    cursor: Cursor = None
    q: SearchText | None = Field(
        None, description="A case-insensitive substring of the display name."
    )


class MemberListQuery(BaseModel):
    """Query parameters of `GET /groups/{id}/members`: users ordered by id."""

    limit: Limit = 50
    cursor: Cursor = None
