"""The `users` table; `sessions`, the logins of a user, which every token belongs to;
and the sign-up attempts counted per client address."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Uuid,
    func,
    literal_column,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column
from uuid_utils.compat import uuid7

from users_api.db.base import Base

# Names the service reads back from an IntegrityError to say which field conflicts.
EMAIL_UNIQUE_INDEX = "uq_users_email_lower"
USERNAME_UNIQUE_INDEX = "uq_users_username_lower"
EXTERNAL_ID_UNIQUE_INDEX = "uq_users_external_id"
# The field a write conflicts on when one of these unique indexes refuses it (409).
UNIQUE_FIELDS = {
    EMAIL_UNIQUE_INDEX: "email",
    USERNAME_UNIQUE_INDEX: "username",
    EXTERNAL_ID_UNIQUE_INDEX: "external_id",
}


class User(Base):
    __tablename__ = "users"

    # UUIDv7, made by the service: time-ordered, so the primary-key index stays compact.
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    email: Mapped[str] = mapped_column(String(320))
    username: Mapped[str] = mapped_column(String(128))
    full_name: Mapped[str | None] = mapped_column(String(200))
    # None: no password yet (a SCIM-created user); no login matches it.
    password_hash: Mapped[str | None] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default="true")
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    # Proven by a mailed token (or set by an admin); false again when the email changes.
    email_verified: Mapped[bool] = mapped_column(Boolean, server_default="false")
    version: Mapped[int] = mapped_column(Integer)
    # Bumped on password change, deactivation and logout-all; every token carries the
    # value it was issued under, so bumping it revokes them all at once.
    auth_version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # True while the user has a confirmed second factor (the `mfa` package keeps it in
    # step with its tables), so a read shows it without a join.
    mfa_enabled: Mapped[bool] = mapped_column(Boolean, server_default="false")
    # SCIM: the identity provider's id for the user (unique when given), and the core
    # User attributes the service has no column for, kept as sent (`scim.mapping`).
    external_id: Mapped[str | None] = mapped_column(String(255))
    scim: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )

    __table_args__ = (
        # Uniqueness is the database's job: a check-then-insert alone is a race.
        Index(EMAIL_UNIQUE_INDEX, func.lower(email), unique=True),
        Index(USERNAME_UNIQUE_INDEX, func.lower(username), unique=True),
        Index(EXTERNAL_ID_UNIQUE_INDEX, external_id, unique=True),
        # SCIM's email filters (`emails[type eq "work"].value eq ...`): the kept addresses.
        Index(
            "ix_users_scim_email_values",
            scim.op("->")(literal_column("'$emails'")),
            postgresql_using="gin",
        ),
        # Keyset paging by creation time walks this index.
        Index("ix_users_created_at_id", "created_at", "id"),
        CheckConstraint("version >= 1", name="version_positive"),
    )


# What a session keeps of the client that signed in (its User-Agent header is cut here).
USER_AGENT_MAX_LENGTH = 512


class UserSession(Base):
    """One login (one device): its refresh tokens are one family (`refresh_tokens.family_id`
    is the session's id), and its access tokens carry its id (`sid`).

    A session ends (`ended_at`) on logout, when one of its used-up refresh tokens is
    presented again, and when all of the user's end (logout-all, a password change, a
    deactivation); every token of it, access tokens included, stops being honoured at
    once (`users.queries.caller_honoured`). Here, not in `auth`, because that test is
    the users package's, and `users` never imports `auth`.
    """

    __tablename__ = "sessions"

    # UUIDv7, made by the service.
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # The login, then each refresh (not each request: a read writes nothing).
    last_used_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    user_agent: Mapped[str | None] = mapped_column(String(USER_AGENT_MAX_LENGTH))
    ip_address: Mapped[str | None] = mapped_column(String(64))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When its newest refresh token expires (set at the login and at each refresh): past
    # it, nothing of the session can be used any more, so it is no longer listed as live.
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        # A user's sessions, newest first; and the cascade of a user's delete.
        Index("ix_sessions_user_id_created_at", "user_id", "created_at"),
    )


class SignUpAttempt(Base):
    """A sign-up tried by anyone but an admin (whatever came of it), kept for the hour it
    counts against its client address; shared by every worker and replica."""

    __tablename__ = "sign_up_attempts"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    client_address: Mapped[str] = mapped_column(String(64))
    attempted_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    __table_args__ = (
        Index("ix_sign_up_attempts_client_address_attempted_at", "client_address", "attempted_at"),
    )
