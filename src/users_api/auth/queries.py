"""Every statement of signing in and of refresh tokens, compiled once. No rules."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Text,
    bindparam,
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
from users_api.users.models import User
from users_api.users.queries import caller_honoured, login_column


def _found_and_locked(column: Any) -> Statement:
    """The account by its sign-in name, and the account's lock taken in the same statement.

    The lock's key is the user's id when there is one, else the name asked for, so that
    guesses at a name that does not exist are throttled too. One row always: the user's
    columns are NULL when there is none. Both sides are lower-cased by PostgreSQL, as
    the unique indexes are, so a name finds its user whatever Python's rules would say.
    """
    login = func.lower(bindparam("login", type_=Text))
    found = (
        select(User.id, User.password_hash, User.is_active, User.auth_version)
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

# --- refresh tokens ------------------------------------------------------------------

# A refresh token goes in only while its holder's token is honoured (`caller_honoured`:
# active, the auth version the token is issued under): deactivated, or given a new
# password, while the hash ran, and there is no token. The user's row is locked (FOR KEY
# SHARE) before the token is inserted, which keeps it from being deleted until the token
# is in; a delete locks the user first and its cascade the tokens second, the same order.
ISSUED = ("id", "token_hash", "family_id", "expires_at")
_HOLDER = (
    select(User.id, User.auth_version)
    .where(caller_honoured(User))
    .with_for_update(read=True, key_share=True)
    .cte("holder")
)
STORE_REFRESH_TOKEN = compile_statement(
    insert(RefreshToken)
    .from_select(
        [*ISSUED, "user_id", "auth_version"],
        select(
            *(bindparam(name, type_=RefreshToken.__table__.c[name].type) for name in ISSUED),
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
        RefreshToken.revoked_at,
        (RefreshToken.expires_at <= func.now()).label("expired"),
    )
    .where(RefreshToken.token_hash == bindparam("token_hash"))
    .with_for_update()
)
USE_UP_TOKEN = compile_statement(
    update(RefreshToken).where(RefreshToken.id == bindparam("id")).values(used_at=func.now())
)
REVOKE_FAMILY = compile_statement(
    update(RefreshToken)
    .where(RefreshToken.family_id == bindparam("family_id"), RefreshToken.revoked_at.is_(None))
    .values(revoked_at=func.now())
)
REVOKE_FAMILY_OF_TOKEN = compile_statement(
    update(RefreshToken)
    .where(
        RefreshToken.family_id
        == select(RefreshToken.family_id)
        .where(RefreshToken.token_hash == bindparam("token_hash"))
        .scalar_subquery(),
        RefreshToken.revoked_at.is_(None),
    )
    .values(revoked_at=func.now())
)
# Every token of the caller dies: the next auth version. Empty when the caller's own
# token is no longer honoured.
REVOKE_CALLER_TOKENS = compile_statement(
    update(User)
    .where(caller_honoured(User))
    .values(auth_version=User.auth_version + literal_column("1"))
    .returning(User.auth_version)
)
