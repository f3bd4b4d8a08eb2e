"""Every statement of signing in and of refresh tokens, compiled once. No rules."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Text,
    and_,
    bindparam,
    exists,
    func,
    insert,
    literal_column,
    select,
    true,
    update,
)

from users_api.auth.models import RefreshToken
from users_api.db.statements import Statement, compile_statement
from users_api.throttle.queries import account_key, account_lock
from users_api.users.models import User, UserSession
from users_api.users.queries import caller_honoured, end_sessions, login_column


def _found_and_locked(column: Any) -> Statement:
    """The account by its sign-in name, and the account's lock taken in the same statement.

    The lock's key is the user's id when there is one, else the name asked for, so that
    guesses at a name that does not exist are throttled too. One row always: the user's
    columns are NULL when there is none. Both sides are lower-cased by PostgreSQL, as
    the unique indexes are, so a name finds its user whatever Python's rules would say.
    """
    login = func.lower(bindparam("login", type_=Text))
    found = (
        select(
            User.id,
            User.password_hash,
            User.is_active,
            User.auth_version,
            User.mfa_enabled,
            User.email_verified,
        )
        .where(func.lower(column) == login)
        .subquery("found")
    )
    key = account_key(found.c.id, login)
    return compile_statement(
        select(*found.c, key.label("account_key"), account_lock(key).label("locked")).select_from(
            select(literal_column("1").label("one")).subquery("one").outerjoin(found, true())
        )
    )


_BY_EMAIL = _found_and_locked(login_column(User, "@"))
_BY_USERNAME = _found_and_locked(login_column(User, ""))


def account(name: str) -> Statement:
    """`_found_and_locked` on the column `name` is looked up in."""
    return _BY_EMAIL if login_column(User, name) is User.email else _BY_USERNAME


STORE_REHASH = compile_statement(
    # The same password under new parameters is no change of the user: `version` stays.
    update(User)
    .where(User.id == bindparam("user_id"))
    .values(password_hash=bindparam("password_hash"))
)

# --- sessions and refresh tokens ----------------------------------------------------

# A refresh token goes in only while its holder's token is honoured (`caller_honoured`:
# active, the auth version the token is issued under, the session alive): deactivated,
# given a new password, or the session ended while the hash ran, and there is no token.
# The user's row is locked (FOR KEY SHARE) before the token is inserted, which keeps it
# from being deleted until the token is in; a delete locks the user first and its
# cascade the sessions and tokens next, the same order.
ISSUED = ("id", "token_hash", "expires_at")


def _issued() -> list[Any]:
    return [bindparam(name, type_=RefreshToken.__table__.c[name].type) for name in ISSUED]


def _holder(*, session: bool) -> Any:
    return (
        select(User.id, User.auth_version)
        .where(caller_honoured(User, session=session))
        .with_for_update(read=True, key_share=True)
        .cte("holder")
    )


# A login: the session and its first refresh token, in one statement (a round trip is
# CPU the password's hash needs). The session is new, so only its user is checked.
_LOGIN_HOLDER = _holder(session=False)
_NEW_SESSION = (
    insert(UserSession)
    .from_select(
        ["id", "user_id", "user_agent", "ip_address", "expires_at"],
        select(
            bindparam("session_id", type_=UserSession.id.type),
            _LOGIN_HOLDER.c.id,
            bindparam("user_agent", type_=UserSession.user_agent.type),
            bindparam("ip_address", type_=UserSession.ip_address.type),
            bindparam("expires_at", type_=UserSession.expires_at.type),
        ),
    )
    .returning(UserSession.id, UserSession.user_id)
    .cte("new_session")
)
START_SESSION = compile_statement(
    insert(RefreshToken)
    .from_select(
        [*ISSUED, "family_id", "user_id", "auth_version"],
        select(
            *_issued(),
            _NEW_SESSION.c.id,
            _NEW_SESSION.c.user_id,
            bindparam("auth_version", type_=RefreshToken.auth_version.type),
        ),
    )
    .returning(RefreshToken.id)
)

# A refresh: the next token of the session, while the session lives.
_HOLDER = _holder(session=True)
STORE_REFRESH_TOKEN = compile_statement(
    insert(RefreshToken)
    .from_select(
        [*ISSUED, "family_id", "user_id", "auth_version"],
        select(
            *_issued(),
            bindparam("session_id", type_=RefreshToken.family_id.type),
            _HOLDER.c.id,
            _HOLDER.c.auth_version,
        ),
    )
    .returning(RefreshToken.id)
)

# The token's user first, the order a user's delete locks them in (see above).
LOCK_TOKEN_HOLDER = compile_statement(
    select(User.id)
    .where(
        User.id
        == select(RefreshToken.user_id)
        .where(RefreshToken.token_hash == bindparam("token_hash"))
        .scalar_subquery()
    )
    .with_for_update(read=True, key_share=True)
)
TOKEN_FOR_UPDATE = compile_statement(
    select(
        RefreshToken.id,
        RefreshToken.family_id,
        RefreshToken.user_id,
        RefreshToken.auth_version,
        RefreshToken.used_at,
        UserSession.ended_at.is_not(None).label("ended"),
        (RefreshToken.expires_at <= func.now()).label("expired"),
    )
    .join(UserSession, UserSession.id == RefreshToken.family_id)
    .where(RefreshToken.token_hash == bindparam("token_hash"))
    .with_for_update(of=RefreshToken)
)
# The token is used up, and its session used now (and alive as long as the next token
# the refresh issues): one statement.
_USED_UP = (
    update(RefreshToken)
    .where(RefreshToken.id == bindparam("id"))
    .values(used_at=func.now())
    .cte("used_up")
)
USE_UP_TOKEN = compile_statement(
    update(UserSession)
    .where(UserSession.id == bindparam("session_id", type_=UserSession.id.type))
    .values(
        last_used_at=func.now(),
        expires_at=bindparam("expires_at", type_=UserSession.expires_at.type),
    )
    .add_cte(_USED_UP)
)
END_SESSION = compile_statement(
    end_sessions(UserSession.id == bindparam("session_id", type_=UserSession.id.type))
)
# The session ended, and whose (no row: an unknown token, or a session ended already).
END_SESSION_OF_TOKEN = compile_statement(
    end_sessions(
        UserSession.id
        == select(RefreshToken.family_id)
        .where(RefreshToken.token_hash == bindparam("token_hash"))
        .scalar_subquery()
    ).returning(UserSession.id, UserSession.user_id)
)
# Every token of the caller dies: every session ends, and the next auth version (which
# also stops a login whose hash is running now). Empty when the caller's own token is no
# longer honoured.
_BUMPED = (
    update(User)
    .where(caller_honoured(User))
    .values(auth_version=User.auth_version + literal_column("1"))
    .returning(User.id, User.auth_version)
    .cte("bumped")
)
REVOKE_CALLER_TOKENS = compile_statement(
    select(_BUMPED.c.auth_version).add_cte(
        end_sessions(UserSession.user_id.in_(select(_BUMPED.c.id))).cte("ended")
    )
)

# --- the caller's sessions (devices) ----------------------------------------------------

_LIVE = and_(UserSession.ended_at.is_(None), UserSession.expires_at > func.now())
# The caller's live sessions, newest first, and which one the token is of; no rows when
# the caller's token is not honoured.
CALLER_SESSIONS = compile_statement(
    select(
        UserSession.id,
        UserSession.created_at,
        UserSession.last_used_at,
        UserSession.user_agent,
        UserSession.ip_address,
        (UserSession.id == bindparam("session_id", type_=UserSession.id.type)).label("current"),
    )
    .where(
        UserSession.user_id == bindparam("caller_id", type_=UserSession.user_id.type),
        _LIVE,
        exists().where(caller_honoured()),
    )
    .order_by(UserSession.created_at.desc(), UserSession.id.desc())
)
# One of the caller's live sessions ends (its id; none when it is not the caller's, or
# the caller's token is not honoured).
END_CALLER_SESSION = compile_statement(
    end_sessions(
        UserSession.id == bindparam("target_id", type_=UserSession.id.type),
        UserSession.user_id == bindparam("caller_id", type_=UserSession.user_id.type),
        UserSession.expires_at > func.now(),
        exists().where(caller_honoured()),
    ).returning(UserSession.id)
)
CALLER_HONOURED = compile_statement(select(exists().where(caller_honoured())))
