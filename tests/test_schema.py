"""The schema is written once: the Alembic migrations build exactly what the models say (on
SQLite and PostgreSQL), the update allow-lists come from the models, and a store made before
a migration upgrades without losing its jobs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text

from genfactory.statuses import ImageStatus
from genfactory.storage.db import MIGRATIONS_DIR, create_store_engine, migration_head, upgrade
from genfactory.storage.models import Base
from genfactory.storage.repository import IMAGE_FIELDS, SLOT_FIELDS, Repository


def _drift(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(context, Base.metadata))


def _migrate(engine: Engine, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def test_the_migrations_build_the_models_on_sqlite(tmp_path: Path) -> None:
    engine = create_store_engine(f"sqlite:///{tmp_path / 'fresh.sqlite3'}")
    upgrade(engine)
    assert _drift(engine) == []
    engine.dispose()


@pytest.mark.postgres
def test_the_migrations_build_the_models_on_postgres(postgres_store: str) -> None:
    engine = create_store_engine(postgres_store)
    upgrade(engine)
    assert engine.dialect.name == "postgresql"
    assert _drift(engine) == []
    engine.dispose()


def test_a_model_column_without_a_migration_is_drift(tmp_path: Path) -> None:
    # The check above can fail: a store one migration behind the models differs from them.
    engine = create_store_engine(f"sqlite:///{tmp_path / 'old.sqlite3'}")
    _migrate(engine, "0002")
    assert any("work_queue" in repr(diff) for diff in _drift(engine))
    engine.dispose()


def test_the_update_allow_lists_come_from_the_models() -> None:
    assert {
        "qc_reason",
        "temp_image_path",
        "final_image_path",
        "media_type",
        "width",
        "height",
        "phash",
        "image_metadata",
        "processing_settings",
        "error",
        "error_code",
        "approved_by_hand",
    } == IMAGE_FIELDS
    assert {"prompt", "provider_task_id", "error", "error_code"} == SLOT_FIELDS
    assert "status" not in IMAGE_FIELDS | SLOT_FIELDS


def test_the_head_read_without_alembic_is_alembics_head() -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert migration_head() == ScriptDirectory.from_config(cfg).get_current_head()


def test_opening_an_up_to_date_store_does_not_load_alembic(tmp_path: Path) -> None:
    # Every command opens the store; importing Alembic to find nothing to do cost ~0.2 s.
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    script = (
        "import sys; from genfactory.storage import db; db.get_engine(sys.argv[1]); "
        "print('alembic' in sys.modules)"
    )
    runs = [
        subprocess.run(
            [sys.executable, "-c", script, url], capture_output=True, text=True, check=True
        ).stdout.strip()
        for _ in range(2)
    ]
    assert runs == ["True", "False"]  # the first opening creates the store with Alembic


def test_a_store_at_0003_upgrades_and_keeps_its_jobs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'at-0003.sqlite3'}"
    engine = create_store_engine(url)
    _migrate(engine, "0003")
    now = "2026-12-01 10:00:00"
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO job_configurations (id, name, settings, created_at, updated_at) "
                "VALUES (1, 'old', '{}', :now, :now)"
            ),
            {"now": now},
        )
        conn.execute(
            text(
                "INSERT INTO job_executions (id, configuration_id, label, status, total_images,"
                " approved_images, qc_failed_images, failed_images, settings_snapshot, usage,"
                " created_at, updated_at) VALUES (7, 1, 'old job', 'completed', 1, 1, 0, 0,"
                " '{\"job\": {\"count\": 1}}', '{}', :now, :now)"
            ),
            {"now": now},
        )
        conn.execute(
            text(
                "INSERT INTO generation_slots (execution_id, slot, keyword, variables,"
                " aspect_ratio, width, height, system_prompt, status, attempts, created_at,"
                " updated_at) VALUES (7, 0, 'fox', '{}', '1:1', 64, 64, 'p', 'generated', 1,"
                " :now, :now)"
            ),
            {"now": now},
        )
        conn.execute(
            text(
                "INSERT INTO generated_images (image_mapping_id, execution_id, slot,"
                " image_index, generation_prompt, status, created_at, updated_at)"
                " VALUES ('m1', 7, 0, 0, 'a fox', 'approved', :now, :now)"
            ),
            {"now": now},
        )

    upgrade(engine)  # what opening the store does: 0004 drops the configuration rows

    tables = set(inspect(engine).get_table_names())
    assert "job_configurations" not in tables
    columns = {c["name"] for c in inspect(engine).get_columns("job_executions")}
    assert "configuration_id" not in columns
    assert _drift(engine) == []
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    store = Repository.over_engine(engine)
    job = store.get_execution(7)
    assert (job.label, job.status, job.settings_snapshot) == (
        "old job",
        "completed",
        {"job": {"count": 1}},
    )
    (image,) = store.list_images(execution_id=7)
    assert image.image_mapping_id == "m1" and image.status == ImageStatus.APPROVED
    assert [slot.keyword for slot in store.list_slots(7)] == ["fox"]
    assert job.created_at.tzinfo is not None
    engine.dispose()
