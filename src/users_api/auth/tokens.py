"""Access tokens (short-lived signed JWTs) and refresh tokens (opaque, stored hashed)."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

ALGORITHM = "HS256"
ISSUER = "users-api"
AUDIENCE = "users-api"
_REQUIRED_CLAIMS = ["sub", "iat", "exp", "aud", "iss", "jti", "ver"]


class InvalidToken(Exception):
    """The token is malformed, forged, expired or for someone else."""


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: uuid.UUID
    auth_version: int


@dataclass(frozen=True, slots=True)
class AccessTokens:
    """Signs and checks access tokens with one HMAC key."""

    secret: bytes
    ttl: timedelta

    def issue(self, user_id: uuid.UUID, auth_version: int, *, now: datetime | None = None) -> str:
        issued = now or datetime.now(UTC)
        claims = {
            "sub": str(user_id),
            "iat": issued,
            "exp": issued + self.ttl,
            "aud": AUDIENCE,
            "iss": ISSUER,
            "jti": uuid.uuid4().hex,
            "ver": auth_version,
        }
        return jwt.encode(claims, self.secret, algorithm=ALGORITHM)

    def verify(self, token: str) -> AccessClaims:
        """Check signature, algorithm (only HS256: never `none`), audience, issuer, expiry."""
        try:
            claims = jwt.decode(
                token,
                self.secret,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={"require": _REQUIRED_CLAIMS},
            )
            version = claims["ver"]
            if not isinstance(version, int) or isinstance(version, bool):
                raise InvalidToken
            return AccessClaims(user_id=uuid.UUID(str(claims["sub"])), auth_version=version)
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise InvalidToken from exc


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def hash_refresh_token(token: str) -> str:
    """SHA-256 is enough here: the token is 256 random bits, not a guessable password."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
