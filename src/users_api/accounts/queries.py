"""Every statement about mailed tokens, compiled once. No rules."""

from __future__ import annotations

from sqlalchemy import (
    Integer,
    Interval,
    Text,
    Uuid,
    bindparam,
    delete,
    func,
    insert,
    literal_column,
    select,
    update,
)

from users_api.accounts.models import MailToken, PasswordResetRequest
from users_api.db.locks import PASSWORD_RESET_LOCK_CLASS
from users_api.db.statements import compile_statement
from users_api.throttle.queries import per_address
from users_api.users.models import User
from users_api.users.queries import caller_honoured

LOCK_RESET_REQUESTS, COUNT_RESET_REQUEST = per_address(
    PasswordResetRequest, PASSWORD_RESET_LOCK_CLASS
)

_USER_ID = bindparam("user_id", type_=Uuid)
_PURPOSE = bindparam("purpose", type_=Text)
_WINDOW = bindparam("window", type_=Interval)

# An active user by email (compared as the unique index compares), row-locked so one
# account's requests are counted one by one, with its tokens of `purpose` in the window.
RESET_TARGET = compile_statement(
    select(
        User.id,
        User.email,
        select(func.count())
        .where(
            MailToken.user_id == User.id,
            MailToken.purpose == _PURPOSE,
            MailToken.created_at > func.now() - _WINDOW,
        )
        .scalar_subquery()
        .label("recent"),
    )
    .where(func.lower(User.email) == func.lower(bindparam("email", type_=Text)))
    .where(User.is_active.is_(True))
    .with_for_update(of=User)
)

# The caller (as `caller_honoured` finds them), row-locked, with when the limit-th newest
# of their tokens of `purpose` in the window was made (NULL if fewer).
CALLER_TOKEN_MARK = compile_statement(
    select(
        User.id,
        User.email,
        User.email_verified,
        select(MailToken.created_at)
        .where(
            MailToken.user_id == User.id,
            MailToken.purpose == _PURPOSE,
            MailToken.created_at > func.now() - _WINDOW,
        )
        .order_by(MailToken.created_at.desc())
        .offset(bindparam("limit", type_=Integer) - literal_column("1", Integer))
        .limit(literal_column("1", Integer))
        .scalar_subquery()
        .label("mark"),
        func.now().label("now"),
    )
    .where(caller_honoured(User))
    .with_for_update(of=User)
)

# The user's live tokens of a purpose die (a newer one, or the one used, replaces them);
# those older than the window are forgotten.
END_TOKENS = compile_statement(
    update(MailToken)
    .where(MailToken.user_id == _USER_ID, MailToken.purpose == _PURPOSE)
    .where(MailToken.used_at.is_(None))
    .values(used_at=func.now())
)
# A new token of a purpose, in one round trip (it is on every sign-up's path): the
# user's older ones that are past the window and expired are forgotten, the rest of their
# live ones die (END_TOKENS; the two sets do not overlap, as a row changed twice in one
# statement would keep only one of the changes), and the new one is inserted. The CTEs
# see the table as it was, so the new token is neither forgotten nor ended.
_FORGOTTEN = (MailToken.created_at <= func.now() - _WINDOW) & (MailToken.expires_at <= func.now())
ISSUE_TOKEN = compile_statement(
    insert(MailToken)
    .values(
        id=bindparam("id", type_=Uuid),
        user_id=_USER_ID,
        purpose=_PURPOSE,
        token_hash=bindparam("token_hash", type_=Text),
        email=bindparam("email", type_=Text),
        auth_version=select(User.auth_version).where(User.id == _USER_ID).scalar_subquery(),
        expires_at=func.now() + bindparam("ttl", type_=Interval),
    )
    .add_cte(
        delete(MailToken)
        .where(MailToken.user_id == _USER_ID, MailToken.purpose == _PURPOSE, _FORGOTTEN)
        .cte("forgotten"),
        update(MailToken)
        .where(MailToken.user_id == _USER_ID, MailToken.purpose == _PURPOSE)
        .where(MailToken.used_at.is_(None), ~_FORGOTTEN)
        .values(used_at=func.now())
        .cte("ended"),
    )
)

# Use a good token: unused, unexpired, of `purpose`, its user active, still at the
# address it was mailed to and at the `auth_version` it was mailed under (every token of
# the user dies together). Its user's id, or nothing.
USE_TOKEN = compile_statement(
    update(MailToken)
    .where(
        MailToken.token_hash == bindparam("token_hash", type_=Text),
        MailToken.purpose == _PURPOSE,
        MailToken.used_at.is_(None),
        MailToken.expires_at > func.now(),
        MailToken.user_id == User.id,
        User.is_active.is_(True),
        func.lower(User.email) == func.lower(MailToken.email),
        MailToken.auth_version == User.auth_version,
    )
    .values(used_at=func.now())
    .returning(MailToken.user_id)
)
