"""Who may do what to users, in Python: the rules a statement cannot hold.

Where a rule fits in SQL it lives in `queries.py` instead (the token still honoured,
admin or self); `docs/architecture.md` lists where each rule lives.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import timedelta

from users_api.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from users_api.security.passwords import Passwords

# The fields anyone may send about themselves; every other field is an admin's alone.
SELF_SERVICE_FIELDS = frozenset({"email", "username", "full_name", "password", "current_password"})
# Fields whose change takes the identity lock (their unique indexes).
IDENTITY_FIELDS = frozenset({"email", "username"})
# Fields a guarded one-statement update may change: no hashing, no admin rule, no mail
# (a new email is unverified, and mailed at both addresses: `UserService._write`).
PROFILE_FIELDS = frozenset({"username", "full_name"})
# Sign-ups are counted per client address over this window (REGISTRATIONS_PER_ADDRESS).
SIGN_UP_WINDOW = timedelta(hours=1)


def admin_only_fields(fields: Collection[str]) -> frozenset[str]:
    return frozenset(fields) - SELF_SERVICE_FIELDS


def require_admin_for(fields: Collection[str], *, admin: bool, doing: str) -> None:
    """403 when a non-admin sends a field that is not theirs to send, even unchanged."""
    refused = admin_only_fields(fields)
    if refused and not admin:
        names = " or ".join(sorted(refused))
        raise Forbidden(f"Only an admin may {doing} {names}.")


def signed_in(caller_is_admin: bool | None) -> bool:
    """Whether the caller is an admin; Unauthorized when their token is not honoured
    (None: no row matched: deleted, deactivated, or revoked)."""
    if caller_is_admin is None:
        raise Unauthorized
    return caller_is_admin


def missing_user(caller_is_admin: bool | None) -> NotFound:
    """Why a user a caller asked for was not there: 401 before 404. A non-admin asking
    for someone else gets the same 404 as for nobody, so ids do not leak."""
    signed_in(caller_is_admin)
    return NotFound("No user with this id.")


def require_admin(caller_is_admin: bool | None, *, doing: str) -> None:
    """What only admins may do (list users, manage groups): 401, then 403."""
    if not signed_in(caller_is_admin):
        raise Forbidden(f"Only an admin may {doing}.")


def require_lister(caller_is_admin: bool | None) -> None:
    """Listing users is for admins: 401, then 403."""
    require_admin(caller_is_admin, doing="list users")


def refuse_creation(
    fields: Collection[str], *, signed_in: bool, admin: bool, allow_registration: bool
) -> None:
    """Admins create anyone; others register themselves while registration is open, and
    never with a field that is an admin's to set."""
    if admin:
        return
    if not allow_registration:
        if not signed_in:
            raise Unauthorized("Registration is closed.")
        raise Forbidden("Registration is closed; only an admin may create users.")
    require_admin_for(fields, admin=False, doing="set")


def refuse_taken(*, email: bool, username: bool) -> None:
    """409 for an email or username another user has, before the hash: the unique
    indexes would refuse the INSERT after it (and still settle a race). The email first,
    as the INSERT's own check would name it."""
    if email:
        raise Conflict.taken("email")
    if username:
        raise Conflict.taken("username")


async def check_password(
    passwords: Passwords,
    password: str,
    *,
    email: str,
    username: str,
    min_length: int,
    field: str = "password",
) -> None:
    """422 on the body's `field` when the policy refuses the password, with zxcvbn's
    feedback in `ctx`."""
    violation = await passwords.violation(
        password, email=email, username=username, min_length=min_length
    )
    if violation is not None:
        raise InvalidInput(
            loc=("body", field),
            msg=f"Password {str(violation).rstrip('.')}.",
            ctx=violation.feedback(),
        )
