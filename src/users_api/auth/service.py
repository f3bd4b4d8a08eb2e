"""Signing in and out: the password grant, refresh rotation with reuse detection, logout.

Each login is a session (`users.models.UserSession`): its refresh tokens are one family
(the session's id), its access tokens carry the id (`sid`), and ending the session
(logout, the reuse of a used-up refresh token, logout-all) ends every one of them.

A login is one transaction of short statements around an argon2 verification that
takes tens of milliseconds on a worker thread. What runs on the event loop shares the
CPU with that hash, and each round trip wakes the loop (~180 µs of CPU here), so a
login that succeeds is five: BEGIN, the account with its lock, the throttle's count,
the session and its refresh token with the check that the account still holds (one
statement), COMMIT.

The account's advisory lock is held from before the throttle's count until the commit,
so racing attempts on one account are counted one by one: no burst of parallel guesses
gets past the limit. Failures are returned, not raised, so that the transaction commits
what they record (a failed login, an ended session).
"""

from __future__ import annotations

import uuid
from dataclasses import KW_ONLY, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from uuid_utils.compat import uuid7

from users_api.auth import queries as q
from users_api.db.database import Database, Unit
from users_api.db.statements import Statement
from users_api.errors import (
    DomainError,
    EmailNotVerified,
    InvalidCredentials,
    TooManyAttempts,
    Unauthorized,
)
from users_api.security.passwords import HashingTurn, Passwords
from users_api.security.tokens import (
    AccessClaims,
    AccessTokens,
    hash_refresh_token,
    new_refresh_token,
)
from users_api.throttle.service import LoginThrottle
from users_api.users.models import USER_AGENT_MAX_LENGTH


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int


@dataclass(frozen=True, slots=True)
class Client:
    """What a session keeps of the client that signs in."""

    address: str
    user_agent: str | None

    def stored(self) -> dict[str, str | None]:
        """The session's columns: the User-Agent bounded, and without NUL (which
        PostgreSQL text cannot hold)."""
        agent = self.user_agent
        if agent is not None:
            agent = agent.replace("\x00", "")[:USER_AGENT_MAX_LENGTH]
        return {"ip_address": self.address, "user_agent": agent}


_INVALID_REFRESH = "The refresh token is not valid."


@dataclass(frozen=True, slots=True)
class AuthService:
    """Stateless, one per app."""

    db: Database
    _: KW_ONLY
    passwords: Passwords
    tokens: AccessTokens
    refresh_ttl: timedelta
    throttle: LoginThrottle
    # REQUIRE_VERIFIED_EMAIL: the right password of an unverified user is refused (403).
    require_verified_email: bool = False

    async def login(self, name: str, password: str, *, client: Client) -> TokenPair | DomainError:
        """Tokens of a new session, or the error to answer with.

        A hashing thread first, a connection second (`Passwords.turn`): queued logins
        hold no connection.
        """
        async with self.passwords.turn() as hashing:

            async def attempt(unit: Unit) -> TokenPair | DomainError:
                return await self._attempt(unit, hashing, name, password, client=client)

            return await self.db.run(attempt)

    async def _attempt(
        self, unit: Unit, hashing: HashingTurn, name: str, password: str, *, client: Client
    ) -> TokenPair | DomainError:
        address = client.address
        user = await unit.one(q.account(name), login=name)
        assert user is not None  # one row always
        account_key: str = user["account_key"]
        wait = await self.throttle.wait(unit, account_key=account_key, address=address)
        if wait is not None:
            return TooManyAttempts(wait)
        if user["id"] is None:
            await hashing.verify_dummy(password)
            ok = False
        else:
            ok, new_hash = await hashing.verify_and_update(password, user["password_hash"])
            if ok and new_hash is not None:
                await unit.execute(q.STORE_REHASH, user_id=user["id"], password_hash=new_hash)
        if user["id"] is None or not ok or not user["is_active"]:
            await self.throttle.record_failure(unit, account_key=account_key, address=address)
            return InvalidCredentials()
        if self.require_verified_email and not user["email_verified"]:
            return EmailNotVerified()  # only now: the right password reveals nothing new
        session = {"session_id": uuid7(), **client.stored()}
        pair = await self._issue(unit, q.START_SESSION, user["id"], user["auth_version"], session)
        return pair or InvalidCredentials()  # deactivated or given a new password meanwhile

    async def refresh(self, presented: str) -> TokenPair | DomainError:
        token_hash = hash_refresh_token(presented)

        async def rotate(unit: Unit) -> TokenPair | DomainError:
            if await unit.value(q.LOCK_TOKEN_HOLDER, token_hash=token_hash) is None:
                return Unauthorized(_INVALID_REFRESH)
            token = await unit.one(q.TOKEN_FOR_UPDATE, token_hash=token_hash)
            if token is None or token["ended"]:
                return Unauthorized(_INVALID_REFRESH)
            session = {"session_id": token["family_id"]}
            if token["used_at"] is not None:
                # A used-up token presented again: someone holds a copy. End the session,
                # and with it every token of it, access tokens included.
                await unit.execute(q.END_SESSION, **session)
                return Unauthorized("The refresh token was already used; this login is revoked.")
            if token["expired"]:
                return Unauthorized("The refresh token has expired.")
            await unit.execute(q.USE_UP_TOKEN, id=token["id"], **session)
            pair = await self._issue(
                unit, q.STORE_REFRESH_TOKEN, token["user_id"], token["auth_version"], session
            )
            return pair or Unauthorized(_INVALID_REFRESH)

        return await self.db.run(rotate)

    async def logout(self, presented: str) -> None:
        """That token's session ends, and every token of it (an unknown token changes
        nothing)."""

        async def revoke(unit: Unit) -> None:
            await unit.execute(q.END_SESSION_OF_TOKEN, token_hash=hash_refresh_token(presented))

        await self.db.run(revoke, transaction=False)

    async def logout_all(self, caller: AccessClaims) -> None:
        """Every session of the caller ends: every token dies, access tokens included."""

        async def revoke(unit: Unit) -> None:
            bumped = await unit.value(
                q.REVOKE_CALLER_TOKENS,
                caller_id=caller.user_id,
                auth_version=caller.auth_version,
                session_id=caller.session_id,
            )
            if bumped is None:
                raise Unauthorized

        await self.db.run(revoke, transaction=False)

    async def _issue(
        self,
        unit: Unit,
        statement: Statement,
        user_id: uuid.UUID,
        auth_version: int,
        session: dict[str, Any],
    ) -> TokenPair | None:
        """A new pair of the session, if the user still holds `auth_version` (None if
        not). `statement` stores the refresh token: `START_SESSION` with the session's
        row at a login, `STORE_REFRESH_TOKEN` (while the session lives) at a refresh."""
        refresh = new_refresh_token()
        row: dict[str, Any] = {
            "id": uuid7(),
            "token_hash": hash_refresh_token(refresh),
            "expires_at": datetime.now(UTC) + self.refresh_ttl,
            **session,
        }
        stored = await unit.value(statement, **row, caller_id=user_id, auth_version=auth_version)
        if stored is None:
            return None
        return TokenPair(
            access_token=self.tokens.issue(user_id, auth_version, session["session_id"]),
            refresh_token=refresh,
            expires_in=int(self.tokens.ttl.total_seconds()),
        )
