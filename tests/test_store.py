"""The results store: migrations, concurrent writes, cascades — on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from genfactory.statuses import ImageStatus, JobStatus
from genfactory.storage import repository
from genfactory.storage.db import get_engine


def _execution() -> repository.ExecutionRecord:
    return repository.create_execution(
        label="store-test", settings_snapshot={"job": {"count": 1}}, output_dir="/o", temp_dir="/t"
    )


def _hammer(threads: int = 16, images_each: int = 15) -> int:
    """Many threads insert and update images at once, as concurrent slots do."""
    execution = _execution()
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(images_each):
                image = repository.add_image(
                    execution_id=execution.id,
                    slot=n,
                    image_index=i,
                    generation_prompt="p",
                    temp_image_path=f"/t/{n}_{i}.png",
                )
                for new in (ImageStatus.QC_PASSED, ImageStatus.PROCESSED, ImageStatus.APPROVED):
                    image = repository.transition_image(image.id, image.status, new)
                repository.image_counts(execution.id)
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert errors == []
    record = repository.finish_execution(execution.id)
    assert record.status == JobStatus.COMPLETED
    assert record.approved_images == threads * images_each
    return execution.id


def test_migrations_create_the_spec_tables() -> None:
    tables = set(inspect(get_engine()).get_table_names())
    assert {"job_executions", "generated_images", "alembic_version"} <= tables
    assert "job_configurations" not in tables  # never read; dropped by migration 0004
    columns = {c["name"] for c in inspect(get_engine()).get_columns("generated_images")}
    for name in (
        "image_mapping_id",
        "execution_id",
        "slot",
        "generation_prompt",
        "seed",
        "status",
        "qc_reason",
        "temp_image_path",
        "final_image_path",
        "metadata",
        "processing_settings",
        "error",
        "created_at",
        "updated_at",
    ):
        assert name in columns


def test_sqlite_is_in_wal_mode_with_foreign_keys() -> None:
    with get_engine().connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_concurrent_writers_never_see_database_is_locked() -> None:
    _hammer()


def test_deleting_an_execution_cascades_to_its_images() -> None:
    execution = _execution()
    repository.add_image(
        execution_id=execution.id,
        slot=0,
        image_index=0,
        generation_prompt="p",
        temp_image_path="/t/a.png",
    )
    with get_engine().begin() as conn:
        conn.execute(text("DELETE FROM job_executions WHERE id = :id"), {"id": execution.id})
    assert repository.list_images(execution_id=execution.id) == []


def test_executions_with_one_label_keep_their_own_settings() -> None:
    # docs/SPEC.md §11: jobs with one label shared one configuration row and overwrote each other's.
    a = repository.create_execution(
        label="same", settings_snapshot={"job": {"count": 1}}, output_dir="/o", temp_dir="/t"
    )
    b = repository.create_execution(
        label="same", settings_snapshot={"job": {"count": 2}}, output_dir="/o", temp_dir="/t"
    )
    assert repository.get_execution(a.id).settings_snapshot == {"job": {"count": 1}}
    assert repository.get_execution(b.id).settings_snapshot == {"job": {"count": 2}}


def test_finish_without_approved_images_is_failed() -> None:
    execution = _execution()
    image = repository.add_image(
        execution_id=execution.id,
        slot=0,
        image_index=0,
        generation_prompt="p",
        temp_image_path="/t/a.png",
    )
    repository.transition_image(
        image.id, ImageStatus.GENERATED, ImageStatus.QC_FAILED, qc_reason="blank"
    )
    record = repository.finish_execution(execution.id)
    assert record.status == JobStatus.FAILED
    assert record.qc_failed_images == 1 and record.error_message == "no image was approved"


def test_unknown_field_updates_are_refused() -> None:
    execution = _execution()
    image = repository.add_image(
        execution_id=execution.id,
        slot=0,
        image_index=0,
        generation_prompt="p",
        temp_image_path="/t/a.png",
    )
    with pytest.raises(ValueError, match="execution_id"):
        repository.update_image(image.id, execution_id=99)


@pytest.mark.postgres
def test_postgres_store_same_code(postgres_store: str) -> None:
    assert get_engine().dialect.name == "postgresql"
    _hammer(threads=8, images_each=10)
    with get_engine().connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM generated_images")).scalar() == 80


def test_not_found_is_a_user_error_and_no_lookup_error() -> None:
    from genfactory.errors import UserError

    with pytest.raises(repository.NotFound, match="job 404 does not exist") as caught:
        repository.get_execution(404)
    assert isinstance(caught.value, UserError) and not isinstance(caught.value, LookupError)


def test_a_key_error_inside_a_command_is_no_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # A bug (a KeyError) must not pass for a user mistake: no "error: ..." line and exit 2.
    from typer.testing import CliRunner

    from genfactory.cli import app

    job = _execution()
    original = repository.get_execution

    def broken(execution_id: int) -> repository.ExecutionRecord:
        raise KeyError("usage")

    monkeypatch.setattr(repository, "get_execution", broken)
    result = CliRunner().invoke(app, ["jobs", "show", str(job.id)])
    assert result.exit_code != 2
    assert isinstance(result.exception, KeyError)
    monkeypatch.setattr(repository, "get_execution", original)
    result = CliRunner().invoke(app, ["jobs", "show", "404"])
    assert result.exit_code == 2 and "job 404 does not exist" in result.output


def test_a_repository_over_its_own_engine_needs_no_environment(tmp_path: Path) -> None:
    from genfactory.storage.db import create_store_engine, upgrade
    from genfactory.storage.repository import Repository

    engine = create_store_engine(f"sqlite:///{tmp_path / 'own.sqlite3'}")
    upgrade(engine)
    store = Repository.over_engine(engine)
    job = store.create_execution(label="own", settings_snapshot={}, output_dir="/o", temp_dir="/t")
    assert [e.id for e in store.list_executions()] == [job.id]
    assert repository.list_executions() == []  # the configured store saw nothing
    engine.dispose()


def _processed_image(execution_id: int, index: int, phash: str) -> repository.ImageRecord:
    image = repository.add_image(
        execution_id=execution_id,
        slot=0,
        image_index=index,
        generation_prompt="p",
        temp_image_path=f"/t/{index}.png",
        phash=phash,
    )
    for new in (ImageStatus.QC_PASSED, ImageStatus.PROCESSED):
        image = repository.transition_image(image.id, image.status, new)
    return image


def _approved_image(execution_id: int, index: int, phash: str) -> int:
    image = _processed_image(execution_id, index, phash)
    return repository.transition_image(image.id, image.status, ImageStatus.APPROVED).id


def _check_approved_hashes_follow_the_store() -> None:
    from genfactory.storage.repository import Repository

    job, other_job = _execution(), _execution()
    ours = repository.default_repository()
    # Another process: its own repository (its own cache) over the same store.
    theirs = Repository.over_engine(get_engine())
    first = _approved_image(job.id, 0, "00000000000000ff")
    assert ours.approved_hashes(job.id) == [(first, "00000000000000ff")]

    second = _approved_image(job.id, 1, "0000000000ff0000")  # approved behind the cache
    assert ours.approved_hashes(job.id) == [
        (first, "00000000000000ff"),
        (second, "0000000000ff0000"),
    ]
    # An approval with the near-duplicate check, by the other process: both see it.
    third = _processed_image(job.id, 2, "ff00000000000000")
    _, twin = theirs.approve_image(third.id, lambda approved: None, job.id)
    assert twin is None
    assert [i for i, _ in ours.approved_hashes(job.id)] == [first, second, third.id]
    assert [i for i, _ in theirs.approved_hashes(job.id)] == [first, second, third.id]

    # A row stamped earlier than the newest the cache saw (a clock behind): still seen.
    fourth = _approved_image(job.id, 3, "000000ff00000000")
    with get_engine().begin() as conn:
        conn.execute(
            text("UPDATE generated_images SET updated_at = :t WHERE id = :i"),
            {"t": "2000-01-01 00:00:00.000000", "i": fourth}
            if get_engine().dialect.name == "sqlite"
            else {"t": "2000-01-01 00:00:00+00", "i": fourth},
        )
    assert {i for i, _ in ours.approved_hashes(job.id)} == {first, second, third.id, fourth}
    # A row no longer approved (failed by a retry flow, say) and a deleted job: gone.
    with get_engine().begin() as conn:
        conn.execute(
            text("UPDATE generated_images SET status = 'failed' WHERE id = :i"), {"i": second}
        )
    assert {i for i, _ in ours.approved_hashes(job.id)} == {first, third.id, fourth}
    elsewhere = _approved_image(other_job.id, 0, "0f0f0f0f0f0f0f0f")
    assert {i for i, _ in ours.approved_hashes(None)} == {first, third.id, fourth, elsewhere}
    repository.delete_execution(other_job.id)
    assert {i for i, _ in ours.approved_hashes(None)} == {first, third.id, fourth}


def test_approved_hashes_follow_the_store_across_repositories() -> None:
    _check_approved_hashes_follow_the_store()


@pytest.mark.postgres
def test_approved_hashes_follow_the_store_on_postgres(postgres_store: str) -> None:
    _check_approved_hashes_follow_the_store()
