"""Bodies of the MFA endpoints."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

# A TOTP code (6 digits) or a recovery code (`xxxx-xxxx-xxxx-xxxx`), with room for spaces.
Code = Annotated[str, StringConstraints(min_length=1, max_length=64)]
# As the token endpoint bounds a password.
CurrentPassword = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
MfaToken = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class PasswordRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    current_password: CurrentPassword


class CodeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: Code


class PasswordAndCodeRequest(BaseModel):
    """A recovery code may stand for `code`."""

    model_config = ConfigDict(extra="forbid")

    current_password: CurrentPassword
    code: Code


class VerifyRequest(BaseModel):
    """The second step of a sign-in (JSON or form): a TOTP code or a recovery code."""

    model_config = ConfigDict(extra="forbid")

    mfa_token: MfaToken
    code: Code


class Enrolment(BaseModel):
    """A new TOTP secret, pending until confirmed with a code."""

    secret: str
    otpauth_uri: str


class RecoveryCodesOut(BaseModel):
    """Ten single-use codes, shown this once (only their hashes are kept)."""

    recovery_codes: list[str]
