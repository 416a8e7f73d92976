"""Columns and tables the migrations in `versions/` share (here, not there: Alembic loads
every file in `versions/` as a revision).

Shipped migrations call these, so what a helper builds never changes (tests/test_schema.py
and an upgrade from each revision check it): a new kind of column gets a new helper.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op


def key() -> sa.Column[Any]:
    """`id`, the integer primary key (the table adds `sa.PrimaryKeyConstraint("id")`)."""
    return sa.Column("id", sa.Integer(), nullable=False)


def status() -> sa.Column[Any]:
    """`status`, a string of the row's state machine (see `genfactory.statuses`)."""
    return sa.Column("status", sa.String(length=20), nullable=False)


def execution() -> sa.Column[Any]:
    """`execution_id` of a slot or an image: the execution it belongs to (see `of_execution`)."""
    return sa.Column("execution_id", sa.Integer(), nullable=False)


def timestamps() -> tuple[sa.Column[Any], sa.Column[Any]]:
    """`created_at` and `updated_at`, both set."""
    return (
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def errors() -> tuple[sa.Column[Any], sa.Column[Any]]:
    """`error` and `error_code` of a slot or an image (both empty while all is well)."""
    return (
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("error_code", sa.String(length=50), nullable=True),
    )


def worker() -> tuple[sa.Column[Any], sa.Column[Any]]:
    """`worker_host` and `worker_pid`: the process that runs the row's work."""
    return (
        sa.Column("worker_host", sa.String(length=255), nullable=True),
        sa.Column("worker_pid", sa.Integer(), nullable=True),
    )


def of_execution() -> sa.ForeignKeyConstraint:
    """`execution_id` references its execution, deleted with it."""
    return sa.ForeignKeyConstraint(["execution_id"], ["job_executions.id"], ondelete="CASCADE")


def create_job_configurations() -> None:
    """The `job_configurations` table of 0001 (0004 drops it, and makes it again going down)."""
    op.create_table(
        "job_configurations",
        key(),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        *timestamps(),
        sa.PrimaryKeyConstraint("id"),
    )
