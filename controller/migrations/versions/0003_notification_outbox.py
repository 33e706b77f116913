"""notification outbox: approval events kept with the event, so a webhook is never lost to an absent Redis

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 13:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notification",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("approval_id", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(length=48), nullable=False),
        sa.Column("planned", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("notification", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notification_approval_id"), ["approval_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_notification_planned"), ["planned"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("notification", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notification_planned"))
        batch_op.drop_index(batch_op.f("ix_notification_approval_id"))
    op.drop_table("notification")
