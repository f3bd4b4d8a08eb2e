"""Every statement about users, written with SQLAlchemy and compiled once. No rules.

Two fragments carry the access rules into SQL, so that a read or a profile change is
one statement with no extra round trip for them:

- `caller_honoured()`: the caller's row matches the token (user exists, is active,
  `auth_version` current) and the token's session has not ended. It is the one test of
  "the token is still honoured".
- `admin_or_self(target_id)`: that caller is an admin, or is the target.

A caller's row is a subquery PostgreSQL evaluates once, before the scan (an InitPlan),
and a caller who does not qualify gets no rows at all. Whoever finds no row asks
`CALLER_IS_ADMIN` to tell "not signed in" (401) from "not allowed" (403) from
"nothing there" (404): the rare answers pay the second round trip, not the common ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    CTE,
    BigInteger,
    ColumnElement,
    Integer,
    Select,
    Text,
    Update,
    and_,
    any_,
    bindparam,
    cast,
    delete,
    exists,
    func,
    insert,
    literal_column,
    or_,
    select,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import aliased

from users_api.db.locks import (
    ADMIN_SET_LOCK_CLASS,
    IDENTITY_LOCK_CLASS,
    SIGN_IN_NAME_LOCK_CLASS,
    SIGN_UP_LOCK_CLASS,
)
from users_api.db.statements import Statement, compile_statement
from users_api.events.queries import recording
from users_api.security.tokens import AccessClaims
from users_api.throttle.queries import per_address
from users_api.users.models import SignUpAttempt, User, UserSession
from users_api.users.schemas import UserOut, UserSort

# What a response shows of a user, in the order it shows it: the output schema decides.
PUBLIC_FIELDS = tuple(UserOut.model_fields)
UserRow = dict[str, Any]


def public_columns(entity: Any) -> list[Any]:
    """`entity`'s public columns, in that order: every statement that returns users."""
    return [getattr(entity, name) for name in PUBLIC_FIELDS]


def as_row(record: Any) -> UserRow:
    """A record that starts with `public_columns`, by position: a third cheaper than
    `dict(record)`. Columns after them (what only the rules need) are left out."""
    return dict(zip(PUBLIC_FIELDS, record, strict=False))


# --- the caller --------------------------------------------------------------------

caller = aliased(User, name="caller")


def caller_honoured(holder: Any = caller, *, session: bool = True) -> ColumnElement[bool]:
    """The one test that a token is still honoured: its user (`holder`) exists, is active
    and has the token's `auth_version`, and its session has not ended. Binds `caller_id`,
    `auth_version`, `session_id`.

    The session is a primary-key probe PostgreSQL evaluates once per statement (an
    InitPlan: it names no column of the statement's rows). `session=False` is for the
    one statement that creates the session, a login's, which cannot see it yet.
    """
    user = and_(
        holder.id == bindparam("caller_id"),
        holder.auth_version == bindparam("auth_version"),
        holder.is_active.is_(True),
    )
    if not session:
        return user
    alive = exists().where(
        UserSession.id == bindparam("session_id", type_=UserSession.id.type),
        UserSession.user_id == bindparam("caller_id"),
        UserSession.ended_at.is_(None),
    )
    return and_(user, alive)


def caller_values(caller: AccessClaims) -> dict[str, Any]:
    """What `caller_honoured` binds, from the token's claims."""
    return {
        "caller_id": caller.user_id,
        "auth_version": caller.auth_version,
        "session_id": caller.session_id,
    }


def admin_or_self(target_id: Any) -> ColumnElement[bool]:
    """The caller (whose row `caller_honoured` matched) may see and change `target_id`."""
    return or_(caller.is_admin.is_(True), caller.id == target_id)


def sign_in_user_id(login: ColumnElement[str]) -> Any:
    """The one rule of which user a sign-in name names: the user whose username it is,
    else the user whose email it is (compared lower-cased by PostgreSQL, as the unique
    indexes compare). A scalar subquery (NULL: nobody); no two users can match, since a
    username never equals another user's email (`NAME_CLASH`), but the order says which
    wins even so. `login` is compared as given: lower-case it with `func.lower`.
    """
    named = aliased(User, name="named")
    by_username = select(named.id, literal_column("0", Integer).label("rank")).where(
        func.lower(named.username) == login
    )
    by_email = select(named.id, literal_column("1", Integer).label("rank")).where(
        func.lower(named.email) == login
    )
    found = union_all(by_username, by_email).subquery("named_by")
    first = literal_column("1", Integer)  # a constant: no bind parameter to pass
    return select(found.c.id).order_by(found.c.rank).limit(first).scalar_subquery()


CALLER_IS_ADMIN = compile_statement(select(caller.is_admin).where(caller_honoured()))

USER_BY_ID = compile_statement(
    select(*public_columns(User)).where(
        User.id == bindparam("user_id"),
        exists().where(caller_honoured(), admin_or_self(bindparam("user_id"))),
    )
)

# The target of a change, row-locked, if the caller may change it; with what the rules
# need beyond the public fields.
TARGET_FOR_UPDATE = compile_statement(
    select(
        *public_columns(User),
        User.password_hash,
        User.auth_version,
        User.external_id,
        User.scim,
        select(caller.is_admin).where(caller_honoured()).scalar_subquery().label("caller_is_admin"),
    )
    .where(
        User.id == bindparam("user_id"),
        exists().where(caller_honoured(), admin_or_self(User.id)),
    )
    .with_for_update(of=User)
)

# A user the system changes (a reset token's holder, the identity provider over SCIM),
# row-locked, with what the rules need.
USER_FOR_UPDATE = compile_statement(
    select(
        *public_columns(User), User.password_hash, User.auth_version, User.external_id, User.scim
    )
    .where(User.id == bindparam("user_id"))
    .with_for_update(of=User)
)


# A user by sign-in name, row-locked, for changes the system makes (the CLI).
TARGET_BY_LOGIN = compile_statement(
    select(*public_columns(User))
    .where(User.id == sign_in_user_id(func.lower(bindparam("login", type_=Text))))
    .with_for_update(of=User)
)


COUNT_OTHER_ACTIVE_ADMINS = compile_statement(
    select(func.count()).where(
        User.is_admin.is_(True), User.is_active.is_(True), User.id != bindparam("user_id")
    )
)

DELETE_USER = compile_statement(delete(User).where(User.id == bindparam("user_id")))

# --- sessions ----------------------------------------------------------------------


def end_sessions(*conditions: ColumnElement[bool]) -> Update:
    """End the live sessions that meet `conditions`: every token of them dies at once."""
    return (
        update(UserSession)
        .where(*conditions, UserSession.ended_at.is_(None))
        .values(ended_at=func.now())
    )


END_USER_SESSIONS = compile_statement(
    end_sessions(UserSession.user_id == bindparam("user_id", type_=UserSession.user_id.type))
)

# Advisory locks, taken before any row lock: one order everywhere, so no deadlock.
LOCK_ADMIN_SET = compile_statement(
    select(func.pg_advisory_xact_lock(literal_column(f"{ADMIN_SET_LOCK_CLASS}, 0")))
)
LOCK_IDENTITIES = compile_statement(
    select(func.pg_advisory_xact_lock(literal_column(f"{IDENTITY_LOCK_CLASS}, 0")))
)

# --- sign-in names ----------------------------------------------------------------------
#
# An email and a username are both sign-in names: a username may equal its own user's
# email, never another user's, so that a name always finds one user. The unique indexes
# keep emails apart and usernames apart; this pair keeps each from the other. A write
# that claims names (a creation, a change of email or username) takes a lock per name,
# then asks NAME_CLASH, then writes, in one transaction: two writes claiming one name as
# an email and as a username wait for each other, and the second sees the first.

_NAMES = func.unnest(bindparam("names", type_=ARRAY(Text))).table_valued("name")
LOCK_SIGN_IN_NAMES = compile_statement(
    select(
        func.count(
            func.pg_advisory_xact_lock(
                literal_column(str(SIGN_IN_NAME_LOCK_CLASS)),
                func.hashtext(func.lower(_NAMES.c.name)),
            )
        )
    ).select_from(_NAMES)
)

# Whether `email` is another user's username, and `username` another user's email
# (NULL for a name not being claimed: no clash). `user_id`: the user claiming them.
NAME_CLASH = compile_statement(
    select(
        exists()
        .where(
            func.lower(User.username) == func.lower(bindparam("email", type_=Text)),
            User.id != bindparam("user_id", type_=User.id.type),
        )
        .label("email_taken"),
        exists()
        .where(
            func.lower(User.email) == func.lower(bindparam("username", type_=Text)),
            User.id != bindparam("user_id", type_=User.id.type),
        )
        .label("username_taken"),
    )
)

# --- inserting ---------------------------------------------------------------------

INSERTED = (
    "id",
    "email",
    "username",
    "full_name",
    "password_hash",
    "is_active",
    "is_admin",
    "email_verified",
    "external_id",
)
_NEW_USER = {
    **{name: bindparam(name, type_=User.__table__.c[name].type) for name in INSERTED},
    # asyncpg reads and writes jsonb as text: the service passes it serialized.
    "scim": cast(bindparam("scim", type_=Text), JSONB),
    # Both counters start at 1.
    "version": literal_column("1", Integer),
    "auth_version": literal_column("1", Integer),
}


def _insert(*, as_admin: bool) -> Statement:
    """Insert a user; `as_admin`: only while the caller is still an honoured admin, so an
    admin demoted while the password was being hashed creates nobody."""
    statement = insert(User)
    if as_admin:
        values = select(*_NEW_USER.values()).where(
            exists().where(caller_honoured(), caller.is_admin.is_(True))
        )
        statement = statement.from_select(list(_NEW_USER), values)
    else:
        statement = statement.values(_NEW_USER)
    return compile_statement(statement.returning(*public_columns(User)))


INSERT_USER = _insert(as_admin=False)
INSERT_USER_AS_ADMIN = _insert(as_admin=True)

USER_ID_BY_EMAIL = compile_statement(
    select(User.id).where(func.lower(User.email) == func.lower(bindparam("email")))
)

# --- before a sign-up's hash ---------------------------------------------------------

# Who the caller is (NULL: nobody, or a token no longer honoured), and whether the email
# or username is taken (as an email or as a username: a new user has no own names yet),
# compared as the unique indexes compare them: a sign-up that
# cannot succeed is refused before its hash. The indexes stay the final word (a race).
CREATION_CHECK = compile_statement(
    select(
        select(caller.is_admin).where(caller_honoured()).scalar_subquery().label("caller_is_admin"),
        exists()
        .where(
            or_(
                func.lower(User.email) == func.lower(bindparam("email", type_=Text)),
                func.lower(User.username) == func.lower(bindparam("email", type_=Text)),
            )
        )
        .label("email_taken"),
        exists()
        .where(
            or_(
                func.lower(User.username) == func.lower(bindparam("username", type_=Text)),
                func.lower(User.email) == func.lower(bindparam("username", type_=Text)),
            )
        )
        .label("username_taken"),
    )
)

# One client address's sign-ups, counted one at a time under its lock.
LOCK_SIGN_UPS, COUNT_SIGN_UP = per_address(SignUpAttempt, SIGN_UP_LOCK_CLASS)

# --- changing ----------------------------------------------------------------------


def new(field: str) -> str:
    """The bind parameter of a field's new value."""
    return f"new_{field}"


def _new_value(name: str) -> Any:
    """A field's new value; jsonb is bound as text (see `_NEW_USER`)."""
    if name == "scim":
        return cast(bindparam(new(name), type_=Text), JSONB)
    return bindparam(new(name))


@lru_cache(maxsize=64)
def update_user(
    fields: frozenset[str],
    *,
    guarded: bool,
    conditional: bool,
    recorded: tuple[Callable[[CTE], CTE], ...] | None = None,
) -> Statement:
    """SET the fields, bump `version` and `updated_at`: the one version bump.

    `guarded`: the statement itself checks the caller (honoured, admin or self) and
    that some field really changes, so a profile change needs no lock and no earlier
    read; `conditional`: and that the version is one of `if_match`. PostgreSQL re-checks
    the WHERE clause on the newest row version if a concurrent change got there first
    (READ COMMITTED), so If-Match is as strict as a row lock's. Unguarded, the caller
    has locked and checked the row already. `recorded`: the statement also writes the
    event of the change, and these subscribers' parts (`events.queries.recording`).
    """
    ordered = sorted(fields)
    conditions: list[ColumnElement[bool]] = [User.id == bindparam("user_id")]
    if guarded:
        conditions += [
            caller_honoured(),
            admin_or_self(User.id),
            or_(*(getattr(User, name).is_distinct_from(bindparam(new(name))) for name in ordered)),
        ]
    if conditional:
        conditions.append(User.version == any_(bindparam("if_match", type_=ARRAY(BigInteger))))
    statement = (
        update(User)
        .where(and_(*conditions))
        .values(
            {
                **{name: _new_value(name) for name in ordered},
                "version": User.version + literal_column("1", Integer),
                "updated_at": func.now(),
            }
        )
        .returning(*public_columns(User))
    )
    if recorded is not None:
        return compile_statement(recording(statement, recorded))
    return compile_statement(statement)


# --- pages -------------------------------------------------------------------------

FILTERS = (
    "q",
    "email",
    "username",
    "is_active",
    "is_admin",
    "created_after",
    "created_before",
)


@dataclass(frozen=True, slots=True)
class PageShape:
    """What decides the text of a list statement (not the values bound into it)."""

    sort: UserSort
    filters: frozenset[str]
    after: bool
    # The caller's check in the page's own statement (one round trip). Not on a replica:
    # who may list is decided on the primary, and a session made a moment ago is not on
    # the replica yet, which made the page empty.
    guarded: bool = True


def escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _sort_expression(sort: UserSort) -> ColumnElement[Any]:
    """What a sort orders by; text keys order case-insensitively (as the indexes do)."""
    column: ColumnElement[Any] = getattr(User, sort.key)
    return func.lower(column) if sort.key in ("username", "email") else column


def _ordering(sort: UserSort) -> list[ColumnElement[Any]]:
    keys: list[ColumnElement[Any]] = [_sort_expression(sort)]
    if sort.key != "id":
        keys.append(User.__table__.c.id)
    return [key.desc() if sort.descending else key.asc() for key in keys]


def _filter_conditions(filters: frozenset[str]) -> list[ColumnElement[bool]]:
    conditions: dict[str, ColumnElement[bool]] = {
        "q": or_(
            User.email.ilike(bindparam("q"), escape="\\"),
            User.username.ilike(bindparam("q"), escape="\\"),
            User.full_name.ilike(bindparam("q"), escape="\\"),
        ),
        "email": func.lower(User.email) == func.lower(bindparam("email")),
        "username": func.lower(User.username) == func.lower(bindparam("username")),
        "is_active": User.is_active == bindparam("is_active"),
        "is_admin": User.is_admin == bindparam("is_admin"),
        "created_after": User.created_at > bindparam("created_after"),
        "created_before": User.created_at < bindparam("created_before"),
    }
    return [conditions[name] for name in FILTERS if name in filters]


def _after_condition(sort: UserSort) -> ColumnElement[bool]:
    """Rows past the cursor: a row comparison on (key, id), which the indexes serve."""
    if sort.key == "id":
        after_id = bindparam("after_id", type_=User.id.type)
        return User.id < after_id if sort.descending else User.id > after_id
    key: ColumnElement[Any] = bindparam("after_key", type_=getattr(User, sort.key).type)
    if sort.key in ("username", "email"):
        key = func.lower(key)
    bound = tuple_(_sort_expression(sort), User.id)
    position = tuple_(key, bindparam("after_id", type_=User.id.type))
    return bound < position if sort.descending else bound > position


@lru_cache(maxsize=256)
def page(shape: PageShape) -> Statement:
    """A keyset page; when `shape.guarded`, empty unless the caller is an honoured admin."""
    guard = [select(caller.is_admin).where(caller_honoured()).scalar_subquery()]
    statement: Select[Any] = select(*public_columns(User)).where(
        *(guard if shape.guarded else []), *_filter_conditions(shape.filters)
    )
    if shape.after:
        statement = statement.where(_after_condition(shape.sort))
    return compile_statement(statement.order_by(*_ordering(shape.sort)).limit(bindparam("limit")))
