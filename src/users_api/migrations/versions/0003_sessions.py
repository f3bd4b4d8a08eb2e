"""Sessions: each login is one; its refresh tokens are its family, its access tokens carry its id.

Every existing refresh-token family becomes a session (ended when any of its tokens was
revoked), so logins survive the upgrade; `refresh_tokens.revoked_at` goes, since a
token's family ends with its session. Access tokens issued before carry no session id
and are refused: their holders refresh (at most ACCESS_TOKEN_TTL_SECONDS after).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "last_used_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("user_agent", sa.String(length=512), nullable=True),
        sa.Column("ip_address", sa.String(length=64), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_sessions_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sessions")),
    )
    op.create_index(
        "ix_sessions_user_id_created_at", "sessions", ["user_id", "created_at"], unique=False
    )
    op.execute(
        """
        INSERT INTO sessions (id, user_id, created_at, last_used_at, ended_at)
        SELECT family_id, user_id, min(created_at), max(created_at), max(revoked_at)
        FROM refresh_tokens
        GROUP BY family_id, user_id  -- one user per family: a token's holder never changes
        """
    )
    op.create_foreign_key(
        op.f("fk_refresh_tokens_family_id_sessions"),
        "refresh_tokens",
        "sessions",
        ["family_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.drop_column("refresh_tokens", "revoked_at")


def downgrade() -> None:
    op.add_column(
        "refresh_tokens",
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.execute(
        """
        UPDATE refresh_tokens SET revoked_at = sessions.ended_at
        FROM sessions
        WHERE sessions.id = refresh_tokens.family_id AND sessions.ended_at IS NOT NULL
        """
    )
    op.drop_constraint(
        op.f("fk_refresh_tokens_family_id_sessions"), "refresh_tokens", type_="foreignkey"
    )
    op.drop_index("ix_sessions_user_id_created_at", table_name="sessions")
    op.drop_table("sessions")
