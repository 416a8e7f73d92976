"""drop job_configurations and job_executions.configuration_id: written for every execution,
never read (each execution keeps its settings as run in `settings_snapshot`)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from genfactory.storage.migrations.columns import create_job_configurations

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
    create_job_configurations()
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
