"""No execution stays `running` after its run ended: hooks, killed processes, partial work."""

from __future__ import annotations

import importlib
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from genfactory.config import load_settings
from genfactory.engine.recovery import recover_stale_executions, this_worker
from genfactory.engine.runtime import release_runtime, start_runtime
from genfactory.statuses import ImageStatus, JobStatus, SlotStatus
from genfactory.storage import repository
from genfactory.storage.db import get_engine
from genfactory.storage.models import JobExecution
from genfactory.tasks import generate

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _execution(**extra: Any) -> repository.ExecutionRecord:
    return repository.create_execution(
        label="lifecycle", settings_snapshot={}, output_dir="/o", temp_dir="/t", **extra
    )


def _set_heartbeat(execution_id: int, moment: datetime) -> None:
    with get_engine().begin() as conn:
        conn.execute(
            update(JobExecution).where(JobExecution.id == execution_id).values(heartbeat_at=moment)
        )


def test_an_execution_whose_worker_died_is_marked_interrupted_and_keeps_its_work(
    tmp_path: Path,
) -> None:
    host, pid = this_worker()
    dead = _execution(worker_host=host, worker_pid=_dead_pid())
    original = tmp_path / "original.png"
    original.write_bytes(b"original")
    image = repository.add_image(
        execution_id=dead.id,
        slot=0,
        image_index=0,
        generation_prompt="p",
        temp_image_path=str(original),
    )
    repository.transition_image(image.id, ImageStatus.GENERATED, ImageStatus.QC_PASSED)
    alive = _execution(worker_host=host, worker_pid=pid)
    quiet = _execution(worker_host="another-machine", worker_pid=4242)
    _set_heartbeat(quiet.id, datetime.now(UTC) - timedelta(minutes=10))
    beating = _execution(worker_host="another-machine", worker_pid=4343)
    _set_heartbeat(beating.id, datetime.now(UTC))
    assert sorted(recover_stale_executions()) == sorted([dead.id, quiet.id])
    record = repository.get_execution(dead.id)
    assert record.status == JobStatus.INTERRUPTED
    assert f"genfactory resume {dead.id}" in str(record.error_message)
    assert "no heartbeat" in str(repository.get_execution(quiet.id).error_message)
    # Its work is left for the resume: the image past QC stays past QC, its original in temp.
    kept = repository.get_image(image.id)
    assert kept.status == ImageStatus.QC_PASSED and original.exists()
    assert repository.get_execution(alive.id).status == JobStatus.RUNNING
    assert repository.get_execution(beating.id).status == JobStatus.RUNNING


def _slot_runtime(tmp_path: Path) -> tuple[int, int]:
    settings = load_settings(
        overrides={
            "job.keywords_file": str(EXAMPLES / "keywords.txt"),
            "job.variations": 3,
            "job.label": "partial",
            "job.output_dir": str(tmp_path / "out"),
            "job.temp_dir": str(tmp_path / "tmp"),
            "generation.local_long_side": 128,
        },
        environ={},
    )
    execution = _execution()
    (slot_id,) = repository.add_slots(
        execution.id,
        [
            {
                "slot": 0,
                "keyword": "fox",
                "variables": {},
                "aspect_ratio": "1:1",
                "width": 128,
                "height": 128,
                "system_prompt": "red fox",
            }
        ],
    )
    start_runtime(execution.id, settings)
    return execution.id, slot_id


def test_generate_records_all_images_of_a_generation_or_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    execution_id, slot_id = _slot_runtime(tmp_path)
    original = repository.add_images

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OSError("disk full")

    monkeypatch.setattr(repository, "add_images", broken)
    with pytest.raises(OSError):
        generate.generate_slot(execution_id, slot_id, 0)
    assert repository.list_images(execution_id=execution_id) == []
    assert list((tmp_path / "tmp").iterdir()) == []  # no orphan files
    assert repository.get_slot(slot_id).status == SlotStatus.GENERATING

    monkeypatch.setattr(repository, "add_images", original)
    first = generate.generate_slot(execution_id, slot_id, 0)
    again = generate.generate_slot(execution_id, slot_id, 0)  # a retry or a resume
    assert len(first) == 3 and again == first
    assert repository.get_slot(slot_id).status == SlotStatus.GENERATED
    assert len(list((tmp_path / "tmp").iterdir())) == 3

    # Images finished are not handed out again; images part-way are.
    assert [index for _, index in first] == [0, 1, 2]
    repository.transition_image(first[0][0], ImageStatus.GENERATED, ImageStatus.QC_FAILED)
    repository.transition_image(first[1][0], ImageStatus.GENERATED, ImageStatus.QC_PASSED)
    assert generate.generate_slot(execution_id, slot_id, 0) == first[1:]
    release_runtime(execution_id)


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_harness")
def test_a_flow_failing_after_initialization_leaves_a_resumable_execution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The module, not the flow of the same name that genfactory.flows exports.
    module = importlib.import_module("genfactory.flows.generate_job")

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("progress store unavailable")

    monkeypatch.setattr(module, "start_progress", explode)
    settings = load_settings(
        overrides={
            "job.keywords_file": str(EXAMPLES / "keywords.txt"),
            "job.output_dir": str(tmp_path / "out"),
            "job.temp_dir": str(tmp_path / "tmp"),
        },
        environ={},
    )
    state = module.generate_job(settings, return_state=True)
    assert state.is_failed()
    (execution,) = repository.list_executions()
    assert execution.status == JobStatus.INTERRUPTED
    assert "progress store unavailable" in str(execution.error_message)
