"""The `events` table: the audit log, one row per change of state."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, DateTime, Index, String, Uuid, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from users_api.db.base import Base

TYPE_MAX_LENGTH = 64
REQUEST_ID_MAX_LENGTH = 128  # the contract's longest client request id


class Event(Base):
    """Written by `events.writer.EventWriter` only, in the transaction of its change, so
    it exists exactly when the change does. No foreign keys: an event outlives its
    subject (a deleted user keeps its history) and its actor."""

    __tablename__ = "events"

    # UUIDv7, made by the writer: time-ordered, the tie-break of the newest-first order.
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    type: Mapped[str] = mapped_column(String(TYPE_MAX_LENGTH))
    occurred_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    subject_type: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    request_id: Mapped[str | None] = mapped_column(String(REQUEST_ID_MAX_LENGTH))
    ip_address: Mapped[str | None] = mapped_column(String(64))
    # What changed (field names, never values that are secrets).
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))

    __table_args__ = (
        CheckConstraint("actor_type IN ('user', 'scim', 'system')", name="actor_type"),
        # Newest first, unfiltered and after `since`/`until`: the audit list's main order.
        Index("ix_events_occurred_at_id", "occurred_at", "id"),
        # The same order within one type, one actor, one subject: each filter an index
        # scan that stops after a page, whatever the table's size.
        Index("ix_events_type_occurred_at_id", "type", "occurred_at", "id"),
        Index(
            "ix_events_actor_id_occurred_at_id",
            "actor_id",
            "occurred_at",
            "id",
            postgresql_where=text("actor_id IS NOT NULL"),
        ),
        Index(
            "ix_events_subject_id_occurred_at_id",
            "subject_id",
            "occurred_at",
            "id",
            postgresql_where=text("subject_id IS NOT NULL"),
        ),
    )
