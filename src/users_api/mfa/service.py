"""The rules of the second factor: enrolment, its confirmation, turning it off, recovery
codes, an admin's reset, and the one check that a code proves the factor.

Every answer a user gives here (a `current_password`, a code) is answered for the
account as a login's password is (`LoginThrottle.answer`): under the account's lock,
throttled, a wrong one counted as a failed login. Failures are returned from the unit
of work, so that it commits what they recorded, and raised after it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import KW_ONLY, dataclass
from typing import TypeVar

from uuid_utils.compat import uuid7

from users_api.db.database import Database, Record, Unit
from users_api.errors import Conflict, DomainError, Forbidden, InvalidCode, Unauthorized
from users_api.events.writer import EventWriter, user_actor
from users_api.mfa import queries as q
from users_api.security.mfa import (
    SecretBox,
    SecretBoxError,
    hash_recovery_code,
    matching_step,
    new_recovery_codes,
    new_secret,
    provisioning_uri,
)
from users_api.security.passwords import HashingTurn, Passwords
from users_api.security.tokens import AccessClaims
from users_api.throttle.service import LoginThrottle
from users_api.users import policy
from users_api.users import queries as users_q
from users_api.users.queries import caller_values

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SecondFactor:
    """The one check that a code proves a user's second factor."""

    box: SecretBox

    async def check(
        self, unit: Unit, user_id: uuid.UUID, code: str, *, pending: bool = False
    ) -> bool:
        """Whether `code` is a TOTP code of the user's secret (confirmed; or, `pending`,
        the one awaiting confirmation, which it then confirms), for a time step within
        one of now and later than the last accepted one; or else (confirmed only) an
        unused recovery code. What it accepts is used up in the same transaction."""
        totp = await unit.one(q.TOTP_FOR_UPDATE, user_id=user_id)
        if totp is None or totp["confirmed"] == pending:
            return False
        try:
            secret, current = self.box.open(totp["secret"], user_id)
        except SecretBoxError:  # SECRET_KEY changed with no MFA_PREVIOUS_SECRET_KEY
            log.warning("the TOTP secret of user %s opens under no key", user_id)
        else:
            typed = "".join(code.split())  # "492 039", as apps show it, is "492039"
            step = matching_step(secret, typed, after=totp["last_step"])
            if step is not None:
                sealed = totp["secret"] if current else self.box.seal(secret, user_id)
                await unit.execute(q.USE_STEP, user_id=user_id, step=step, secret=sealed)
                return True
        if pending:
            return False
        used = await unit.value(
            q.USE_RECOVERY_CODE, user_id=user_id, code_hash=hash_recovery_code(code)
        )
        return used is not None


@dataclass(frozen=True, slots=True)
class _Account:
    """The caller's locked row, and the key of the account's lock (held)."""

    row: Record
    key: str


@dataclass(frozen=True, slots=True)
class Enrolment:
    secret: str
    otpauth_uri: str


@dataclass(frozen=True, slots=True)
class MfaService:
    """Stateless, one per app."""

    db: Database
    _: KW_ONLY
    passwords: Passwords
    throttle: LoginThrottle
    factor: SecondFactor
    # Writes `user.mfa_enabled` and `user.mfa_disabled`, in their change's transaction.
    events: EventWriter

    async def enrol(
        self, caller: AccessClaims, current_password: str, *, address: str
    ) -> Enrolment:
        """A new pending TOTP secret (replacing a pending one); 409 while MFA is on."""

        async def enrol(unit: Unit, account: Record) -> Enrolment:
            if account["mfa_enabled"]:
                raise Conflict("MFA is already on; turn it off first.")
            secret = new_secret()
            sealed = self.factor.box.seal(secret, account["id"])
            await unit.execute(q.PUT_PENDING_TOTP, user_id=account["id"], secret=sealed)
            return Enrolment(secret=secret, otpauth_uri=provisioning_uri(secret, account["email"]))

        return await self._answered(caller, current_password, None, enrol, address=address)

    async def confirm(self, caller: AccessClaims, code: str, *, address: str) -> list[str]:
        """MFA on, with ten new recovery codes; every other session of the user ends."""

        async def confirm(unit: Unit) -> list[str] | DomainError:
            account = await self._account(unit, caller)
            user_id = account.row["id"]
            if account.row["mfa_enabled"]:
                raise Conflict("MFA is already on.")
            refused = await self._answer_code(unit, account, code, address, pending=True)
            if refused is not None:
                return refused
            codes = await self._new_recovery_codes(unit, user_id)
            await self._set_enabled(unit, user_id, enabled=True, by=caller.user_id)
            await unit.execute(q.END_OTHER_SESSIONS, user_id=user_id, session_id=caller.session_id)
            return codes

        return _raised(await self.db.run(confirm))

    async def disable(
        self, caller: AccessClaims, current_password: str, code: str, *, address: str
    ) -> None:
        """MFA off: the secret, the recovery codes and waiting sign-ins go."""

        async def disable(unit: Unit, account: Record) -> None:
            await self._turn_off(unit, account["id"], enabled=True, by=caller.user_id)

        await self._answered(caller, current_password, code, disable, address=address)

    async def regenerate(
        self, caller: AccessClaims, current_password: str, code: str, *, address: str
    ) -> list[str]:
        """Ten new recovery codes; the old ones die."""

        async def regenerate(unit: Unit, account: Record) -> list[str]:
            return await self._new_recovery_codes(unit, account["id"])

        return await self._answered(caller, current_password, code, regenerate, address=address)

    async def reset(self, user_id: uuid.UUID, *, caller: AccessClaims) -> None:
        """An admin turns a user's MFA off (a lost device): every session of theirs ends."""
        values = {**caller_values(caller), "user_id": user_id}

        async def reset(unit: Unit) -> None:
            enabled = await unit.value(q.TARGET_FOR_ADMIN, **values)
            if enabled is None:  # no such user, not an admin, or not signed in
                is_admin = policy.signed_in(await unit.value(users_q.CALLER_IS_ADMIN, **values))
                if not is_admin:
                    raise Forbidden(
                        "Only an admin may turn off a user's MFA here; turn off your own "
                        "with DELETE /api/v1/auth/mfa, your password and a code."
                    )
                raise policy.missing_user(is_admin)
            await self._turn_off(unit, user_id, enabled=enabled, by=caller.user_id)
            await unit.execute(users_q.END_USER_SESSIONS, user_id=user_id)

        await self.db.run(reset)

    # --- the parts ---------------------------------------------------------------------

    async def _answered(
        self,
        caller: AccessClaims,
        current_password: str,
        code: str | None,
        then: Callable[[Unit, Record], Awaitable[T]],
        *,
        address: str,
    ) -> T:
        """`then` on the caller's locked account, once they have answered for it: the
        password, then (`code` given) whether MFA is on, then the code.

        The hashing turn before the connection, as at a login (see `UserService.update`).
        """
        async with self.passwords.turn() as hashing:

            async def work(unit: Unit) -> T | DomainError:
                account = await self._account(unit, caller)
                refused = await self._answer_password(
                    unit, account, current_password, hashing, address
                )
                if refused is not None:
                    return refused
                if code is not None:
                    if not account.row["mfa_enabled"]:
                        raise Conflict("MFA is not on.")
                    refused = await self._answer_code(unit, account, code, address)
                    if refused is not None:
                        return refused
                return await then(unit, account.row)

            return _raised(await self.db.run(work))

    async def _account(self, unit: Unit, caller: AccessClaims) -> _Account:
        """The caller's account lock, then their row locked (401 if not honoured)."""
        key = await self.throttle.lock_user(unit, caller.user_id)
        row = await unit.one(q.CALLER_ACCOUNT_FOR_UPDATE, **caller_values(caller))
        if row is None:
            raise Unauthorized
        return _Account(row, key)

    async def _answer_password(
        self, unit: Unit, account: _Account, password: str, hashing: HashingTurn, address: str
    ) -> DomainError | None:
        async def right() -> bool:
            ok, _ = await hashing.verify_and_update(password, account.row["password_hash"])
            return ok

        return await self.throttle.answer(
            unit,
            account_key=account.key,
            address=address,
            check=right,
            refusal=Forbidden("current_password is not correct."),
        )

    async def _answer_code(
        self, unit: Unit, account: _Account, code: str, address: str, *, pending: bool = False
    ) -> DomainError | None:
        async def right() -> bool:
            return await self.factor.check(unit, account.row["id"], code, pending=pending)

        return await self.throttle.answer(
            unit,
            account_key=account.key,
            address=address,
            check=right,
            refusal=InvalidCode(),
        )

    async def _new_recovery_codes(self, unit: Unit, user_id: uuid.UUID) -> list[str]:
        fresh = new_recovery_codes()
        await unit.execute(q.DELETE_RECOVERY_CODES, user_id=user_id)
        await unit.execute(
            q.INSERT_RECOVERY_CODES,
            user_id=user_id,
            ids=[uuid7() for _ in fresh.hashes],
            hashes=fresh.hashes,
        )
        return fresh.codes

    async def _set_enabled(
        self, unit: Unit, user_id: uuid.UUID, *, enabled: bool, by: uuid.UUID
    ) -> None:
        """`mfa_enabled` in step with the factor: a change of the user (its version
        grows), and its event, by the user `by`."""
        await unit.execute(_SET_ENABLED, user_id=user_id, **{users_q.new("mfa_enabled"): enabled})
        await self.events.write(
            unit,
            "user.mfa_enabled" if enabled else "user.mfa_disabled",
            actor=user_actor(by),
            subject_type="user",
            subject_id=user_id,
        )

    async def _turn_off(
        self, unit: Unit, user_id: uuid.UUID, *, enabled: bool, by: uuid.UUID
    ) -> None:
        """The secret (pending or not), the recovery codes and waiting sign-ins go; and
        `mfa_enabled` when it was on."""
        await unit.execute(q.DELETE_TOTP, user_id=user_id)
        await unit.execute(q.DELETE_RECOVERY_CODES, user_id=user_id)
        await unit.execute(q.DELETE_CHALLENGES, user_id=user_id)
        if enabled:
            await self._set_enabled(unit, user_id, enabled=False, by=by)


_SET_ENABLED = users_q.update_user(frozenset({"mfa_enabled"}), guarded=False, conditional=False)


def _raised(result: T | DomainError) -> T:
    if isinstance(result, DomainError):
        raise result
    return result
