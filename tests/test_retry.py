"""Retrying failed images and approving rejected ones by hand, in one process against the fake
services: processing and metadata only (QC is never asked again), the settings asked for, the
job's status and times untouched, a batch a crash left taken up by the next retry."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from genfactory.errors import UserError
from genfactory.flows import generate_job
from genfactory.flows.retry_images import retry_images
from genfactory.statuses import ImageStatus
from genfactory.storage import repository
from genfactory.tasks.retry import queue_retries
from tests.fakes.server import FakeServices
from tests.test_services_e2e import remote_settings

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_harness")]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServices]:
    """The fakes, small images, and the environment a user would export for them."""
    services = FakeServices(image_long_side=192).start()
    for name, value in services.env().items():
        monkeypatch.setenv(name, value)
    try:
        yield services
    finally:
        services.stop()


def _qc_requests(services: FakeServices) -> list[object]:
    chats = services.requests("openai", path="/chat/completions")
    return [r for r in chats if "quality_check" in str(r.json.get("response_format"))]


def _rejected_job(tmp_path: Path, services: FakeServices) -> int:
    """A finished job with 4 approved and 4 qc_failed PNG images (the fake rejects logos)."""
    settings = remote_settings(
        tmp_path,
        services,
        count=2,
        **{"processing.remove_bg": False, "processing.convert_format": "png"},
    )
    summary = generate_job(settings)
    assert summary["qc_failed"] == 4
    services.clear_requests()
    return int(summary["execution_id"])


def test_a_retry_with_new_settings_reprocesses_without_qc_and_keeps_the_job_status(
    tmp_path: Path, fake: FakeServices
) -> None:
    job = _rejected_job(tmp_path, fake)
    before = repository.get_execution(job)
    rejected = repository.list_images(execution_id=job, status=ImageStatus.QC_FAILED)

    result = retry_images(
        job_id=job,
        overrides={"processing.convert_format": "jpg", "processing.jpg_quality": 40},
    )

    assert _qc_requests(fake) == []
    assert set(result["images"].values()) == {"approved"}
    for original in rejected:
        image = repository.get_image(original.id)
        assert image.status == ImageStatus.APPROVED
        final = Path(str(image.final_image_path))
        assert final.parent == tmp_path / "out" and final.suffix == ".jpg"
        assert final.read_bytes()[:2] == b"\xff\xd8" and image.media_type == "image/jpeg"
        assert str(image.image_metadata["title"]).encode() in final.read_bytes()
        assert image.processing_settings["jpg_quality"] == 40
        assert image.history[-1]["status"] == "approved"
        assert not Path(str(original.temp_image_path)).exists()  # the original is used up
    after = repository.get_execution(job)
    assert (after.status, after.started_at, after.completed_at) == (
        before.status,
        before.started_at,
        before.completed_at,
    )
    assert (after.approved_images, after.qc_failed_images) == (8, 0)


def test_a_retry_refuses_other_settings_and_images_already_being_retried(
    tmp_path: Path, fake: FakeServices
) -> None:
    job = _rejected_job(tmp_path, fake)
    image = repository.list_images(execution_id=job, status=ImageStatus.QC_FAILED)[0]
    with pytest.raises(UserError, match="only changes processing and metadata"):
        queue_retries(job_id=job, overrides={"job.count": 3})
    with pytest.raises(UserError, match="jpg_quality"):
        queue_retries(job_id=job, overrides={"processing.jpg_quality": 400})
    assert repository.get_image(image.id).status == ImageStatus.QC_FAILED  # nothing queued

    queue_retries(image_ids=[image.id])
    with pytest.raises(UserError, match=f"image {image.id} is already being retried"):
        queue_retries(image_ids=[image.id])


def test_manual_approval_lands_the_file_with_metadata_and_records_it(
    tmp_path: Path, fake: FakeServices
) -> None:
    job = _rejected_job(tmp_path, fake)
    image = repository.list_images(execution_id=job, status=ImageStatus.QC_FAILED)[0]
    approved = repository.list_images(execution_id=job, status=ImageStatus.APPROVED)[0]
    with pytest.raises(UserError, match="only qc_failed images can be approved by hand"):
        queue_retries(image_ids=[approved.id], manual=True)

    retry_images(image_ids=[image.id], manual=True)

    done = repository.get_image(image.id)
    assert done.status == ImageStatus.APPROVED and done.approved_by_hand is True
    final = Path(str(done.final_image_path))
    assert final.parent == tmp_path / "out" and final.is_file()
    assert str(done.image_metadata["title"]).encode() in final.read_bytes()
    assert _qc_requests(fake) == []


def test_a_batch_left_by_a_killed_retry_is_finished_by_the_next_one(
    tmp_path: Path, fake: FakeServices
) -> None:
    job = _rejected_job(tmp_path, fake)
    queue_retries(job_id=job, overrides={"processing.convert_format": "webp"})
    # A worker that took the batch, moved the first image to `processing`, and was killed.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    items = repository.claim_next_batch(
        "retry", host=socket.gethostname(), pid=dead.pid, gone=lambda h, p: False
    )
    assert len(items) == 4
    repository.transition_image(
        items[0].target_id, ImageStatus.RETRY_PENDING, ImageStatus.PROCESSING
    )
    with pytest.raises(UserError, match="already being retried"):
        queue_retries(image_ids=[items[0].target_id])

    result = retry_images()  # nothing new: continues what is queued

    assert result["images"] == {str(i.target_id): "approved" for i in items}
    for item in items:
        assert Path(str(repository.get_image(item.target_id).final_image_path)).suffix == ".webp"
    assert {w.status for w in repository.list_work("retry")} == {"done"}
    assert _qc_requests(fake) == []
