"""Audit events: the `events` table and the indexes of its newest-first pages.

Revision ID: 0009
Revises: 0006
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column(
            "occurred_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("actor_type", sa.String(length=16), nullable=False),
        sa.Column("actor_id", sa.Uuid(), nullable=True),
        sa.Column("subject_type", sa.String(length=32), nullable=False),
        sa.Column("subject_id", sa.Uuid(), nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("ip_address", sa.String(length=64), nullable=True),
        sa.Column(
            "data",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "actor_type IN ('user', 'scim', 'system')", name=op.f("ck_events_actor_type")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_index("ix_events_occurred_at_id", "events", ["occurred_at", "id"])
    op.create_index("ix_events_type_occurred_at_id", "events", ["type", "occurred_at", "id"])
    op.create_index(
        "ix_events_actor_id_occurred_at_id",
        "events",
        ["actor_id", "occurred_at", "id"],
        postgresql_where=sa.text("actor_id IS NOT NULL"),
    )
    op.create_index(
        "ix_events_subject_id_occurred_at_id",
        "events",
        ["subject_id", "occurred_at", "id"],
        postgresql_where=sa.text("subject_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_table("events")
