"""The OAuth2 password grant: find the account, throttle, verify, issue tokens.

A login is one transaction of short statements around an argon2 verification that
takes tens of milliseconds on a worker thread. What runs on the event loop shares the
CPU with that hash, so the statements are compiled once and run by asyncpg on a pooled
connection (`db/direct.py`); through the ORM they cost milliseconds a login. And each
round trip wakes the loop (~180 µs of CPU here), so a login that succeeds is five:
BEGIN, the account with its lock, the throttle's count, the refresh token with the
check that the account still holds, COMMIT.

The account's advisory lock is held from before the throttle's count until the commit,
so racing attempts on one account are counted one by one: no burst of parallel guesses
gets past the limit. A failure is returned, not raised, so that the transaction commits
the failure the throttle counts.
"""

from __future__ import annotations

import uuid
from dataclasses import KW_ONLY, dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    Interval,
    Text,
    bindparam,
    cast,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
    true,
    update,
)

from users_api.auth.models import LoginFailure, RefreshToken
from users_api.auth.passwords import HashingTurn, Passwords
from users_api.auth.service import TokenPair, refresh_token_row, token_pair
from users_api.auth.throttle import ThrottleRules, seconds_to_wait
from users_api.auth.tokens import AccessTokens
from users_api.db.direct import DirectPool, DriverConnection, Statement, compile_statement
from users_api.db.locks import LOGIN_LOCK_CLASS
from users_api.errors import DomainError, InvalidCredentials, TooManyAttempts
from users_api.users.models import User

_WINDOW = bindparam("window", type_=Interval)


def _found_and_locked(column: Any) -> Statement:
    """The account by its login name, and the account's lock taken in the same statement.

    The lock's key is the user's id when there is one, else the name asked for, so that
    guesses at a name that does not exist are throttled too. One row always: the user's
    columns are NULL when there is none.
    """
    found = (
        select(User.id, User.password_hash, User.is_active, User.auth_version)
        .where(func.lower(column) == bindparam("login"))
        .subquery("found")
    )
    key = func.coalesce(
        literal_column("'user:'", Text) + cast(found.c.id, Text),
        literal_column("'name:'", Text) + bindparam("login"),
    )
    lock = func.pg_advisory_xact_lock(literal_column(str(LOGIN_LOCK_CLASS)), func.hashtext(key))
    return compile_statement(
        select(*found.c, key.label("account_key"), lock.label("locked")).select_from(
            select(literal_column("1").label("one")).subquery("one").outerjoin(found, true())
        )
    )


# By email when the name has an `@` (usernames cannot), else by username; any case.
_BY_EMAIL, _BY_USERNAME = _found_and_locked(User.email), _found_and_locked(User.username)


def _nth_newest(key: Any, value: str, n: str) -> Any:
    """When the n-th newest failure of this key happened in the window (NULL if fewer)."""
    return (
        select(LoginFailure.failed_at)
        .where(key == bindparam(value), LoginFailure.failed_at > func.now() - _WINDOW)
        .order_by(LoginFailure.failed_at.desc())
        .offset(bindparam(n) - literal_column("1"))
        .limit(literal_column("1"))
        .scalar_subquery()
    )


_MARKS = compile_statement(
    select(
        _nth_newest(LoginFailure.account_key, "account_key", "per_account").label("account"),
        _nth_newest(LoginFailure.client_address, "address", "per_address").label("address"),
        func.now().label("now"),
    )
)
_STORE_REHASH = compile_statement(
    # The same password under new parameters is no change of the user: `version` stays.
    update(User)
    .where(User.id == bindparam("user_id"))
    .values(password_hash=bindparam("password_hash"))
)
_FORGET_EXPIRED_FAILURES = compile_statement(
    delete(LoginFailure).where(
        or_(
            LoginFailure.account_key == bindparam("account_key"),
            LoginFailure.client_address == bindparam("address"),
        ),
        LoginFailure.failed_at <= func.now() - _WINDOW,
    )
)
_RECORD_FAILURE = compile_statement(
    insert(LoginFailure).values(
        account_key=bindparam("account_key"), client_address=bindparam("address")
    )
)
# The refresh token goes in only if its user is still active with the token version the
# password was checked against: deactivated, or its password changed, during the hash,
# and there are no tokens. The user's row is locked (FOR KEY SHARE) before the token is
# inserted, which keeps it from being deleted until the token is in; a delete locks
# the user first and its cascade the tokens second, in the same order.
_ISSUED = ("id", "token_hash", "family_id", "expires_at")
_HOLDER = (
    select(User.id, User.auth_version)
    .where(
        User.id == bindparam("user_id"),
        User.auth_version == bindparam("auth_version"),
        User.is_active.is_(True),
    )
    .with_for_update(read=True, key_share=True)
    .cte("holder")
)
_STORE_REFRESH_TOKEN = compile_statement(
    insert(RefreshToken)
    .from_select(
        [*_ISSUED, "user_id", "auth_version"],
        select(
            *(bindparam(name, type_=RefreshToken.__table__.c[name].type) for name in _ISSUED),
            _HOLDER.c.id,
            _HOLDER.c.auth_version,
        ),
    )
    .returning(RefreshToken.id)
)


@dataclass(frozen=True, slots=True)
class Login:
    """Stateless, one per app."""

    pool: DirectPool
    _: KW_ONLY
    passwords: Passwords
    tokens: AccessTokens
    refresh_ttl: timedelta
    throttle: ThrottleRules

    async def __call__(
        self, identifier: str, password: str, *, address: str
    ) -> TokenPair | DomainError:
        """Tokens, or the error to answer with.

        A hashing thread first, a connection second (`Passwords.turn`): queued logins
        hold no connection.
        """
        async with (
            self.passwords.turn() as hashing,
            self.pool.connection() as connection,
            connection.transaction(),
        ):
            return await self._attempt(connection, hashing, identifier, password, address=address)

    async def _attempt(
        self,
        connection: DriverConnection,
        hashing: HashingTurn,
        identifier: str,
        password: str,
        *,
        address: str,
    ) -> TokenPair | DomainError:
        found = _BY_EMAIL if "@" in identifier else _BY_USERNAME
        user = await connection.fetchrow(found.sql, identifier.lower())
        account_key: str = user["account_key"]
        marks = await connection.fetchrow(
            _MARKS.sql,
            *_MARKS.args(
                {
                    "account_key": account_key,
                    "per_account": self.throttle.per_account,
                    "address": address,
                    "per_address": self.throttle.per_address,
                    "window": self.throttle.window,
                }
            ),
        )
        wait = seconds_to_wait(
            (marks["account"], marks["address"]), now=marks["now"], window=self.throttle.window
        )
        if wait is not None:
            return TooManyAttempts(wait)
        if user["id"] is None:
            await hashing.verify_dummy(password)
            ok = False
        else:
            ok, new_hash = await hashing.verify_and_update(password, user["password_hash"])
            if ok and new_hash is not None:
                await connection.execute(
                    _STORE_REHASH.sql,
                    *_STORE_REHASH.args({"user_id": user["id"], "password_hash": new_hash}),
                )
        if user["id"] is None or not ok or not user["is_active"]:
            failure = {"account_key": account_key, "address": address}
            await connection.execute(
                _FORGET_EXPIRED_FAILURES.sql,
                *_FORGET_EXPIRED_FAILURES.args({**failure, "window": self.throttle.window}),
            )
            await connection.execute(_RECORD_FAILURE.sql, *_RECORD_FAILURE.args(failure))
            return InvalidCredentials()
        return await self._issue(connection, user["id"], user["auth_version"])

    async def _issue(
        self, connection: DriverConnection, user_id: uuid.UUID, auth_version: int
    ) -> TokenPair | DomainError:
        refresh, row = refresh_token_row(
            user_id, auth_version, family_id=uuid.uuid4(), ttl=self.refresh_ttl
        )
        stored = await connection.fetchval(
            _STORE_REFRESH_TOKEN.sql, *_STORE_REFRESH_TOKEN.args(row)
        )
        if stored is None:  # deactivated, deleted or given a new password meanwhile
            return InvalidCredentials()
        return token_pair(self.tokens, user_id, auth_version, refresh)
