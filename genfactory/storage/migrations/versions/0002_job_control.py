"""job control in the store: stop requests, heartbeat, the flow runs of an execution

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("job_executions") as batch:
        batch.add_column(sa.Column("stop_requested_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("stop_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("flow_run_ids", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("job_executions") as batch:
        batch.drop_column("flow_run_ids")
        batch.drop_column("heartbeat_at")
        batch.drop_column("stop_reason")
        batch.drop_column("stop_requested_at")
