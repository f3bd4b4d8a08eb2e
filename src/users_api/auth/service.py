"""Authentication rules: login, refresh rotation with reuse detection, revocation."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from users_api.auth.models import RefreshToken
from users_api.auth.passwords import Passwords
from users_api.auth.repository import RefreshTokenRepository
from users_api.auth.throttle import LoginThrottle, ThrottleRules
from users_api.auth.tokens import (
    AccessClaims,
    AccessTokens,
    InvalidToken,
    hash_refresh_token,
    new_refresh_token,
)
from users_api.errors import DomainError, InvalidCredentials, TooManyAttempts, Unauthorized
from users_api.users.models import User
from users_api.users.repository import UserRepository


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int


class AuthService:
    def __init__(
        self,
        session: AsyncSession,
        *,
        passwords: Passwords,
        tokens: AccessTokens,
        refresh_ttl: timedelta,
        throttle: ThrottleRules,
    ) -> None:
        self.session = session
        self.users = UserRepository(session)
        self.refresh_tokens = RefreshTokenRepository(session)
        self.throttle = LoginThrottle(session, throttle)
        self.passwords = passwords
        self.tokens = tokens
        self.refresh_ttl = refresh_ttl

    async def authenticate(self, access_token: str) -> User:
        """The caller of a request, or Unauthorized. One primary-key read, no more."""
        claims = verified_claims(self.tokens, access_token)
        return honoured(await self.users.get(claims.user_id), claims)

    async def login(
        self, identifier: str, password: str, *, address: str
    ) -> TokenPair | DomainError:
        """Tokens, or the error to answer with.

        Failures are returned rather than raised so the request's transaction commits
        the recorded failure that the throttle counts.
        """
        user = await self.users.get_by_login(identifier)
        account_key = f"user:{user.id}" if user else f"name:{identifier.lower()}"
        await self.throttle.serialize(account_key)
        retry_after = await self.throttle.retry_after(account_key=account_key, address=address)
        if retry_after is not None:
            return TooManyAttempts(retry_after)
        if user is None:
            await self.passwords.verify_dummy(password)
            ok = False
        else:
            ok, new_hash = await self.passwords.verify_and_update(password, user.password_hash)
            if ok and new_hash is not None:
                await self._store_rehash(user, new_hash)
        if user is None or not ok or not user.is_active:
            await self.throttle.record_failure(account_key=account_key, address=address)
            return InvalidCredentials()
        # Deleted or deactivated while the password was being checked: no tokens.
        user = await self.users.get_for_key_share(user.id)
        if user is None or not user.is_active:
            return InvalidCredentials()
        return await self._issue(user, family_id=uuid.uuid4())

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
        refresh = new_refresh_token()
        await self.refresh_tokens.add(
            RefreshToken(
                token_hash=hash_refresh_token(refresh),
                family_id=family_id,
                user_id=user.id,
                auth_version=user.auth_version,
                expires_at=datetime.now(UTC) + self.refresh_ttl,
            )
        )
        return TokenPair(
            access_token=self.tokens.issue(user.id, user.auth_version),
            refresh_token=refresh,
            expires_in=int(self.tokens.ttl.total_seconds()),
        )

    async def _store_rehash(self, user: User, new_hash: str) -> None:
        # Core UPDATE: the same password under new parameters is no change of the user,
        # so neither `version` (the ETag) nor `auth_version` moves.
        await self.session.execute(
            update(User)
            .where(User.id == user.id)
            .values(password_hash=new_hash)
            .execution_options(synchronize_session=False)
        )
        set_committed_value(user, "password_hash", new_hash)


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
