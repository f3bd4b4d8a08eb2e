"""Bodies of the authentication endpoints."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints

RefreshTokenText = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class LoginForm(BaseModel):
    """The form of the OAuth2 password grant; bounded so a huge form is refused early.

    Other fields (`grant_type`, `scope`, `client_id`) are ignored, as OAuth2 clients send
    them. No username or email holds a NUL, and PostgreSQL cannot even compare text
    with one.
    """

    username: Annotated[str, StringConstraints(min_length=1, max_length=320, pattern=r"^[^\x00]*$")]
    password: Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105  # the OAuth2 token type, not a secret
    expires_in: int
    refresh_token: str


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: RefreshTokenText
