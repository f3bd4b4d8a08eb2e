"""Request bodies of the account endpoints."""

from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints

from users_api.users.schemas import Email, Password, RequestBody

# A mailed token is 43 characters; anything much longer is no token of ours.
Token = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class PasswordResetRequest(RequestBody):
    email: Email


class PasswordResetConfirm(RequestBody):
    token: Token
    new_password: Password


class EmailVerification(RequestBody):
    token: Token
