"""The `groups` table and `group_members`, which user belongs to which group."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Uuid,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column
from uuid_utils.compat import uuid7

from users_api.db.base import Base

# Read back from a UniqueViolation to name the field that conflicts (409).
DISPLAY_NAME_UNIQUE_INDEX = "uq_groups_display_name_lower"
UNIQUE_FIELDS = {DISPLAY_NAME_UNIQUE_INDEX: "display_name"}

DISPLAY_NAME_MAX_LENGTH = 256
EXTERNAL_ID_MAX_LENGTH = 256


class Group(Base):
    """A named set of users. `version` is its ETag: every change bumps it, a change of
    its members too (SCIM's `meta.version` must change when they do)."""

    __tablename__ = "groups"

    # UUIDv7, made by the service, as user ids are: time-ordered, a compact index.
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    display_name: Mapped[str] = mapped_column(String(DISPLAY_NAME_MAX_LENGTH))
    # The identity provider's own id for the group (SCIM `externalId`); not unique.
    external_id: Mapped[str | None] = mapped_column(String(EXTERNAL_ID_MAX_LENGTH))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
    version: Mapped[int] = mapped_column(Integer)

    __table_args__ = (
        # Unique case-insensitively; the index, not a check before the INSERT, settles races.
        Index(DISPLAY_NAME_UNIQUE_INDEX, func.lower(display_name), unique=True),
        CheckConstraint("version >= 1", name="version_positive"),
    )


class GroupMember(Base):
    """One user in one group. Both sides cascade: deleting a user or a group drops the
    memberships with it."""

    __tablename__ = "group_members"

    group_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )

    __table_args__ = (
        # A user's groups, and the cascade of a user's delete (the PK serves a group's).
        Index("ix_group_members_user_id", "user_id"),
    )
