"""SCIM 2.0 provisioning: provisioning tokens; what a user keeps of SCIM.

`users.external_id` is the identity provider's id (unique among users when given);
`users.scim` keeps the core User attributes the service has no column for, as sent
(`name.*`, `displayName`, `nickName`, `title`, `phoneNumbers`, `addresses`, ...).
A SCIM-created user has no password until one is set: `password_hash` becomes nullable
(a login with no hash always fails).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "scim_tokens",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scim_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_scim_tokens_token_hash")),
    )
    op.add_column("users", sa.Column("external_id", sa.String(length=255), nullable=True))
    op.add_column(
        "users", sa.Column("scim", postgresql.JSONB(astext_type=sa.Text()), nullable=True)
    )
    op.create_index("uq_users_external_id", "users", ["external_id"], unique=True)
    op.create_index(
        "ix_users_scim_email_values",
        "users",
        [sa.text("(scim -> '$emails')")],
        postgresql_using="gin",
    )
    op.alter_column("users", "password_hash", existing_type=sa.String(length=255), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM users WHERE password_hash IS NULL")
    op.alter_column("users", "password_hash", existing_type=sa.String(length=255), nullable=False)
    op.drop_index("ix_users_scim_email_values", table_name="users")
    op.drop_index("uq_users_external_id", table_name="users")
    op.drop_column("users", "scim")
    op.drop_column("users", "external_id")
    op.drop_table("scim_tokens")
