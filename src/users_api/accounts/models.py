"""Mailed tokens (stored only as hashes) and the reset requests counted per address."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Uuid,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column
from uuid_utils.compat import uuid7

from users_api.db.base import Base


class MailToken(Base):
    """A single-use token mailed to a user: a password reset or an email verification.

    Only its SHA-256 is kept (the token is 256 random bits). It is good while unused,
    unexpired, its user active and still at `email`, and while the user's `auth_version`
    is still the one it was mailed under: it dies with every other token of the user (a
    password change, a deactivation, a sign-out everywhere). Used-up
    and superseded tokens stay until their user's next request an hour later: they are
    how the per-account limit counts mails.
    """

    __tablename__ = "mail_tokens"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    purpose: Mapped[str] = mapped_column(String(32))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The address the token was mailed to.
    email: Mapped[str] = mapped_column(String(320))
    # The user's `auth_version` when it was mailed.
    auth_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Used, or superseded by a newer token of the same purpose.
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_mail_tokens_user_id_purpose", "user_id", "purpose", "created_at"),)


class PasswordResetRequest(Base):
    """A reset request (whatever came of it), kept for the hour it counts against its
    client address (PASSWORD_RESETS_PER_ADDRESS)."""

    __tablename__ = "password_reset_requests"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    client_address: Mapped[str] = mapped_column(String(64))
    attempted_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    __table_args__ = (
        Index(
            "ix_password_reset_requests_client_address_attempted_at",
            "client_address",
            "attempted_at",
        ),
    )
