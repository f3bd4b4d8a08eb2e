"""Request and response bodies of the Users endpoints (input and output kept apart)."""

from __future__ import annotations

import re
import unicodedata
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

import email_validator
from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from users_api.merge_patch import document_absent_not_null, refuse_null
from users_api.security.scripts import mixed_scripts
from users_api.texts import NO_NUL, NO_NUL_PATTERN

# email-validator refuses the special-use domains (RFC 6761), `.local` among them. A
# company's directory often is a `.local` domain (Active Directory's `corp.local`, whose
# names Entra and Okta provision, and Okta's own SCIM test users): kept, as a mail relay
# inside that company delivers there. `localhost`, `invalid`, `test`... stay refused. The
# library documents this list as the place to allow one.
email_validator.SPECIAL_USE_DOMAIN_NAMES[:] = [
    name for name in email_validator.SPECIAL_USE_DOMAIN_NAMES if name != "local"
]


def _normalize_email(value: str) -> str:
    """Syntax check only (no DNS); the domain is lower-cased, the local part kept.

    Compatibility forms are folded first (NFKC): a fullwidth `admin` (U+FF41...) is the
    `admin` an input method typed, and is stored, and conflicts, as `admin`. What is left
    must not mix scripts in the local part or in a label of the domain (`admin` with a
    Cyrillic a, U+0430; `example.com` with a Cyrillic e): look-alikes of another address
    are refused. A label is the unit because a domain joins names registered one by one:
    a Cyrillic name under `.com` is one script under another, as registries and browsers
    allow.
    """
    try:
        email = validate_email(unicodedata.normalize("NFKC", value), check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from exc
    for part, text in (("The part before the @", email.local_part), *_labels(email.domain)):
        if mixed := mixed_scripts(text):
            raise ValueError(
                f"{part} mixes scripts ({', '.join(mixed)}): look-alike addresses are refused"
            )
    return email.normalized


def _labels(domain: str) -> list[tuple[str, str]]:
    return [(f"The domain label {label!r}", label) for label in domain.split(".")]


# 254: the longest address email-validator (and RFC 5321's path) allows.
Email = Annotated[
    str,
    StringConstraints(max_length=254),
    AfterValidator(_normalize_email),
    Field(
        json_schema_extra={"format": "email"},
        description="Checked for syntax, not delivery; special-use domains such as "
        "`.test`, `.localhost` or `.invalid` are refused (`.local`, a company directory's "
        "domain, is not).",
    ),
]
# v2: identity providers push login names such as `ada.lovelace@contoso.com`. A username
# may equal its own user's email, never another user's (`users.queries.NAME_CLASH`).
Username = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9_.\-@+]{3,128}$"),
    Field(
        description="3-128 of `A-Z a-z 0-9 _ . - @ +`, unique case-insensitively; it may "
        "equal the user's own email, never another user's (409).",
    ),
]
FullName = Annotated[str, StringConstraints(max_length=200), NO_NUL, NO_NUL_PATTERN]
# Kept exactly as given: no stripping, no truncation. Further rules live in the service.
Password = Annotated[
    str,
    StringConstraints(min_length=12, max_length=128, strip_whitespace=False),
    Field(
        json_schema_extra={"format": "password"},
        description="Kept exactly as given. Also refused (422) when among the 10,000 most "
        "common passwords, equal to the email or username, or too easy to guess by "
        "zxcvbn's estimate (a score below 3, with the email and username as user inputs; "
        "its `score`, `warning` and `suggestions` are in the error's `ctx`).",
    ),
]
# A password an identity provider sets (SCIM): its own policy has passed it, and it is
# the password the user types at the provider, so ours does not judge it (an 8-character
# one from Okta's password sync is the user's). Bounded as any other: hashed, so kept short.
ProvidedPassword = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128, strip_whitespace=False),
    Field(json_schema_extra={"format": "password"}),
]


class RequestBody(BaseModel):
    """The base of every JSON request body (users, accounts, groups, webhooks; SCIM reads
    its own). Unknown fields are an error, never silently dropped: no mass assignment.
    Strict: a JSON body has real booleans; `"is_admin": "yes"` (or 1) is a mistake, not
    a request to make an admin."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False, strict=True)


class UserCreate(RequestBody):
    email: Email
    username: Username
    password: Password
    full_name: FullName | None = None
    is_active: bool | None = None
    is_admin: bool | None = None
    # An admin's to set (as in a PATCH): a user created verified is mailed no token.
    email_verified: bool | None = None


ExternalId = Annotated[str, StringConstraints(min_length=1, max_length=255), NO_NUL]


class ProvisionedUser(RequestBody):
    """A user an identity provider creates (SCIM): no password until one is set; its
    own id for the user, and the SCIM attributes kept as sent (`scim.mapping`)."""

    email: Email
    username: Username
    password: ProvidedPassword | None = None
    full_name: FullName | None = None
    is_active: bool | None = None
    is_admin: bool | None = None
    external_id: ExternalId | None = None
    scim: dict[str, Any] | None = None


# Only `full_name` takes null; the others may be left out but never sent as null.
_NOT_NULLABLE = (
    "email",
    "username",
    "password",
    "is_active",
    "is_admin",
    "email_verified",
    "current_password",
)


class UserUpdate(RequestBody):
    """A JSON merge patch: absent fields stay, `"full_name": null` clears the name."""

    model_config = ConfigDict(json_schema_extra=document_absent_not_null(*_NOT_NULLABLE))

    # None only stands for "absent": a null sent is refused below, and the OpenAPI
    # document does not offer it (`merge_patch`).
    email: Email | None = None
    username: Username | None = None
    full_name: FullName | None = None
    password: Password | None = None
    current_password: Annotated[str, StringConstraints(max_length=1024)] | None = None
    is_active: bool | None = None
    is_admin: bool | None = None
    email_verified: bool | None = None

    _reject_null = field_validator(*_NOT_NULLABLE, mode="before")(refuse_null)

    def changes(self) -> dict[str, Any]:
        """The fields the client sent, and only those."""
        return self.model_dump(include=self.model_fields_set - {"current_password"})


class ProvisionedUpdate(UserUpdate):
    """A change an identity provider makes (SCIM): a merge patch that may also set the
    provider's id and the kept SCIM attributes (null clears them)."""

    password: ProvidedPassword | None = None
    external_id: ExternalId | None = None
    scim: dict[str, Any] | None = None


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    username: str
    full_name: str | None
    is_active: bool
    is_admin: bool
    email_verified: bool
    # Read-only: true while the user has a confirmed second factor (the `mfa` package).
    mfa_enabled: bool
    created_at: datetime
    updated_at: datetime
    version: int


class UserPage(BaseModel):
    items: list[UserOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page."
    )


class UserSort(StrEnum):
    ID = "id"
    ID_DESC = "-id"
    CREATED_AT = "created_at"
    CREATED_AT_DESC = "-created_at"
    USERNAME = "username"
    USERNAME_DESC = "-username"
    EMAIL = "email"
    EMAIL_DESC = "-email"

    @property
    def key(self) -> str:
        return self.value.removeprefix("-")

    @property
    def descending(self) -> bool:
        return self.value.startswith("-")


SearchText = Annotated[str, StringConstraints(min_length=1, max_length=200), NO_NUL, NO_NUL_PATTERN]


def _empty_is_absent(value: Any) -> Any:
    """`cursor=` (empty) asks for the first page, as leaving it out does: what a client
    sends that puts the last `next_cursor` (null) back into its URL."""
    return None if value == "" else value


# A list's `cursor` parameter (every keyset list: users, groups, members, audit events).
Cursor = Annotated[
    Annotated[str, StringConstraints(max_length=1024)] | None, BeforeValidator(_empty_is_absent)
]

_DATE_TIME_START = re.compile(r"\d{4}-\d{2}-\d{2}")


class UserListQuery(BaseModel):
    """Query parameters of `GET /users`."""

    limit: Annotated[int, Field(ge=1, le=200)] = 50
    cursor: Cursor = None
    sort: UserSort = UserSort.ID
    q: SearchText | None = None
    email: SearchText | None = None
    username: SearchText | None = None
    is_active: bool | None = None
    is_admin: bool | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None

    @field_validator("created_after", "created_before", mode="before")
    @classmethod
    def _date_time_text(cls, value: Any) -> Any:
        return date_time_text(value)

    @field_validator("created_after", "created_before", mode="after")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        return utc_bound(value)


def date_time_text(value: Any) -> Any:
    """A query's date-time as RFC 3339 text only: pydantic would also read `0` or
    `1.5e9` as Unix seconds, which the documented `date-time` format does not allow."""
    if isinstance(value, str) and not _DATE_TIME_START.match(value):
        raise ValueError("must be an RFC 3339 date-time, such as 2026-11-22T10:00:00Z")
    return value


def utc_bound(value: datetime | None) -> datetime | None:
    """A query's time bound in UTC: a timestamp without an offset is read as UTC, the
    service's only zone.

    A bound beyond what a datetime holds once in UTC (`0001-01-01T00:00:00+14:00` is
    in year 0) is moved to the nearest one: no row is created outside years 1-9999,
    so the filter selects the same rows.
    """
    if value is None:
        return None
    try:
        return as_utc(value)
    except ValueError:
        return (
            datetime.min.replace(tzinfo=UTC)
            if value.year == 1
            else datetime.max.replace(tzinfo=UTC)
        )


def as_utc(moment: datetime) -> datetime:
    """In UTC (naive means UTC); ValueError when that falls outside years 1 to 9999."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range once converted to UTC") from None
