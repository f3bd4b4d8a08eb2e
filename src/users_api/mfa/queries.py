"""Every statement of the second factor, compiled once. No rules."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    LargeBinary,
    String,
    Uuid,
    and_,
    bindparam,
    delete,
    exists,
    func,
    literal_column,
    null,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, insert

from users_api.db.statements import compile_statement
from users_api.mfa.models import MfaChallenge, RecoveryCode, TotpFactor
from users_api.users.models import User, UserSession
from users_api.users.queries import caller, caller_honoured, end_sessions

_USER_ID = bindparam("user_id", type_=Uuid)

# --- the caller's account, for a change of their second factor ----------------------

# The caller's row, locked, while their token is honoured (else no row).
CALLER_ACCOUNT_FOR_UPDATE = compile_statement(
    select(User.id, User.email, User.password_hash, User.mfa_enabled)
    .where(caller_honoured(User))
    .with_for_update(of=User)
)
# Whether a user an admin acts on has MFA on, the row locked, while the caller is an
# honoured admin (else no row).
TARGET_FOR_ADMIN = compile_statement(
    select(User.mfa_enabled)
    .where(
        User.id == _USER_ID,
        exists().where(caller_honoured(), caller.is_admin.is_(True)),
    )
    .with_for_update(of=User)
)

# --- the TOTP secret ------------------------------------------------------------------

TOTP_FOR_UPDATE = compile_statement(
    select(
        TotpFactor.secret,
        TotpFactor.confirmed_at.is_not(None).label("confirmed"),
        TotpFactor.last_step,
    )
    .where(TotpFactor.user_id == _USER_ID)
    .with_for_update()
)
# A pending secret, replacing any earlier one (a confirmed one is refused before this).
PUT_PENDING_TOTP = compile_statement(
    insert(TotpFactor)
    .values(user_id=_USER_ID, secret=bindparam("secret", type_=LargeBinary))
    .on_conflict_do_update(
        index_elements=[TotpFactor.user_id],
        set_={
            "secret": bindparam("secret", type_=LargeBinary),
            "created_at": func.now(),
            "confirmed_at": null(),
            "last_step": null(),
        },
    )
)
# A code of `step` was accepted: no code of that step or before is accepted again. The
# first accepted code confirms a pending secret; `secret` may be sealed anew (rotation).
USE_STEP = compile_statement(
    update(TotpFactor)
    .where(TotpFactor.user_id == _USER_ID)
    .values(
        last_step=bindparam("step", type_=BigInteger),
        secret=bindparam("secret", type_=LargeBinary),
        confirmed_at=func.coalesce(TotpFactor.confirmed_at, func.now()),
    )
)
DELETE_TOTP = compile_statement(delete(TotpFactor).where(TotpFactor.user_id == _USER_ID))

# --- recovery codes -------------------------------------------------------------------

# One unused code of the user with this hash is used up; its id (NULL: none).
USE_RECOVERY_CODE = compile_statement(
    update(RecoveryCode)
    .where(
        RecoveryCode.id
        == select(RecoveryCode.id)
        .where(
            RecoveryCode.user_id == _USER_ID,
            RecoveryCode.code_hash == bindparam("code_hash", type_=String),
            RecoveryCode.used_at.is_(None),
        )
        .limit(literal_column("1"))
        .scalar_subquery()
    )
    .values(used_at=func.now())
    .returning(RecoveryCode.id)
)
DELETE_RECOVERY_CODES = compile_statement(
    delete(RecoveryCode).where(RecoveryCode.user_id == _USER_ID)
)
INSERT_RECOVERY_CODES = compile_statement(
    insert(RecoveryCode).from_select(
        ["id", "user_id", "code_hash"],
        select(
            func.unnest(bindparam("ids", type_=ARRAY(Uuid))),
            _USER_ID,
            func.unnest(bindparam("hashes", type_=ARRAY(String))),
        ),
    )
)

# --- sign-ins waiting for their second factor ------------------------------------------

# A new challenge, and the user's expired ones forgotten: one statement.
_FORGET_CHALLENGES = (
    delete(MfaChallenge)
    .where(MfaChallenge.user_id == _USER_ID, MfaChallenge.expires_at <= func.now())
    .cte("forgotten")
)
START_CHALLENGE = compile_statement(
    insert(MfaChallenge)
    .values(
        id=bindparam("id", type_=Uuid),
        token_hash=bindparam("token_hash", type_=String),
        user_id=_USER_ID,
        auth_version=bindparam("auth_version"),
        expires_at=bindparam("expires_at", type_=MfaChallenge.expires_at.type),
    )
    .add_cte(_FORGET_CHALLENGES)
)
_TOKEN_HASH = MfaChallenge.token_hash == bindparam("token_hash", type_=String)
CHALLENGE_HOLDER = compile_statement(select(MfaChallenge.user_id).where(_TOKEN_HASH))
CHALLENGE_FOR_UPDATE = compile_statement(
    select(
        MfaChallenge.id,
        MfaChallenge.user_id,
        MfaChallenge.auth_version,
        and_(MfaChallenge.used_at.is_(None), MfaChallenge.expires_at > func.now()).label("live"),
    )
    .where(_TOKEN_HASH)
    .with_for_update()
)
USE_CHALLENGE = compile_statement(
    update(MfaChallenge)
    .where(MfaChallenge.id == bindparam("id", type_=Uuid))
    .values(used_at=func.now())
)
DELETE_CHALLENGES = compile_statement(delete(MfaChallenge).where(MfaChallenge.user_id == _USER_ID))

# --- sessions -------------------------------------------------------------------------

# Every session of the user but the caller's own ends (confirming MFA).
END_OTHER_SESSIONS = compile_statement(
    end_sessions(
        UserSession.user_id == _USER_ID,
        UserSession.id != bindparam("session_id", type_=UserSession.id.type),
    )
)
