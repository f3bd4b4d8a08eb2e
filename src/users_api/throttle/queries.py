"""Every statement of the failed-login throttle, compiled once. No rules.

An account's key names what the failures are counted under: `user:<id>` for an account
that exists, `name:<sha256 of the lower-cased name>` for a sign-in name that finds none
(guesses at a name that does not exist are throttled too). Hashed, the key has one
length whatever the name: lower-casing may lengthen a name (ICU maps `İ` to two
characters), and a key longer than its column would fail the attempt uncounted. The
account's advisory lock is keyed on it as well.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Interval,
    Text,
    Uuid,
    bindparam,
    cast,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
)

from users_api.db.locks import LOGIN_LOCK_CLASS
from users_api.db.statements import compile_statement
from users_api.throttle.models import LoginFailure

_WINDOW = bindparam("window", type_=Interval)


def account_key(user_id: Any, login: Any = None) -> Any:
    """The key of the account `user_id` (NULL when there is none), else of the sign-in
    name `login` (already lower-cased, as the name is looked up)."""
    user_key = literal_column("'user:'", Text) + cast(user_id, Text)
    if login is None:
        return user_key
    name_hash = func.encode(
        func.sha256(func.convert_to(login, literal_column("'UTF8'"))), literal_column("'hex'")
    )
    return func.coalesce(user_key, literal_column("'name:'", Text) + name_hash)


def account_lock(key: Any) -> Any:
    """The account's transaction-scoped advisory lock: one attempt at a time, so racing
    attempts are counted one by one. Take it in a statement of its own before counting
    (a statement's snapshot is taken before it waits for the lock)."""
    return func.pg_advisory_xact_lock(literal_column(str(LOGIN_LOCK_CLASS)), func.hashtext(key))


# The account of a user known by id, locked: its key.
_USER_KEY = account_key(bindparam("user_id", type_=Uuid))
LOCK_USER_ACCOUNT = compile_statement(
    select(_USER_KEY.label("account_key"), account_lock(_USER_KEY).label("locked"))
)


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


THROTTLE_MARKS = compile_statement(
    select(
        _nth_newest(LoginFailure.account_key, "account_key", "per_account").label("account"),
        _nth_newest(LoginFailure.client_address, "address", "per_address").label("address"),
        func.now().label("now"),
    )
)
FORGET_EXPIRED_FAILURES = compile_statement(
    delete(LoginFailure).where(
        or_(
            LoginFailure.account_key == bindparam("account_key"),
            LoginFailure.client_address == bindparam("address"),
        ),
        LoginFailure.failed_at <= func.now() - _WINDOW,
    )
)
RECORD_FAILURE = compile_statement(
    insert(LoginFailure).values(
        account_key=bindparam("account_key"), client_address=bindparam("address")
    )
)
