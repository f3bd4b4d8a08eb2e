"""The table of failed logins."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Identity, Index, String, func
from sqlalchemy.orm import Mapped, mapped_column

from users_api.db.base import Base


class LoginFailure(Base):
    """A failed login, kept for the throttle window; shared by every worker and replica."""

    __tablename__ = "login_failures"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    account_key: Mapped[str] = mapped_column(String(400))
    client_address: Mapped[str] = mapped_column(String(64))
    failed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        Index("ix_login_failures_account_key_failed_at", "account_key", "failed_at"),
        Index("ix_login_failures_client_address_failed_at", "client_address", "failed_at"),
    )
