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
    Integer,
    Interval,
    Text,
    Uuid,
    and_,
    bindparam,
    cast,
    delete,
    exists,
    func,
    insert,
    literal_column,
    or_,
    select,
)

from users_api.db.locks import LOGIN_LOCK_CLASS
from users_api.db.statements import Statement, compile_statement
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


# --- counted per client address (sign-ups, password-reset requests) ------------------


def per_address(model: Any, lock_class: int) -> tuple[Statement, Statement]:
    """The lock and the count of one client address's attempts kept in `model` (a table
    with `client_address` and `attempted_at`): its advisory lock, taken in a statement of
    its own (a statement's snapshot is taken before it waits for a lock), and one
    statement that forgets the address's attempts that left the window, records this one
    unless it must wait, and returns when the limit-th newest attempt in the window was
    (`mark`, NULL if fewer: `service.seconds_to_wait` turns it into the wait) and `now`.
    Binds `address`, `limit`, `window`."""
    address = bindparam("address", type_=Text)
    lock = compile_statement(
        select(func.pg_advisory_xact_lock(literal_column(str(lock_class)), func.hashtext(address)))
    )
    recent = and_(model.client_address == address, model.attempted_at > func.now() - _WINDOW)
    mark = (
        select(model.attempted_at.label("mark"))
        .where(recent)
        .order_by(model.attempted_at.desc())
        .offset(bindparam("limit", type_=Integer) - literal_column("1", Integer))
        .limit(literal_column("1", Integer))
        .cte("mark")
    )
    forget = (
        delete(model)
        .where(model.client_address == address, model.attempted_at <= func.now() - _WINDOW)
        .cte("forgotten")
    )
    record = (
        insert(model)
        .from_select(["client_address"], select(address).where(~exists(select(mark.c.mark))))
        .cte("recorded")
    )
    count = compile_statement(
        select(select(mark.c.mark).scalar_subquery().label("mark"), func.now().label("now"))
        .add_cte(forget)
        .add_cte(record)
    )
    return lock, count
