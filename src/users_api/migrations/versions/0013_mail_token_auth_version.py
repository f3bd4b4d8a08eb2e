"""Mailed tokens carry the `auth_version` of their user when they were mailed: a reset or
verification token is good only while every other token of the user is (a password
change, a deactivation or a sign-out everywhere ends it).

Tokens already mailed take their user's current version, so none dies by the upgrade.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("mail_tokens", sa.Column("auth_version", sa.Integer(), nullable=True))
    op.execute(
        "UPDATE mail_tokens SET auth_version = users.auth_version"
        " FROM users WHERE users.id = mail_tokens.user_id"
    )
    op.alter_column("mail_tokens", "auth_version", nullable=False)


def downgrade() -> None:
    op.drop_column("mail_tokens", "auth_version")
