"""Signing in and out: the password grant (and its second step when MFA is on), refresh
rotation with reuse detection, logout, and the caller's sessions (list, end one).

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
gets past the limit. With MFA on, the right password starts a challenge (`mfa_token`)
instead of a session; its second step (`verify_mfa`) is answered under the same lock
and throttle, and starts the session as a login does. Failures are returned, not
raised, so that the transaction commits what they record (a failed login, an ended
session).
"""

from __future__ import annotations

import uuid
from dataclasses import KW_ONLY, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from uuid_utils.compat import uuid7

from users_api.auth import queries as q
from users_api.db.database import Database, Record, Unit
from users_api.db.statements import Statement
from users_api.errors import (
    DomainError,
    EmailNotVerified,
    InvalidCredentials,
    InvalidMfaToken,
    MfaRequired,
    NotFound,
    TooManyAttempts,
    Unauthorized,
    WrongCode,
)
from users_api.events.writer import EventWriter, user_actor
from users_api.metrics import count_login
from users_api.mfa import queries as mfa_q
from users_api.mfa.service import SecondFactor
from users_api.security.passwords import HashingTurn, Passwords
from users_api.security.tokens import (
    AccessClaims,
    AccessTokens,
    hash_refresh_token,
    new_refresh_token,
)
from users_api.throttle.service import LoginThrottle
from users_api.users.models import USER_AGENT_MAX_LENGTH
from users_api.users.queries import caller_values


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
# Attempts someone made on an account: recorded of the account, by no one known.
_ANONYMOUS_TYPES = frozenset({"auth.login_failed", "auth.login_throttled"})
# How long the second step of a sign-in may wait (the contract's five minutes).
MFA_TOKEN_TTL = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class AuthService:
    """Stateless, one per app."""

    db: Database
    _: KW_ONLY
    passwords: Passwords
    tokens: AccessTokens
    refresh_ttl: timedelta
    throttle: LoginThrottle
    factor: SecondFactor
    # Writes the audit event of every sign-in and every session that ends.
    events: EventWriter
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

            return _counted(await self.db.run(attempt))

    async def _attempt(
        self, unit: Unit, hashing: HashingTurn, name: str, password: str, *, client: Client
    ) -> TokenPair | DomainError:
        address = client.address
        user = await unit.one(q.ACCOUNT, login=name)
        assert user is not None  # one row always
        account_key: str = user["account_key"]
        wait = await self.throttle.wait(unit, account_key=account_key, address=address)
        if wait is not None:
            await self._record(unit, "auth.login_throttled", user["id"])
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
            reason = "unknown_user" if user["id"] is None else "wrong_password"
            if ok:
                reason = "inactive"
            await self._record(unit, "auth.login_failed", user["id"], reason=reason)
            return InvalidCredentials()
        if self.require_verified_email and not user["email_verified"]:
            # only now: the right password reveals nothing new
            await self._record(unit, "auth.login_failed", user["id"], reason="email_not_verified")
            return EmailNotVerified()
        if user["mfa_enabled"]:  # the second step is next: no tokens until it is done
            mfa_token = new_refresh_token()
            await unit.execute(
                mfa_q.START_CHALLENGE,
                id=uuid7(),
                token_hash=hash_refresh_token(mfa_token),
                user_id=user["id"],
                auth_version=user["auth_version"],
                expires_at=datetime.now(UTC) + MFA_TOKEN_TTL,
            )
            return MfaRequired(mfa_token)
        session = {"session_id": uuid7(), **client.stored()}
        pair = await self._issue(unit, q.START_SESSION, user["id"], user["auth_version"], session)
        if pair is None:  # deactivated or given a new password meanwhile
            await self._record(unit, "auth.login_failed", user["id"], reason="inactive")
            return InvalidCredentials()
        await self._record(
            unit, "auth.login_succeeded", user["id"], session_id=str(session["session_id"])
        )
        return pair

    async def refresh(self, presented: str) -> TokenPair | DomainError:
        token_hash = hash_refresh_token(presented)

        async def rotate(unit: Unit) -> TokenPair | DomainError:
            if await unit.value(q.LOCK_TOKEN_HOLDER, token_hash=token_hash) is None:
                return Unauthorized(_INVALID_REFRESH)
            token = await unit.one(q.TOKEN_FOR_UPDATE, token_hash=token_hash)
            if token is None or token["ended"]:
                return Unauthorized(_INVALID_REFRESH)
            session = {
                "session_id": token["family_id"],
                "expires_at": datetime.now(UTC) + self.refresh_ttl,
            }
            if token["used_at"] is not None:
                # A used-up token presented again: someone holds a copy. End the session,
                # and with it every token of it, access tokens included.
                await unit.execute(q.END_SESSION, **session)
                session_id = str(token["family_id"])
                await self._record(
                    unit, "auth.refresh_reused", token["user_id"], session_id=session_id
                )
                return Unauthorized("The refresh token was already used; this login is revoked.")
            if token["expired"]:
                return Unauthorized("The refresh token has expired.")
            await unit.execute(q.USE_UP_TOKEN, id=token["id"], **session)
            pair = await self._issue(
                unit, q.STORE_REFRESH_TOKEN, token["user_id"], token["auth_version"], session
            )
            return pair or Unauthorized(_INVALID_REFRESH)

        return await self.db.run(rotate)

    async def verify_mfa(
        self, mfa_token: str, code: str, *, client: Client
    ) -> TokenPair | DomainError:
        """The second step of a sign-in: a code (TOTP or recovery) for the `mfa_token` the
        password grant answered with; the tokens of a new session, or the error.

        Answered for the account as a password is (the account's lock, the throttle, a
        wrong code counted as a failed login); the `mfa_token` survives a wrong code and
        is used up by the right one.
        """
        token_hash = hash_refresh_token(mfa_token)

        async def finish(unit: Unit) -> TokenPair | DomainError:
            user_id = await unit.value(mfa_q.CHALLENGE_HOLDER, token_hash=token_hash)
            if user_id is None:
                return InvalidMfaToken()
            account_key = await self.throttle.lock_user(unit, user_id)
            challenge = await unit.one(mfa_q.CHALLENGE_FOR_UPDATE, token_hash=token_hash)
            if challenge is None or not challenge["live"]:
                return InvalidMfaToken()

            async def right() -> bool:
                return await self.factor.check(unit, user_id, code)

            refused = await self.throttle.answer(
                unit,
                account_key=account_key,
                address=client.address,
                check=right,
                refusal=WrongCode(),
            )
            if isinstance(refused, TooManyAttempts):
                await self._record(unit, "auth.login_throttled", user_id, mfa=True)
            elif refused is not None:
                await self._record(unit, "auth.login_failed", user_id, reason="wrong_code")
            if refused is not None:
                return refused
            await unit.execute(mfa_q.USE_CHALLENGE, id=challenge["id"])
            session = {"session_id": uuid7(), **client.stored()}
            pair = await self._issue(
                unit, q.START_SESSION, user_id, challenge["auth_version"], session
            )
            if pair is None:  # deactivated or given a new password meanwhile
                return InvalidMfaToken()
            session_id = str(session["session_id"])
            await self._record(
                unit, "auth.login_succeeded", user_id, session_id=session_id, mfa=True
            )
            return pair

        return _counted(await self.db.run(finish))

    async def sessions(self, caller: AccessClaims) -> list[Record]:
        """The caller's live sessions, newest first (401 when their token is not honoured:
        then there are none, not even the caller's own)."""

        async def read(unit: Unit) -> list[Record]:
            values = caller_values(caller)
            records = await unit.all(q.CALLER_SESSIONS, **values)
            if not records and not await unit.value(q.CALLER_HONOURED, **values):
                raise Unauthorized
            return records

        return await self.db.run(read, transaction=False)

    async def end_session(self, session_id: uuid.UUID, *, caller: AccessClaims) -> None:
        """One of the caller's sessions ends, and every token of it at once (404 when it
        is not one of the caller's live sessions)."""

        async def end(unit: Unit) -> None:
            values = caller_values(caller)
            if await unit.value(q.END_CALLER_SESSION, target_id=session_id, **values) is None:
                if not await unit.value(q.CALLER_HONOURED, **values):
                    raise Unauthorized
                raise NotFound("No live session of yours has this id.")
            await self._record(
                unit, "auth.session_ended", caller.user_id, session_id=str(session_id)
            )

        await self.db.run(end)

    async def logout(self, presented: str) -> None:
        """That token's session ends, and every token of it (an unknown token changes
        nothing)."""

        async def revoke(unit: Unit) -> None:
            token_hash = hash_refresh_token(presented)
            ended = await unit.one(q.END_SESSION_OF_TOKEN, token_hash=token_hash)
            if ended is not None:
                session_id = str(ended["id"])
                await self._record(
                    unit, "auth.session_ended", ended["user_id"], session_id=session_id
                )

        await self.db.run(revoke)

    async def logout_all(self, caller: AccessClaims) -> None:
        """Every session of the caller ends: every token dies, access tokens included."""

        async def revoke(unit: Unit) -> None:
            bumped = await unit.value(q.REVOKE_CALLER_TOKENS, **caller_values(caller))
            if bumped is None:
                raise Unauthorized
            await self._record(unit, "auth.session_ended", caller.user_id, all=True)

        await self.db.run(revoke)

    async def _record(self, unit: Unit, type_: str, user_id: uuid.UUID | None, **data: Any) -> None:
        """An event of signing in or out, of the user (None: a name no user has); by them,
        except a failed or throttled attempt: whoever tried is unknown, not the account
        (an anonymous user, as for a name no user has), so the account's own acts
        (`actor_id`) never list the attacks on it."""
        await self.events.write(
            unit,
            type_,
            actor=user_actor(None if type_ in _ANONYMOUS_TYPES else user_id),
            subject_type="user",
            subject_id=user_id,
            data=data,
        )

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
            # The session's expiry too: its newest token's (a refresh set it already).
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


def _counted(outcome: TokenPair | DomainError) -> TokenPair | DomainError:
    """A sign-in's outcome, in `users_api_logins_total`: `success` or the refusal's code
    (`mfa-required` when the password was right and the second step is next)."""
    count_login(outcome.code if isinstance(outcome, DomainError) else "success")
    return outcome
