"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from genfactory.storage.migrations.columns import (
    create_job_configurations,
    errors,
    execution,
    key,
    of_execution,
    status,
    timestamps,
    worker,
)

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_job_configurations()
    op.create_table(
        "job_executions",
        key(),
        sa.Column("configuration_id", sa.Integer(), nullable=True),
        sa.Column("rerun_of_id", sa.Integer(), nullable=True),
        sa.Column("label", sa.String(length=200), nullable=False),
        status(),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("total_images", sa.Integer(), nullable=False),
        sa.Column("approved_images", sa.Integer(), nullable=False),
        sa.Column("qc_failed_images", sa.Integer(), nullable=False),
        sa.Column("failed_images", sa.Integer(), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("settings_snapshot", sa.JSON(), nullable=False),
        sa.Column("flow_run_id", sa.String(length=64), nullable=True),
        *worker(),
        sa.Column("usage", sa.JSON(), nullable=False),
        sa.Column("output_dir", sa.Text(), nullable=True),
        sa.Column("temp_dir", sa.Text(), nullable=True),
        sa.Column("log_path", sa.Text(), nullable=True),
        *timestamps(),
        sa.ForeignKeyConstraint(
            ["configuration_id"], ["job_configurations.id"], ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(["rerun_of_id"], ["job_executions.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("job_executions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_job_executions_configuration_id"), ["configuration_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_job_executions_flow_run_id"), ["flow_run_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_job_executions_status"), ["status"], unique=False)

    op.create_table(
        "generated_images",
        key(),
        sa.Column("image_mapping_id", sa.String(length=64), nullable=False),
        execution(),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("image_index", sa.Integer(), nullable=False),
        sa.Column("generation_prompt", sa.Text(), nullable=False),
        sa.Column("keyword", sa.Text(), nullable=True),
        sa.Column("aspect_ratio", sa.String(length=20), nullable=True),
        sa.Column("seed", sa.Integer(), nullable=True),
        status(),
        sa.Column("qc_reason", sa.Text(), nullable=True),
        sa.Column("temp_image_path", sa.Text(), nullable=True),
        sa.Column("final_image_path", sa.Text(), nullable=True),
        sa.Column("media_type", sa.String(length=50), nullable=True),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("phash", sa.String(length=32), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("processing_settings", sa.JSON(), nullable=True),
        *errors(),
        *timestamps(),
        of_execution(),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("image_mapping_id"),
    )
    with op.batch_alter_table("generated_images", schema=None) as batch_op:
        batch_op.create_index(
            "ix_generated_images_execution_status", ["execution_id", "status"], unique=False
        )
        batch_op.create_index(
            "ix_generated_images_slot_image", ["execution_id", "slot", "image_index"], unique=True
        )
        batch_op.create_index(batch_op.f("ix_generated_images_status"), ["status"], unique=False)

    op.create_table(
        "generation_slots",
        key(),
        execution(),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("keyword", sa.Text(), nullable=False),
        sa.Column("variables", sa.JSON(), nullable=False),
        sa.Column("aspect_ratio", sa.String(length=20), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("system_prompt", sa.Text(), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=True),
        status(),
        sa.Column("provider_task_id", sa.String(length=200), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        *errors(),
        *timestamps(),
        of_execution(),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("generation_slots", schema=None) as batch_op:
        batch_op.create_index(
            "ix_generation_slots_execution_slot", ["execution_id", "slot"], unique=True
        )


def downgrade() -> None:
    with op.batch_alter_table("generation_slots", schema=None) as batch_op:
        batch_op.drop_index("ix_generation_slots_execution_slot")

    op.drop_table("generation_slots")
    with op.batch_alter_table("generated_images", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_generated_images_status"))
        batch_op.drop_index("ix_generated_images_slot_image")
        batch_op.drop_index("ix_generated_images_execution_status")

    op.drop_table("generated_images")
    with op.batch_alter_table("job_executions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_job_executions_status"))
        batch_op.drop_index(batch_op.f("ix_job_executions_flow_run_id"))
        batch_op.drop_index(batch_op.f("ix_job_executions_configuration_id"))

    op.drop_table("job_executions")
    op.drop_table("job_configurations")
