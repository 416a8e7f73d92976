"""retries, reruns and manual approval: the work queue, an image's history of attempts, and
whether it was approved by hand

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from genfactory.storage.migrations.columns import key, status, worker

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "work_queue",
        key(),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("batch", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=False),
        sa.Column("execution_id", sa.Integer(), nullable=True),
        sa.Column("result_id", sa.Integer(), nullable=True),
        sa.Column("overrides", sa.JSON(), nullable=False),
        sa.Column("manual", sa.Boolean(), nullable=False),
        status(),
        *worker(),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_work_queue_kind_status", "work_queue", ["kind", "status"])
    with op.batch_alter_table("generated_images") as batch:
        batch.add_column(sa.Column("approved_by_hand", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("history", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("generated_images") as batch:
        batch.drop_column("history")
        batch.drop_column("approved_by_hand")
    op.drop_index("ix_work_queue_kind_status", table_name="work_queue")
    op.drop_table("work_queue")
