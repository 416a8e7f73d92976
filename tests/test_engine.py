"""The job engine in one process: the state machine's compare-and-set, steps that can run
again without spending again, nothing lost when Prefect's API fails, store-held job control, and
near-duplicate twins approved by two processes at once."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from genfactory.config import Settings, load_settings
from genfactory.engine.runtime import release_runtime, start_runtime
from genfactory.flows import generate_job
from genfactory.providers.local_qc import LocalQC
from genfactory.statuses import (
    FINAL_IMAGE_STATUSES,
    FINAL_SLOT_STATUSES,
    ImageStatus,
    JobStatus,
    SlotStatus,
)
from genfactory.storage import repository
from genfactory.storage.repository import TransitionError
from genfactory.tasks import pipeline

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ROOT = Path(__file__).resolve().parent.parent


def job_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "job.keywords_file": str(EXAMPLES / "keywords.txt"),
        "job.output_dir": str(tmp_path / "out"),
        "job.temp_dir": str(tmp_path / "tmp"),
        "job.seed": 11,
        "generation.local_long_side": 256,
        "generation.local_defect_rate": 0,
        "qc.min_width": 64,
        "qc.min_height": 64,
    }
    values.update(overrides)
    return load_settings(overrides=values, environ={})


def _execution() -> repository.ExecutionRecord:
    return repository.create_execution(
        label="engine", settings_snapshot={}, output_dir="/o", temp_dir="/t"
    )


def _image(execution_id: int, index: int, **fields: Any) -> repository.ImageRecord:
    return repository.add_image(
        execution_id=execution_id,
        slot=0,
        image_index=index,
        generation_prompt="p",
        temp_image_path=f"/t/{index}.png",
        **fields,
    )


def test_a_status_change_is_compare_and_set_and_names_both_statuses() -> None:
    image = _image(_execution().id, 0)
    repository.transition_image(image.id, ImageStatus.GENERATED, ImageStatus.QC_PASSED)
    with pytest.raises(TransitionError, match="is qc_passed, expected generated"):
        repository.transition_image(image.id, ImageStatus.GENERATED, ImageStatus.QC_FAILED)
    with pytest.raises(TransitionError, match="qc_passed -> approved is not a status change"):
        repository.transition_image(image.id, ImageStatus.QC_PASSED, ImageStatus.APPROVED)
    with pytest.raises(ValueError, match="status"):
        repository.update_image(image.id, status=ImageStatus.APPROVED)
    assert repository.get_image(image.id).status == ImageStatus.QC_PASSED


def test_usage_is_added_up_across_runs_never_overwritten() -> None:
    execution = _execution()
    repository.add_usage(execution.id, {"piapi": {"calls": 3}})
    repository.add_usage(
        execution.id, {"piapi": {"calls": 2, "retries": 1}, "openai": {"calls": 1}}
    )
    usage = repository.get_execution(execution.id).usage
    assert usage == {"piapi": {"calls": 5, "retries": 1}, "openai": {"calls": 1}}


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_harness")
def test_running_a_step_again_spends_nothing_and_writes_no_second_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    original = LocalQC.check
    monkeypatch.setattr(
        LocalQC, "check", lambda self, request: calls.append(1) or original(self, request)
    )
    summary = generate_job(job_settings(tmp_path, **{"job.count": 1, "job.variations": 2}))
    assert len(calls) == 2 and summary["approved"] == 2
    execution_id = summary["execution_id"]
    outputs = sorted(p.name for p in (tmp_path / "out").iterdir())
    snapshot = repository.get_execution(execution_id).settings_snapshot
    from genfactory.config import validate_settings

    start_runtime(execution_id, validate_settings(snapshot))
    try:
        (slot,) = repository.list_slots(execution_id)
        for image in repository.list_images(execution_id=execution_id):
            status = pipeline.run_image.fn(execution_id, image.id, image.slot, image.image_index)
            assert status == ImageStatus.APPROVED
        assert pipeline.carry_slot(execution_id, slot.id, slot.slot, direct=True) == "done"
    finally:
        release_runtime(execution_id)
    assert len(calls) == 2  # no second QC call
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == outputs  # no "-2" file
    assert repository.get_slot(slot.id).attempts == 1


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_harness")
def test_a_failing_prefect_api_loses_no_slot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import prefect.task_engine as engine

    original = engine._create_task_run_locally
    failures = {"left": 6}

    def flaky(*args: Any, **kwargs: Any) -> Any:
        task = kwargs.get("task") or args[0]
        if task.name in ("slot", "generate", "image") and failures["left"] > 0:
            failures["left"] -= 1
            raise RuntimeError("503 Service Unavailable from POST /api/task_runs/ (injected)")
        return original(*args, **kwargs)

    monkeypatch.setattr(engine, "_create_task_run_locally", flaky)
    count = 6
    summary = generate_job(job_settings(tmp_path, **{"job.count": count, "job.variations": 2}))
    assert failures["left"] == 0  # the failures really happened
    execution = repository.get_execution(summary["execution_id"])
    slots = repository.list_slots(execution.id)
    images = repository.list_images(execution_id=execution.id)
    assert execution.status == JobStatus.COMPLETED
    assert [s.status for s in slots] == [SlotStatus.GENERATED] * count
    assert len(images) == count * 2
    assert all(i.status in FINAL_IMAGE_STATUSES for i in images)
    assert (
        execution.approved_images + execution.qc_failed_images + execution.failed_images
        == execution.total_images
        == count * 2
    )


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_harness")
def test_a_stop_written_to_the_store_is_honoured_by_the_running_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another process asks the job to stop once its first image is approved.
    from genfactory.tasks import approval

    original = approval.approve
    asked: list[int] = []

    def approve_then_stop(runtime: Any, image: Any) -> Any:
        approved = original(runtime, image)
        if not asked:
            asked.append(image.id)
            repository.request_stop(runtime.execution_id, "stopped by `genfactory jobs stop`")
            time.sleep(2.5)  # the job's control loop reads the store every second
        return approved

    monkeypatch.setattr(pipeline, "approve", approve_then_stop)
    settings = job_settings(
        tmp_path, **{"job.count": 6, "job.variations": 2, "job.max_concurrency": 1}
    )
    summary = generate_job(settings)
    execution = repository.get_execution(summary["execution_id"])
    assert execution.status == JobStatus.CANCELLED
    assert execution.error_message == "stopped: stopped by `genfactory jobs stop`"
    slots = repository.list_slots(execution.id)
    # The slot in flight finished; later slots never started and wait for a resume.
    assert slots[0].status in FINAL_SLOT_STATUSES
    assert [s.status for s in slots[2:]] == [SlotStatus.PENDING] * 4
    assert summary["unstarted_slots"] >= 4

    from genfactory.flows import resume_job

    resumed = resume_job(execution.id)
    after = repository.get_execution(execution.id)
    assert resumed["status"] == after.status == JobStatus.COMPLETED
    assert after.total_images == 12 and after.approved_images == 12
    assert after.stop_requested_at is None


TWIN = textwrap.dedent(
    """
    import sys, time
    from genfactory.storage import repository
    image_id, at = int(sys.argv[1]), float(sys.argv[2])
    def judge(approved):
        time.sleep(0.3)  # both processes inside the check at once, unless serialised
        return approved[0][0] if approved else None
    while time.time() < at:
        time.sleep(0.005)
    image, twin_of = repository.approve_image(image_id, judge, None, final_image_path="/o/x")
    print(image.status, twin_of)
    """
)


@pytest.mark.postgres
def test_two_processes_approving_near_duplicate_twins_approve_exactly_one(
    postgres_store: str,
) -> None:
    execution = _execution()
    twins = []
    for index in (0, 1):
        image = _image(execution.id, index, phash="ffff0000ffff0000")
        for new in (ImageStatus.QC_PASSED, ImageStatus.PROCESSED):
            image = repository.transition_image(image.id, image.status, new)
        twins.append(image)
    at = time.time() + 3
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", TWIN, str(image.id), str(at)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for image in twins
    ]
    outputs = [p.communicate(timeout=60) for p in processes]
    assert all(p.returncode == 0 for p in processes), outputs
    statuses = sorted(repository.get_image(image.id).status for image in twins)
    assert statuses == [ImageStatus.APPROVED, ImageStatus.QC_FAILED]
    rejected = next(
        repository.get_image(i.id)
        for i in twins
        if repository.get_image(i.id).status == ImageStatus.QC_FAILED
    )
    assert str(rejected.qc_reason).startswith("near-duplicate of ")


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_harness")
def test_an_approval_cut_off_after_its_file_was_named_leaves_no_second_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The worker dies between giving the file its name in the output directory and recording
    # the approval; the step runs again (a resume) and embeds the metadata again first.
    original = repository.approve_image
    calls: list[int] = []

    def dies_once(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("killed")
        return original(*args, **kwargs)

    monkeypatch.setattr(repository, "approve_image", dies_once)
    summary = generate_job(job_settings(tmp_path, **{"job.count": 1, "job.variations": 1}))
    outputs = sorted(p.name for p in (tmp_path / "out").iterdir())
    (image,) = repository.list_images(execution_id=summary["execution_id"])
    assert image.status == ImageStatus.APPROVED and len(calls) == 2
    assert outputs == [Path(str(image.final_image_path)).name]
    assert "-2." not in outputs[0]


def _task_run_names(flow_run_id: str) -> list[str]:
    """The task runs the Prefect API recorded for a flow run, by name."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])), limit=200
        )
    return sorted(run.name for run in runs if "/" in run.name)


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("variations", [1, 2])
def test_the_ui_shows_each_slot_and_each_image_of_a_slot_of_several(
    tmp_path: Path, variations: int
) -> None:
    from tests.support import wait_for

    summary = generate_job(job_settings(tmp_path, **{"job.count": 3, "job.variations": variations}))
    execution = repository.get_execution(summary["execution_id"])
    assert execution.status == JobStatus.COMPLETED
    assert execution.total_images == 3 * variations
    expected = [f"generate/{slot}" for slot in range(3)]
    if variations > 1:  # a slot of one image is carried by its generate task alone
        expected += [f"image/{slot}-{i}" for slot in range(3) for i in range(variations)]
    flow_run = (execution.flow_run_ids or [])[0]
    wait_for(lambda: len(_task_run_names(flow_run)) >= len(expected), 30, "the task runs")
    assert _task_run_names(flow_run) == sorted(expected)
