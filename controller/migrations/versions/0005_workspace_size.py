"""workspace size: every sandbox's workspace has a size limit the kernel enforces (resources.disk_mb)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 14:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sandbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("disk_mb", sa.Integer(), nullable=True))
    with op.batch_alter_table("template", schema=None) as batch_op:
        batch_op.add_column(sa.Column("disk_mb", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("template", schema=None) as batch_op:
        batch_op.drop_column("disk_mb")
    with op.batch_alter_table("sandbox", schema=None) as batch_op:
        batch_op.drop_column("disk_mb")
