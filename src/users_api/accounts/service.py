"""Password reset (and, with it, the mailed single-use tokens): the rules. No HTTP.

A reset request is one transaction, whether or not the address is known: the client
address is counted (429 past PASSWORD_RESETS_PER_ADDRESS), then a known, active user
with fewer than five reset mails in the hour gets a new token (the older ones die) and a
mail in the outbox. Nothing in the answer, and little in its time, tells which happened.

The confirm sets the password through the users service's one road for it
(`UserService.set_password`) in the transaction that uses the token up, so a password
the policy refuses (422) rolls the token's use back with it.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import KW_ONLY, dataclass
from datetime import timedelta

from uuid_utils.compat import uuid7

from users_api.accounts import queries as q
from users_api.db.database import Database, Unit
from users_api.errors import (
    AlreadyVerified,
    InvalidToken,
    TooManyResets,
    TooManyVerificationMails,
    Unauthorized,
)
from users_api.mail import letters
from users_api.mail.messages import Mailer
from users_api.security.tokens import AccessClaims
from users_api.throttle.service import seconds_to_wait
from users_api.users.service import UserService

PASSWORD_RESET = "password-reset"  # noqa: S105  # a purpose, not a password
VERIFY_EMAIL = "verify-email"
# Requests are counted per client address, and mails per account, over this window.
WINDOW = timedelta(hours=1)
RESETS_PER_ACCOUNT = 5
VERIFICATIONS_PER_ACCOUNT = 5


def new_token() -> str:
    """256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """SHA-256 is enough: the token is 256 random bits, not a guessable password."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


async def issue(unit: Unit, user_id: uuid.UUID, email: str, purpose: str, ttl: timedelta) -> str:
    """A new token of `purpose` for the user, mailed to `email`; their older ones die."""
    token = new_token()
    of_user = {"user_id": user_id, "purpose": purpose}
    await unit.execute(
        q.ISSUE_TOKEN,
        **of_user,
        window=WINDOW,
        id=uuid7(),
        token_hash=hash_token(token),
        email=email,
        ttl=ttl,
    )
    return token


def spend(token: str, purpose: str) -> Callable[[Unit], Awaitable[uuid.UUID]]:
    """The step that uses up a mailed `token` of `purpose` in the change's own transaction
    (the users service runs it): its holder's id, once every token of that purpose the
    holder has died with it; InvalidToken when it is unknown, used up or expired. A reset
    and a verification spend their tokens alike."""
    token_hash = hash_token(token)

    async def use(unit: Unit) -> uuid.UUID:
        user_id: uuid.UUID | None = await unit.value(
            q.USE_TOKEN, token_hash=token_hash, purpose=purpose
        )
        if user_id is None:
            raise InvalidToken
        await unit.execute(q.END_TOKENS, user_id=user_id, purpose=purpose)
        return user_id

    return use


@dataclass(frozen=True, slots=True)
class VerificationMail:
    """A verification token mailed to an address, in the caller's transaction: the users
    service's `verification` (registration, a change of email) and the resend."""

    mailer: Mailer
    ttl: timedelta

    async def __call__(self, unit: Unit, user_id: uuid.UUID, email: str) -> None:
        token = await issue(unit, user_id, email, VERIFY_EMAIL, self.ttl)
        link = self.mailer.link("verify-email", token)
        letter = letters.verify_email(link, int(self.ttl.total_seconds()))
        await self.mailer.enqueue(unit, to=email, **letter)


@dataclass(frozen=True, slots=True)
class AccountService:
    """Stateless, one per app."""

    db: Database
    users: UserService
    mailer: Mailer
    _: KW_ONLY
    reset_ttl: timedelta
    resets_per_address: int
    verification: VerificationMail

    async def request_reset(self, email: str, *, address: str) -> None:
        """Mail a reset token to `email` if it is an active user's; 429 past the address's
        limit, and nothing else to tell."""

        async def request(unit: Unit) -> int | None:
            await unit.execute(q.LOCK_RESET_REQUESTS, address=address)
            marks = await unit.one(
                q.COUNT_RESET_REQUEST, address=address, limit=self.resets_per_address, window=WINDOW
            )
            assert marks is not None  # one row always
            wait = seconds_to_wait((marks["mark"],), now=marks["now"], window=WINDOW)
            if wait is not None:
                return wait
            user = await unit.one(
                q.RESET_TARGET, email=email, purpose=PASSWORD_RESET, window=WINDOW
            )
            if user is None or user["recent"] >= RESETS_PER_ACCOUNT:
                return None  # unknown, inactive, or mailed enough: the same answer
            token = await issue(unit, user["id"], user["email"], PASSWORD_RESET, self.reset_ttl)
            link = self.mailer.link("reset-password", token)
            letter = letters.password_reset(link, int(self.reset_ttl.total_seconds()))
            await self.mailer.enqueue(unit, to=user["email"], **letter)
            return None

        wait = await self.db.run(request)
        if wait is not None:
            raise TooManyResets(wait)
        self.users.wake_outbox()

    async def confirm_reset(self, token: str, new_password: str) -> None:
        """Set the password of the token's holder; 400 `invalid-token` when it is unknown,
        used up or expired; every session of the user ends, every reset token dies."""
        await self.users.set_password(spend(token, PASSWORD_RESET), new_password)

    async def verify_email(self, token: str) -> None:
        """`email_verified` becomes true; 400 `invalid-token` when the token is unknown,
        used up, expired, or was mailed to an address the user no longer has."""
        await self.users.mark_verified(spend(token, VERIFY_EMAIL))

    async def resend_verification(self, caller: AccessClaims) -> None:
        """A new verification mail to the caller (the older tokens die); 409 when already
        verified; 429 past VERIFICATIONS_PER_ACCOUNT mails an hour."""
        values = {
            "caller_id": caller.user_id,
            "auth_version": caller.auth_version,
            "session_id": caller.session_id,
        }

        async def resend(unit: Unit) -> None:
            user = await unit.one(
                q.CALLER_TOKEN_MARK,
                **values,
                purpose=VERIFY_EMAIL,
                window=WINDOW,
                limit=VERIFICATIONS_PER_ACCOUNT,
            )
            if user is None:
                raise Unauthorized
            if user["email_verified"]:
                raise AlreadyVerified
            wait = seconds_to_wait((user["mark"],), now=user["now"], window=WINDOW)
            if wait is not None:
                raise TooManyVerificationMails(wait)
            await self.verification(unit, user["id"], user["email"])

        await self.db.run(resend)
        self.users.wake_outbox()
