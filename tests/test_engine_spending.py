"""Spending inside real jobs, over loopback HTTP against the fakes: an ambiguous paid create is
never made again by the engine (not by a second pass, not by a resume), a budget stops the job
before the call that would pass it, and a huge download never reaches a paid call."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from genfactory.config import Settings, load_settings, validate_settings
from genfactory.engine.runtime import release_runtime, start_runtime
from genfactory.flows import generate_job, resume_job
from genfactory.statuses import JobStatus, SlotStatus
from genfactory.storage import repository
from genfactory.tasks import pipeline
from tests.fakes.fixtures import exported_fakes
from tests.fakes.server import FakeServices

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_harness")]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServices]:
    with exported_fakes(monkeypatch, image_long_side=128) as fake:
        fake.qc_reject_words = ()
        yield fake


def settings_for(tmp_path: Path, fake: FakeServices, count: int, **extra: Any) -> Settings:
    keywords = tmp_path / "keywords.txt"
    keywords.write_text("\n".join(f"subject {i}" for i in range(count)) + "\n")
    values: dict[str, Any] = {
        "job.keywords_file": str(keywords),
        "job.output_dir": str(tmp_path / "out"),
        "job.temp_dir": str(tmp_path / "tmp"),
        "job.count": count,
        "job.max_concurrency": 1,
        "providers.image": "piapi",
        "providers.qc": "openai",
        "providers.metadata": "openai",
        "generation.polling_interval_seconds": 0.05,
        "generation.http_timeout_seconds": 1.0,
        "generation.retry_backoff_seconds": 0.01,
        "qc.min_width": 64,
        "qc.min_height": 64,
    }
    values.update(extra)
    return load_settings(overrides=values, environ=fake.env())


def _creates(fake: FakeServices) -> int:
    return sum(1 for r in fake.requests("piapi") if r.method == "POST")


@pytest.mark.parametrize("fault", ["late_answer", "502_after"])
def test_an_ambiguous_create_fails_its_slot_and_is_never_created_again(
    tmp_path: Path, fake: FakeServices, fault: str
) -> None:
    fake.add_fault("piapi", fault, path="/api/v1/task")
    summary = generate_job(settings_for(tmp_path, fake, 2))
    execution_id = summary["execution_id"]
    first, second = repository.list_slots(execution_id)
    assert first.status == SlotStatus.FAILED and first.error_code == "ambiguous_create"
    assert "charge" in str(first.error)
    assert second.status == SlotStatus.GENERATED
    assert _creates(fake) == 2  # one per slot, the ambiguous one included
    assert summary["failed_slots"] == 1 and summary["slot_failures"][0]["code"] == (
        "ambiguous_create"
    )
    # A second pass over the slot (a retry of the step, a reconcile) creates nothing.
    snapshot = repository.get_execution(execution_id).settings_snapshot
    start_runtime(execution_id, validate_settings(snapshot))
    try:
        assert pipeline.carry_slot(execution_id, first.id, first.slot, direct=True) == "done"
    finally:
        release_runtime(execution_id)
    assert _creates(fake) == 2


def test_a_resume_never_repeats_a_create_that_may_have_been_sent(
    tmp_path: Path, fake: FakeServices
) -> None:
    # A worker died after sending the create and before the task id came back.
    summary = generate_job(settings_for(tmp_path, fake, 1))
    execution_id = summary["execution_id"]
    creates = _creates(fake)
    interrupted = repository.create_execution(
        label="killed",
        settings_snapshot=repository.get_execution(execution_id).settings_snapshot,
        output_dir=str(tmp_path / "out"),
        temp_dir=str(tmp_path / "tmp"),
    )
    (slot_id,) = repository.add_slots(
        interrupted.id,
        [
            {
                "slot": 0,
                "keyword": "subject 0",
                "variables": {},
                "aspect_ratio": "1:1",
                "width": 128,
                "height": 128,
                "system_prompt": "subject 0",
                "prompt": "subject 0, photo",
            }
        ],
    )
    repository.transition_slot(slot_id, SlotStatus.PENDING, SlotStatus.GENERATING)
    repository.transition_execution(interrupted.id, JobStatus.RUNNING, JobStatus.INTERRUPTED)
    resumed = resume_job(interrupted.id)
    slot = repository.get_slot(slot_id)
    assert slot.status == SlotStatus.FAILED and slot.error_code == "ambiguous_create"
    assert _creates(fake) == creates
    assert resumed["failed_slots"] == 1
    # Counted as a create that may have been charged, in the store's usage and the estimate.
    usage = repository.get_execution(interrupted.id).usage or {}
    assert usage["piapi"]["ambiguous_creates"] == 1


def test_a_budget_stops_the_job_before_the_call_that_would_pass_it(
    tmp_path: Path, fake: FakeServices
) -> None:
    settings = settings_for(tmp_path, fake, 4, **{"job.max_cost": 0.05})
    summary = generate_job(settings)
    execution = repository.get_execution(summary["execution_id"])
    assert execution.status == JobStatus.FAILED
    assert "job.max_cost" in str(execution.error_message)
    slots = repository.list_slots(execution.id)
    assert any(s.error_code == "budget_exceeded" for s in slots)
    assert _creates(fake) < 4


def test_a_200_mb_download_stops_at_the_cap_and_reaches_no_paid_call(
    tmp_path: Path, fake: FakeServices
) -> None:
    fake.add_fault("cdn", "huge", mb=200, chunked=True)
    settings = settings_for(tmp_path, fake, 1, **{"generation.max_download_mb": 5})
    summary = generate_job(settings)
    (slot,) = repository.list_slots(summary["execution_id"])
    assert slot.status == SlotStatus.FAILED and slot.error_code == "download_too_large"
    vision = [r for r in fake.requests("openai") if r.method == "POST"]
    assert vision == []  # no QC or metadata call was paid for it
    assert list((tmp_path / "tmp").glob("*")) == []
