"""Authentication rules: refresh rotation with reuse detection, revocation. (Login: `login.py`.)"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value
from uuid_utils.compat import uuid7

from users_api.auth.models import RefreshToken
from users_api.auth.repository import RefreshTokenRepository
from users_api.auth.tokens import (
    AccessClaims,
    AccessTokens,
    InvalidToken,
    hash_refresh_token,
    new_refresh_token,
)
from users_api.errors import DomainError, Unauthorized
from users_api.users.models import User
from users_api.users.repository import UserRepository


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int


def refresh_token_row(
    user_id: uuid.UUID, auth_version: int, *, family_id: uuid.UUID, ttl: timedelta
) -> tuple[str, dict[str, Any]]:
    """A new refresh token, and the row that stores it (its hash, never the token)."""
    refresh = new_refresh_token()
    row = {
        "id": uuid7(),
        "token_hash": hash_refresh_token(refresh),
        "family_id": family_id,
        "user_id": user_id,
        "auth_version": auth_version,
        "expires_at": datetime.now(UTC) + ttl,
    }
    return refresh, row


def token_pair(
    tokens: AccessTokens, user_id: uuid.UUID, auth_version: int, refresh: str
) -> TokenPair:
    return TokenPair(
        access_token=tokens.issue(user_id, auth_version),
        refresh_token=refresh,
        expires_in=int(tokens.ttl.total_seconds()),
    )


class AuthService:
    def __init__(
        self,
        session: AsyncSession,
        *,
        tokens: AccessTokens,
        refresh_ttl: timedelta,
    ) -> None:
        self.session = session
        self.users = UserRepository(session)
        self.refresh_tokens = RefreshTokenRepository(session)
        self.tokens = tokens
        self.refresh_ttl = refresh_ttl

    async def authenticate(self, access_token: str) -> User:
        """The caller of a request, or Unauthorized. One primary-key read, no more."""
        claims = verified_claims(self.tokens, access_token)
        return honoured(await self.users.get(claims.user_id), claims)

    async def refresh(self, presented: str) -> TokenPair | DomainError:
        token_hash = hash_refresh_token(presented)
        seen = await self.refresh_tokens.get_by_hash(token_hash)
        # The user's row before the token's, the order a user's delete locks them in.
        if seen is None or await self.users.get_for_key_share(seen.user_id) is None:
            return Unauthorized("The refresh token is not valid.")
        token = await self.refresh_tokens.get_by_hash_for_update(token_hash)
        if token is None or token.revoked_at is not None:
            return Unauthorized("The refresh token is not valid.")
        if token.used_at is not None:
            # A used-up token presented again: someone holds a copy. Kill the whole login.
            await self.refresh_tokens.revoke_family(token.family_id)
            return Unauthorized("The refresh token was already used; this login is revoked.")
        now = datetime.now(UTC)
        if token.expires_at <= now:
            return Unauthorized("The refresh token has expired.")
        user = await self.users.get(token.user_id)
        if user is None or not user.is_active or user.auth_version != token.auth_version:
            return Unauthorized("The refresh token is not valid.")
        token.used_at = now
        return await self._issue(user, family_id=token.family_id)

    async def logout(self, presented: str) -> None:
        token = await self.refresh_tokens.get_by_hash_for_update(hash_refresh_token(presented))
        if token is not None:
            await self.refresh_tokens.revoke_family(token.family_id)

    async def logout_all(self, user: User) -> None:
        await revoke_all_tokens(self.session, user)

    async def _issue(self, user: User, *, family_id: uuid.UUID) -> TokenPair:
        refresh, row = refresh_token_row(
            user.id, user.auth_version, family_id=family_id, ttl=self.refresh_ttl
        )
        await self.refresh_tokens.add(RefreshToken(**row))
        return token_pair(self.tokens, user.id, user.auth_version, refresh)


def verified_claims(tokens: AccessTokens, access_token: str) -> AccessClaims:
    """A well-signed, unexpired token's claims, or Unauthorized. Whether they are still
    honoured (user active, `auth_version` current) is the caller's database question."""
    try:
        return tokens.verify(access_token)
    except InvalidToken:
        raise Unauthorized from None


def honoured(user: User | None, claims: AccessClaims) -> User:
    """The user the claims name while their token is honoured (active, current
    `auth_version`), else Unauthorized: deleted, deactivated, or revoked."""
    if user is None or not user.is_active or user.auth_version != claims.auth_version:
        raise Unauthorized
    return user


async def revoke_all_tokens(session: AsyncSession, user: User) -> None:
    """Bump the user's auth version: every access and refresh token issued before dies."""
    # Core UPDATE: revoking tokens changes no field a client sees, so `version` stays.
    bumped = await session.execute(
        update(User)
        .where(User.id == user.id)
        .values(auth_version=User.auth_version + 1)
        .returning(User.auth_version)
        .execution_options(synchronize_session=False)
    )
    set_committed_value(user, "auth_version", bumped.scalar_one())
