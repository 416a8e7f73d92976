"""drop job_configurations and job_executions.configuration_id: written for every execution,
never read (each execution keeps its settings as run in `settings_snapshot`)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("job_executions") as batch:
        batch.drop_index("ix_job_executions_configuration_id")
        batch.drop_column("configuration_id")
    op.drop_table("job_configurations")


def downgrade() -> None:
    op.create_table(
        "job_configurations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("job_executions") as batch:
        batch.add_column(sa.Column("configuration_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            "fk_job_executions_configuration_id_job_configurations",
            "job_configurations",
            ["configuration_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_index("ix_job_executions_configuration_id", ["configuration_id"])
