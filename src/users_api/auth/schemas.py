"""Bodies of the authentication endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, RootModel, StringConstraints

# Bounded so a huge body is refused early, yet long enough that anything shaped like one
# of our tokens, an access token included, is answered as the invalid refresh token it
# is (401), not as malformed input.
RefreshTokenText = Annotated[str, StringConstraints(min_length=1, max_length=4096)]


class LoginForm(BaseModel):
    """The form of the OAuth2 password grant; bounded so a huge form is refused early.

    `grant_type`, when sent, is `password` (the route answers any other value before
    this form is read). Other fields (`scope`, `client_id`) are ignored, as OAuth2
    clients send them. No username or email holds a NUL, and PostgreSQL cannot even
    compare text with one.
    """

    grant_type: Literal["password"] | None = None
    username: Annotated[str, StringConstraints(min_length=1, max_length=320, pattern=r"^[^\x00]*$")]
    password: Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class RefreshGrantForm(BaseModel):
    """The form of the OAuth2 refresh grant (RFC 6749 §6); `scope` and `client_id` are
    ignored, as for the password grant."""

    grant_type: Literal["refresh_token"]
    refresh_token: RefreshTokenText


class TokenForm(RootModel[LoginForm | RefreshGrantForm]):
    """What the token endpoint takes: either grant, told apart by `grant_type`."""


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105  # the OAuth2 token type, not a secret
    expires_in: int
    refresh_token: str


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: RefreshTokenText


class SessionOut(BaseModel):
    """One live session (a device): when it began and was last used (login or refresh),
    what the client said it was, and whether the caller's token is of it."""

    id: uuid.UUID
    created_at: datetime
    last_used_at: datetime
    user_agent: str | None
    ip_address: str | None
    current: bool


class SessionList(BaseModel):
    items: list[SessionOut]
