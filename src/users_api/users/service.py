"""The rules for users: reading, creating, changing and deleting them. No HTTP.

Stateless, one per app: every method runs one unit of work (`Database.run`), committed
before it returns. Every front (REST, CLI, start-up) calls these methods.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import KW_ONLY, dataclass
from functools import partial
from typing import Any

from uuid_utils.compat import uuid7

from users_api.db.database import Database, Record, Unit, Work
from users_api.errors import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidCursor,
    NotFound,
    PreconditionFailed,
    TooManySignUps,
)
from users_api.events.writer import SYSTEM, Actor, EventWriter, user_actor
from users_api.mail import letters
from users_api.mail.messages import Mailer
from users_api.outbox.sender import Sender
from users_api.security.passwords import HashingTurn, Passwords
from users_api.security.tokens import AccessClaims
from users_api.throttle.service import LoginThrottle, seconds_to_wait
from users_api.users import cursor, policy
from users_api.users import queries as q
from users_api.users.queries import UserRow, as_row, caller_values
from users_api.users.schemas import (
    ProvisionedUpdate,
    ProvisionedUser,
    UserCreate,
    UserListQuery,
    UserUpdate,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RowPage:
    items: list[UserRow]
    next_cursor: str | None


# Changed, but not shown by name in `user.updated`: secrets, and what follows from them.
_UNSHOWN_FIELDS = frozenset({"password_hash", "auth_version"})

# (unit, user id, address): a verification token mailed to the address, in that unit.
MailVerification = Callable[[Unit, uuid.UUID, str], Awaitable[None]]
# Called with the delete's unit, the user and the caller (None: the system).
LeaveGroups = Callable[[Unit, uuid.UUID, AccessClaims | None], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class _Answer:
    """What a password change answers with: its hashing turn; for one's own password,
    the account's key (its lock held) and the client's address, for the throttle."""

    hashing: HashingTurn
    account_key: str | None
    address: str
    # The body field the new password came in, for a 422's `loc`.
    field: str = "password"


@dataclass(frozen=True, slots=True)
class UserService:
    db: Database
    passwords: Passwords
    _: KW_ONLY
    password_min_length: int
    allow_registration: bool
    throttle: LoginThrottle
    # Writes the audit event of every change, in the change's transaction.
    events: EventWriter
    # Ends every membership of a user being deleted, in the delete's transaction
    # (`groups.service.GroupService.leave_all`: the groups' rule and events; `groups`
    # builds on `users`, so it is handed in).
    leave_groups: LeaveGroups
    # Sign-ups an hour per client address (REGISTRATIONS_PER_ADDRESS); the CLI creates
    # as the system, which is never counted.
    registrations_per_address: int = 20
    # Notices mailed on changes (written into the outbox with the change), and the sender
    # to wake when one was; None: nothing is mailed (the CLI).
    mailer: Mailer | None = None
    outbox: Sender | None = None
    # Mails a verification token to a (new) address in the caller's transaction
    # (`accounts.service.VerificationMail`); None: nothing is mailed.
    verification: MailVerification | None = None

    # --- reading -------------------------------------------------------------------

    async def get(self, user_id: uuid.UUID, *, caller: AccessClaims) -> UserRow:
        """Admins see anyone; others only themselves (404 for the rest, not 403)."""

        async def read(unit: Unit) -> Record:
            values = caller_values(caller)
            record = await unit.one(q.USER_BY_ID, user_id=user_id, **values)
            if record is None:  # no such user, not theirs to see, or not signed in
                raise policy.missing_user(await unit.value(q.CALLER_IS_ADMIN, **values))
            return record

        return as_row(await self.db.run(read, transaction=False))

    async def require_honoured(self, caller: AccessClaims) -> None:
        """Unauthorized unless the caller's token is still honoured (`caller_honoured`): for
        a request refused before any statement of its own asked."""
        policy.signed_in(
            await self.db.run(_caller_is_admin(caller_values(caller)), transaction=False)
        )

    async def list(self, query: UserListQuery, *, caller: AccessClaims) -> RowPage:
        values: dict[str, Any] = caller_values(caller)
        try:
            after = (
                None
                if query.cursor is None
                else cursor.decode(query.cursor, query.sort, scope=cursor.USERS)
            )
        except InvalidCursor:
            # Who may ask is answered first (401, 403), as for every other request.
            policy.require_lister(await self.db.run(_caller_is_admin(values), transaction=False))
            raise
        filters = {name: getattr(query, name) for name in q.FILTERS}
        replicated = self.db.replicated
        shape = q.PageShape(
            sort=query.sort,
            filters=frozenset(name for name, value in filters.items() if value is not None),
            after=after is not None,
            guarded=not replicated,
        )
        values.update(filters, limit=query.limit + 1)
        if query.q is not None:
            values["q"] = f"%{q.escape_like(query.q)}%"
        if after is not None:
            values["after_key"], values["after_id"] = after.key, after.id
        statement = q.page(shape)

        async def read(unit: Unit) -> list[Record]:
            records = await unit.all(statement, **values)
            if not records and not replicated:  # nothing matched, not an admin, or signed out
                policy.require_lister(await unit.value(q.CALLER_IS_ADMIN, **values))
            return records

        if replicated:
            # Who may list is decided on the primary; the page may be a moment old, and
            # holds no check of the caller (a session made a moment ago is not there yet).
            policy.require_lister(await self.db.run(_caller_is_admin(values), transaction=False))
        records = await self.db.read(read)
        # as_row, inlined: one Python call fewer per row
        rows = [dict(zip(q.PUBLIC_FIELDS, record, strict=True)) for record in records]
        items = rows[: query.limit]
        next_cursor = None
        if len(rows) > query.limit:
            last = items[-1]
            next_cursor = cursor.encode(
                cursor.Position(
                    scope=cursor.USERS, sort=query.sort, key=last[query.sort.key], id=last["id"]
                )
            )
        return RowPage(items=items, next_cursor=next_cursor)

    # --- creating ------------------------------------------------------------------

    async def create(
        self,
        data: UserCreate | ProvisionedUser,
        *,
        caller: AccessClaims | None,
        system: bool = False,
        verified: bool = False,
        address: str = "unknown",
    ) -> UserRow:
        """Register, or create as an admin (or as the system: start-up, the CLI, SCIM).

        No connection is held during the hash, and a creation that cannot succeed costs
        none. One statement first: who the caller is, and whether the email or username
        is taken. A sign-up (by anyone but an admin or the system) is then counted
        against its client `address`, and refused past `registrations_per_address` an
        hour (429); a taken email or username is 409 and a weak password 422, all before
        the hash. Then the INSERT, where the unique indexes settle a race. An admin's
        INSERT checks again that its caller is still an admin, so a demotion during the
        hash creates nobody. `verified`: the operator vouches for the address (the
        first admin of the settings, `create-admin`), which is then verified and mailed
        nothing: with REQUIRE_VERIFIED_EMAIL an unverified admin could never sign in.
        """
        fields = data.model_fields_set
        if caller is None:  # no database needed to refuse
            policy.refuse_creation(
                fields,
                signed_in=False,
                admin=system,
                allow_registration=self.allow_registration,
            )
        checked = {
            "caller_id": caller.user_id if caller else None,
            "auth_version": caller.auth_version if caller else None,
            "session_id": caller.session_id if caller else None,
            "email": data.email,
            "username": data.username,
        }
        found = await self.db.run(_creation_check(checked), transaction=False)
        as_admin = False
        if caller is not None:
            as_admin = policy.signed_in(found["caller_is_admin"])
            policy.refuse_creation(
                fields, signed_in=True, admin=as_admin, allow_registration=self.allow_registration
            )
        if not (as_admin or system):
            wait = await self.db.run(self._count_sign_up(address))
            if wait is not None:
                raise TooManySignUps(wait)
        policy.refuse_taken(email=found["email_taken"], username=found["username_taken"])
        password_hash = None  # a provisioned user may come without one
        if data.password is not None:
            if not isinstance(data, ProvisionedUser):  # a provider's passed its own policy
                await self._check_password(data.password, email=data.email, username=data.username)
            password_hash = await self.passwords.hash(data.password)
        if isinstance(data, UserCreate) and data.email_verified:
            verified = True  # an admin's say (a non-admin's was refused above)
        external_id, scim = None, None
        if isinstance(data, ProvisionedUser):
            external_id = data.external_id
            scim = json.dumps(data.scim) if data.scim is not None else None
        values: dict[str, Any] = {
            "id": uuid7(),
            "email": data.email,
            "username": data.username,
            "full_name": data.full_name,
            "password_hash": password_hash,
            "is_active": True if data.is_active is None else data.is_active,
            "is_admin": bool(data.is_admin),
            "email_verified": verified,
            "external_id": external_id,
            "scim": scim,
        }
        mail = not (system or verified) and self.verification is not None
        actor = SYSTEM if system else user_actor(caller.user_id if caller else values["id"])
        if not as_admin or caller is None:
            work = self._recording_creation(
                self._mailing_verification(_insert(values), mail=mail), actor
            )
            created = as_row(await self.db.run(work))
            self.wake_outbox()
            return created
        admin_values = {**values, **caller_values(caller)}

        async def insert_as_admin(unit: Unit) -> Record:
            await claim_sign_in_names(unit, values["id"], values)
            record = await unit.one(q.INSERT_USER_AS_ADMIN, **admin_values)
            if record is None:  # demoted, or signed out, while the password was hashed
                is_admin = policy.signed_in(await unit.value(q.CALLER_IS_ADMIN, **admin_values))
                policy.refuse_creation(
                    fields,
                    signed_in=True,
                    admin=is_admin,
                    allow_registration=self.allow_registration,
                )
                record = await _insert(values, claimed=True)(unit)
            return record

        work = self._recording_creation(
            self._mailing_verification(insert_as_admin, mail=mail), actor
        )
        created = as_row(await self.db.run(work))
        self.wake_outbox()
        return created

    def _recording_creation(self, insert: Work[Record], actor: Actor) -> Work[Record]:
        """`insert`, then its `user.created` event, in one transaction."""

        async def insert_and_record(unit: Unit) -> Record:
            record = await insert(unit)
            data = {"is_admin": record["is_admin"], "is_active": record["is_active"]}
            await self.events.write(
                unit,
                "user.created",
                actor=actor,
                subject_type="user",
                subject_id=record["id"],
                data=data,
            )
            return record

        return insert_and_record

    def _mailing_verification(self, insert: Work[Record], *, mail: bool) -> Work[Record]:
        """`insert`, then (when `mail`) a verification mail to the new user, in its unit."""
        verification = self.verification
        if not mail or verification is None:
            return insert

        async def insert_and_mail(unit: Unit) -> Record:
            record = await insert(unit)
            await verification(unit, record["id"], record["email"])
            return record

        return insert_and_mail

    async def ensure_admin(self, *, email: str, username: str, password: str) -> UserRow | None:
        """Create this admin unless a user already has the email; None when nothing was done.

        Idempotent, and safe when several workers start at once: the loser of the race
        sees the unique index refuse the email and does nothing. A user who holds the
        username under another email (the first admin changed their address) is left
        alone too, with a warning: a start-up that failed there could never start again.
        """
        data = UserCreate(email=email, username=username, password=password, is_admin=True)
        if await self.db.run(_user_id_by_email(data.email), transaction=False) is not None:
            return None
        try:
            return await self.create(data, caller=None, system=True, verified=True)
        except Conflict as exc:
            if exc.field == "username":
                log.warning(
                    "FIRST_ADMIN_USERNAME %s belongs to a user with another email: "
                    "no first admin created",
                    username,
                )
                return None
            if exc.field == "email":
                return None
            raise

    def _count_sign_up(self, address: str) -> Work[int | None]:
        """Count a sign-up against its client address: seconds to wait, or None (counted).

        Under the address's lock, so racing sign-ups are counted one by one; committed
        whatever comes of the sign-up (409, 422 and 201 alike count).
        """

        async def count(unit: Unit) -> int | None:
            await unit.execute(q.LOCK_SIGN_UPS, address=address)
            marks = await unit.one(
                q.COUNT_SIGN_UP,
                address=address,
                limit=self.registrations_per_address,
                window=policy.SIGN_UP_WINDOW,
            )
            assert marks is not None  # one row always
            return seconds_to_wait((marks["mark"],), now=marks["now"], window=policy.SIGN_UP_WINDOW)

        return count

    async def _check_password(
        self, password: str, *, email: str, username: str, field: str = "password"
    ) -> None:
        await policy.check_password(
            self.passwords,
            password,
            email=email,
            username=username,
            min_length=self.password_min_length,
            field=field,
        )

    # --- changing ------------------------------------------------------------------

    async def update(
        self,
        user_id: uuid.UUID,
        patch: UserUpdate,
        *,
        caller: AccessClaims | None,
        if_match: frozenset[int] | None,
        address: str,
    ) -> UserRow:
        """A JSON merge patch, in one transaction. `caller` None: the system (the identity
        provider over SCIM), which may change what an admin may, through the same rules.

        A change of profile fields alone (name, email, username) is one guarded UPDATE
        that checks the caller, who may change whom and If-Match in its WHERE clause
        (`queries.update_user`); a name alone needs no transaction around it. Anything
        else (a password, an admin field), or a guarded UPDATE that found nothing to
        change, goes through the row lock and the rules below, in the same transaction.

        A user changing their own password answers for the account as a login does:
        under the account's lock, throttled, and a wrong `current_password` counted as a
        failed login from `address`. That failure is returned by the transaction, not
        raised in it, so that it commits, and raised here.
        """
        changes = patch.changes()
        fields = frozenset(changes)
        values: dict[str, Any] = {
            **(caller_values(caller) if caller is not None else {}),
            "user_id": user_id,
            "if_match": list(if_match or ()),
            **{q.new(name): value for name, value in changes.items()},
        }
        system = caller is None
        # The one-statement profile change checks a caller in its WHERE clause.
        profile = not system and bool(fields) and fields <= policy.PROFILE_FIELDS
        own_password = caller is not None and "password" in fields and caller.user_id == user_id
        actor = SYSTEM if caller is None else user_actor(caller.user_id)

        async def change(unit: Unit, hashing: HashingTurn | None = None) -> Record | DomainError:
            # Advisory locks first, then the row: one order everywhere, so no deadlock.
            if policy.admin_only_fields(fields):
                await unit.execute(q.LOCK_ADMIN_SET)
            identity = fields & policy.IDENTITY_FIELDS
            if identity:
                # Two users swapping names would each wait for the other's index entry.
                await unit.execute(q.LOCK_IDENTITIES)
                await lock_sign_in_names(unit, changes)
            result = await write(unit, hashing)
            if identity and not isinstance(result, DomainError):
                # After the write, so who may change whom is answered first (401, 404).
                await refuse_name_clash(unit, user_id, changes)
            return result

        async def write(unit: Unit, hashing: HashingTurn | None) -> Record | DomainError:
            if hashing is not None:  # a password: the rules, on the locked row
                # One's own is answered for as at a login: the account's lock, next.
                account = await self.throttle.lock_user(unit, user_id) if own_password else None
                answer = _Answer(hashing, account, address)
                return await self._change(
                    unit, fields, changes, patch, values, if_match, answer, actor, system=system
                )
            if not profile:
                return await self._change(
                    unit, fields, changes, patch, values, if_match, None, actor, system=system
                )
            conditional = if_match is not None
            folded = self.events.folded
            if folded is None:
                statement = q.update_user(fields, guarded=True, conditional=conditional)
                record = await unit.one(statement, **values)
                if record is not None:  # one of `fields` at least changed (the test)
                    await self._record_changes(unit, record, set(fields), actor)
                    return record
            else:  # the change, its event and the fan-out: one statement
                ((type_, data),) = _event_types(set(fields), None)
                event = self.events.event(
                    type_, actor=actor, subject_type="user", subject_id=user_id, data=data
                )
                statement = q.update_user(
                    fields,
                    guarded=True,
                    conditional=conditional,
                    recorded=tuple(fragment.cte for fragment in folded),
                )
                record = await unit.one(
                    statement, **values, **self.events.folded_values(event, folded)
                )
                if record is not None:
                    self.events.written(unit, event)
                    return record
            # None: why is for the rules to say (401, 404, 412), or nothing was to change.
            return await self._locked_target(unit, values, if_match)

        if "password" not in fields:
            # A change that is one statement with its event needs no transaction around it:
            # the statement commits whole. Anything more does, so its event commits with it.
            lone = profile and not fields & policy.IDENTITY_FIELDS and bool(self.events.folded)
            changed = as_row(await self.db.run(change, transaction=not lone))
            if "email" in fields:
                self.wake_outbox()  # the notice and the verification mail
            return changed
        # The hashing turn before the connection and the locks, as a login takes them: the
        # other way round, logins holding every turn while they wait for this account's
        # lock would wait for ever on this change, which would wait for a turn.
        async with self.passwords.turn() as hashing:
            result = await self.db.run(partial(change, hashing=hashing))
        if isinstance(result, DomainError):
            raise result
        self.wake_outbox()  # the notice of the new password
        return as_row(result)

    async def _change(
        self,
        unit: Unit,
        fields: frozenset[str],
        changes: dict[str, Any],
        patch: UserUpdate,
        values: dict[str, Any],
        if_match: frozenset[int] | None,
        answer: _Answer | None,
        actor: Actor,
        *,
        system: bool = False,
    ) -> Record | DomainError:
        """The rules a statement cannot hold, on the locked row."""
        target = await self._locked_target(unit, values, if_match, system=system)
        admin = system or target["caller_is_admin"]
        policy.require_admin_for(fields, admin=admin, doing="change")
        if "password" in changes:
            assert answer is not None  # a password change holds a hashing turn
            refused = await self._new_password(
                unit,
                target,
                changes,
                patch.current_password,
                answer,
                provided=isinstance(patch, ProvisionedUpdate),
            )
            if refused is not None:
                return refused
        removing = changes.get("is_admin") is False or changes.get("is_active") is False
        await self._guard_last_admin(unit, target, removing=removing)
        if changes.get("is_active") is False and target["is_active"]:
            changes["auth_version"] = target["auth_version"] + 1  # kills every token at once
        new_address = _new_address(target["email"], changes.get("email", target["email"]))
        if new_address and "email_verified" not in changes:  # an admin may say otherwise
            changes["email_verified"] = False
        return await self._write(unit, target, changes, values, actor)

    async def _write(
        self,
        unit: Unit,
        target: Record,
        changes: dict[str, Any],
        values: dict[str, Any],
        actor: Actor,
        *,
        reset: bool = False,
    ) -> Record:
        """Write what changes of the locked `target`; what follows from it in the same
        transaction: a new `auth_version` ends every session (and every mailed token,
        `accounts.models.MailToken`), a new password is noticed
        to the address, the events say what changed (`reset`: the password by a reset
        token)."""
        changed = {name for name, value in changes.items() if _stored(target, name) != value}
        if not changed:
            return target
        for name in changed:
            values[q.new(name)] = _to_store(name, changes[name])
        statement = q.update_user(frozenset(changed), guarded=False, conditional=False)
        record = await unit.one(statement, **values)
        assert record is not None  # the row is locked: it is there
        await self._record_changes(unit, record, changed, actor, reset=reset)
        if "auth_version" in changed:  # every token dies: so do the sessions they are of
            await unit.execute(q.END_USER_SESSIONS, user_id=target["id"])
        if "password_hash" in changed and self.mailer is not None:
            await self.mailer.enqueue(unit, to=target["email"], **letters.password_changed())
        moved = "email" in changed and _new_address(target["email"], changes["email"])
        if moved and self.mailer is not None:  # a new spelling of the address tells nobody
            await self.mailer.enqueue(unit, to=target["email"], **letters.email_changed())
            if self.verification is not None and not record["email_verified"]:
                await self.verification(unit, target["id"], changes["email"])
        return record

    async def _record_changes(
        self, unit: Unit, record: Record, changed: set[str], actor: Actor, *, reset: bool = False
    ) -> None:
        """The events of a change of the user `record` now is (`_event_types`)."""
        for type_, data in _event_types(changed, record, reset=reset):
            await self.events.write(
                unit, type_, actor=actor, subject_type="user", subject_id=record["id"], data=data
            )

    def wake_outbox(self) -> None:
        """Deliver what a committed change mailed now, not at the next poll."""
        if self.outbox is not None:
            self.outbox.wake()

    async def mark_verified(self, find: Callable[[Unit], Awaitable[uuid.UUID]]) -> None:
        """`email_verified` becomes true for the user `find` names in the same transaction
        (the holder of a verification token): a change of the user like any other."""

        async def change(unit: Unit) -> None:
            user_id = await find(unit)
            target = await unit.one(q.USER_FOR_UPDATE, user_id=user_id)
            assert target is not None  # `find` found it
            changes: dict[str, Any] = {"email_verified": True}
            await self._write(unit, target, changes, {"user_id": user_id}, user_actor(user_id))

        await self.db.run(change)

    async def set_password(
        self, find: Callable[[Unit], Awaitable[uuid.UUID]], password: str
    ) -> None:
        """Set the password of the user `find` names in the same transaction (the holder of
        a reset token; the password came as `new_password`), as every password change is
        set: the policy (a 422 rolls the whole transaction back, `find`'s part too), the
        hash, a new `auth_version` (every token and session dies), the notice. The token
        was mailed to the user's address as it still is (`accounts.models.MailToken`), so
        the address is verified too: with REQUIRE_VERIFIED_EMAIL, a user whose
        verification mail was lost or expired signs in again this way."""
        async with self.passwords.turn() as hashing:

            async def change(unit: Unit) -> None:
                user_id = await find(unit)
                target = await unit.one(q.USER_FOR_UPDATE, user_id=user_id)
                assert target is not None  # `find` found it
                changes: dict[str, Any] = {"password": password, "email_verified": True}
                answer = _Answer(hashing, None, "", field="new_password")
                refused = await self._new_password(unit, target, changes, None, answer)
                assert refused is None  # no current password asked: nothing to refuse
                actor = user_actor(user_id)
                await self._write(unit, target, changes, {"user_id": user_id}, actor, reset=True)

            await self.db.run(change)
        self.wake_outbox()

    async def _locked_target(
        self,
        unit: Unit,
        values: dict[str, Any],
        if_match: frozenset[int] | None,
        *,
        system: bool = False,
    ) -> Record:
        """Load and row-lock the user, so the version check and the write are atomic.
        `system`: no caller to check (the identity provider over SCIM)."""
        if system:
            target = await unit.one(q.USER_FOR_UPDATE, user_id=values["user_id"])
            if target is None:
                raise NotFound("No user with this id.")
        else:
            target = await unit.one(q.TARGET_FOR_UPDATE, **values)
        if target is None:
            raise policy.missing_user(await unit.value(q.CALLER_IS_ADMIN, **values))
        if if_match is not None and target["version"] not in if_match:
            raise PreconditionFailed
        return target

    async def _new_password(
        self,
        unit: Unit,
        target: Record,
        changes: dict[str, Any],
        current_password: str | None,
        answer: _Answer,
        *,
        provided: bool = False,
    ) -> DomainError | None:
        """Hash the new password into `changes`; or the error to answer with (a wrong
        `current_password`, already counted). `provided`: an identity provider's, which
        passed its own policy (`schemas.ProvidedPassword`), is not judged by ours."""
        password = changes.pop("password")
        if answer.account_key is not None:  # one's own password: answer for the account
            refused = await self._check_current_password(unit, current_password, target, answer)
            if refused is not None:
                return refused
        if not provided:
            await self._check_password(
                password,
                email=changes.get("email", target["email"]),
                username=changes.get("username", target["username"]),
                field=answer.field,
            )
        changes["password_hash"] = await answer.hashing.hash(password)
        changes["auth_version"] = target["auth_version"] + 1  # kills every token at once
        return None

    async def _check_current_password(
        self, unit: Unit, current: str | None, target: Record, answer: _Answer
    ) -> DomainError | None:
        """As a login checks a password: throttled (429 past the limit, also for the right
        one), and a wrong one recorded as a failed login of the account."""
        assert answer.account_key is not None  # its lock is held
        if current is None:  # no guess: not counted
            raise Forbidden("Send current_password to change your own password.")

        async def right() -> bool:
            ok, _ = await answer.hashing.verify_and_update(current, target["password_hash"])
            return ok

        return await self.throttle.answer(
            unit,
            account_key=answer.account_key,
            address=answer.address,
            check=right,
            refusal=Forbidden("current_password is not correct."),
        )

    async def _guard_last_admin(self, unit: Unit, target: Record, *, removing: bool) -> None:
        """Refuse to leave no active admin. Callers hold the admin-set lock."""
        last = removing and target["is_admin"] and target["is_active"]
        if last and await unit.value(q.COUNT_OTHER_ACTIVE_ADMINS, user_id=target["id"]) == 0:
            raise Conflict("This would leave no active admin.")

    async def set_admin(self, name: str, *, admin: bool) -> UserRow:
        """Promote or demote a user by username or email, as the system (the CLI does):
        no caller to check, but the last-admin guard holds as for every front."""

        async def change(unit: Unit) -> Record:
            await unit.execute(q.LOCK_ADMIN_SET)
            target = await unit.one(q.TARGET_BY_LOGIN, login=name)
            if target is None:
                raise NotFound("No user with this username or email.")
            if target["is_admin"] == admin:
                return target
            await self._guard_last_admin(unit, target, removing=not admin)
            statement = q.update_user(frozenset({"is_admin"}), guarded=False, conditional=False)
            record = await unit.one(statement, user_id=target["id"], new_is_admin=admin)
            assert record is not None  # the row is locked: it is there
            await self._record_changes(unit, record, {"is_admin"}, SYSTEM)
            return record

        return as_row(await self.db.run(change))

    async def delete(
        self, user_id: uuid.UUID, *, caller: AccessClaims | None, if_match: frozenset[int] | None
    ) -> None:
        """`caller` None: the system (the identity provider over SCIM). The user's sessions
        go with the row (ON DELETE CASCADE): none of its tokens is honoured after."""
        values = {**(caller_values(caller) if caller is not None else {}), "user_id": user_id}

        async def remove(unit: Unit) -> None:
            await unit.execute(q.LOCK_ADMIN_SET)
            target = await self._locked_target(unit, values, if_match, system=caller is None)
            await self._guard_last_admin(unit, target, removing=True)
            # After the user's row lock, as the groups service takes users before groups.
            await self.leave_groups(unit, user_id, caller)
            await unit.execute(q.DELETE_USER, user_id=user_id)
            await self.events.write(
                unit,
                "user.deleted",
                actor=SYSTEM if caller is None else user_actor(caller.user_id),
                subject_type="user",
                subject_id=user_id,
            )

        await self.db.run(remove)


# --- sign-in names ---------------------------------------------------------------------


def _event_types(
    changed: set[str], record: Record | None, *, reset: bool = False
) -> list[tuple[str, dict[str, Any]]]:
    """The events of a change of `changed` fields, the user `record` now is: `user.updated`
    with the names of the fields a client sees, and one for each change that has its own
    type. `record` is read only for those (a profile change needs none)."""
    shown = sorted(changed - _UNSHOWN_FIELDS)
    types: list[tuple[str, dict[str, Any]]] = []
    if shown:
        types.append(("user.updated", {"fields": shown}))
    if "is_active" in changed:
        assert record is not None
        types.append(("user.activated" if record["is_active"] else "user.deactivated", {}))
    if "password_hash" in changed:
        types.append(("user.password_reset" if reset else "user.password_changed", {}))
    if "email_verified" in changed:
        assert record is not None
        if record["email_verified"]:
            types.append(("user.email_verified", {}))
    return types


async def lock_sign_in_names(unit: Unit, names: dict[str, Any]) -> None:
    """Lock the email and username `names` claims (transaction-scoped, one lock a name):
    every write claiming one of them, as either, waits for this transaction."""
    claimed = [names[field] for field in ("email", "username") if names.get(field) is not None]
    if claimed:
        await unit.execute(q.LOCK_SIGN_IN_NAMES, names=claimed)


async def refuse_name_clash(unit: Unit, user_id: uuid.UUID, names: dict[str, Any]) -> None:
    """The one rule between emails and usernames: a user's new email is no other user's
    username (409 `email`), a new username no other user's email (409 `username`); a
    user's own may be the same. Under `lock_sign_in_names`, taken earlier in the same
    transaction, so racing writes cannot both pass."""
    clash = await unit.one(
        q.NAME_CLASH, user_id=user_id, email=names.get("email"), username=names.get("username")
    )
    assert clash is not None  # one row always
    policy.refuse_taken(email=clash["email_taken"], username=clash["username_taken"])


async def claim_sign_in_names(unit: Unit, user_id: uuid.UUID, names: dict[str, Any]) -> None:
    """Lock, then check, the names a new user claims (`email`, `username` in `names`)."""
    await lock_sign_in_names(unit, names)
    await refuse_name_clash(unit, user_id, names)


def _caller_is_admin(values: dict[str, Any]) -> Work[bool | None]:
    async def read(unit: Unit) -> bool | None:
        is_admin: bool | None = await unit.value(q.CALLER_IS_ADMIN, **values)
        return is_admin

    return read


def _creation_check(values: dict[str, Any]) -> Work[Record]:
    async def read(unit: Unit) -> Record:
        record = await unit.one(q.CREATION_CHECK, **values)
        assert record is not None  # one row always
        return record

    return read


def _user_id_by_email(email: str) -> Work[uuid.UUID | None]:
    async def read(unit: Unit) -> uuid.UUID | None:
        found: uuid.UUID | None = await unit.value(q.USER_ID_BY_EMAIL, email=email)
        return found

    return read


def _insert(values: dict[str, Any], *, claimed: bool = False) -> Work[Record]:
    """Insert the user, its sign-in names claimed first (unless `claimed` already)."""

    async def insert(unit: Unit) -> Record:
        if not claimed:
            await claim_sign_in_names(unit, values["id"], values)
        record = await unit.one(q.INSERT_USER, **values)
        assert record is not None  # INSERT ... RETURNING returns the row it inserted
        return record

    return insert


def _new_address(old: str, new: str) -> bool:
    """Whether an email change moves the user to another mailbox: emails are compared
    lower-cased, as the unique index compares them, so a new spelling of the same address
    (`Ann@x.org` to `ann@x.org`) is not. It keeps `email_verified`, and mails nothing."""
    return old.lower() != new.lower()


def _stored(target: Record, name: str) -> Any:
    """A field of a locked row as the service compares it (asyncpg reads jsonb as text)."""
    value = target[name]
    return json.loads(value) if name == "scim" and isinstance(value, str) else value


def _to_store(name: str, value: Any) -> Any:
    """A new value as its statement binds it (jsonb as text, `queries._new_value`)."""
    return json.dumps(value) if name == "scim" and value is not None else value
