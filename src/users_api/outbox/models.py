"""The `outbox` table: one row per message to deliver, whatever its channel (`kind`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Identity, Index, Integer, String, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from users_api.db.base import Base


class OutboxMessage(Base):
    """A message written in the transaction of the change that causes it, so it exists
    exactly when the change does; the sender (`outbox.sender`) delivers it afterwards.

    All of its state is here (attempts, when to try next, what went wrong), so delivery
    survives restarts, and `next_attempt_at` doubles as a lease: a sender claims a row by
    moving it into the future, so no other sender takes it meanwhile.
    """

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    # The channel: `mail`, `webhook`.
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    next_attempt_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    # Messages with the same key are delivered one at a time, in the order written: the
    # next waits while an earlier one is undelivered (a webhook endpoint's events). NULL:
    # no order with any other message (mail).
    sequence_key: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        # What is still to deliver, soonest first: the only rows the sender looks at.
        Index(
            "ix_outbox_due",
            "next_attempt_at",
            postgresql_where=text("delivered_at IS NULL"),
        ),
        # An undelivered message earlier in its sequence: one probe per due row.
        Index(
            "ix_outbox_sequence",
            "sequence_key",
            "id",
            postgresql_where=text("delivered_at IS NULL AND sequence_key IS NOT NULL"),
        ),
        # What was delivered longest ago, for retention (`cluster.retention`).
        Index(
            "ix_outbox_delivered_at",
            "delivered_at",
            postgresql_where=text("delivered_at IS NOT NULL"),
        ),
    )
