"""The `cluster_leases` table: who runs a once-per-cluster job, and until when."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, String
from sqlalchemy.orm import Mapped, mapped_column

from users_api.db.base import Base


class ClusterLease(Base):
    """One row per job name. A row, not a session-level advisory lock: it needs no
    session (PgBouncer in transaction mode has none to give), it outlives a worker's
    crash only until `expires_at`, and it shows who holds what."""

    __tablename__ = "cluster_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
