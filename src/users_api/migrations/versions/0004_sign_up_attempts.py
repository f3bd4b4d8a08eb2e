"""Sign-up attempts, counted per client address (REGISTRATIONS_PER_ADDRESS).

Revision ID: 0004
Revises: 0002 (until 0003 lands: then 0003)
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sign_up_attempts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("client_address", sa.String(length=64), nullable=False),
        sa.Column(
            "attempted_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sign_up_attempts")),
    )
    op.create_index(
        "ix_sign_up_attempts_client_address_attempted_at",
        "sign_up_attempts",
        ["client_address", "attempted_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_sign_up_attempts_client_address_attempted_at", table_name="sign_up_attempts")
    op.drop_table("sign_up_attempts")
