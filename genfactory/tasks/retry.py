"""Retrying failed images and approving rejected ones by hand (docs/SPEC.md §5): processing and
metadata only, never QC, from the unprocessed original kept in temp.

`retry_pending` → `processing` → `approved` | `retry_failed`, each change a compare-and-set in
the store. The processing itself is the engine's (`process.render_staged`, `metadata.describe`,
`approval.approve`); only the statuses differ.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from prefect import task

from genfactory.config import Settings, apply_overrides, validate_settings
from genfactory.engine.queue import claim_batch
from genfactory.engine.runtime import release_runtime, start_runtime
from genfactory.engine.steps import (
    TASK_OPTIONS,
    describe_error,
    error_code,
    log_step,
    scrub_errors,
)
from genfactory.errors import UserError
from genfactory.statuses import RETRYABLE_IMAGE_STATUSES, ImageStatus, JobStatus
from genfactory.storage import repository
from genfactory.storage.models import utcnow
from genfactory.storage.repository import ImageRecord, TransitionError
from genfactory.tasks.approval import approve
from genfactory.tasks.metadata import describe
from genfactory.tasks.process import render_staged, staged_path

#: The only settings a retry may change: the image is neither generated nor checked again.
RETRY_SECTIONS = ("processing", "metadata")
DEFAULT_RETRY_STATUSES = (ImageStatus.QC_FAILED, ImageStatus.FAILED, ImageStatus.RETRY_FAILED)
_BEING_RETRIED = {ImageStatus.RETRY_PENDING, ImageStatus.PROCESSING}


def check_retry_overrides(overrides: dict[str, Any]) -> None:
    """Only processing.* and metadata.* settings; anything else is a clear UserError."""
    for key in overrides:
        if key.split(".", 1)[0] not in RETRY_SECTIONS:
            raise UserError(
                f"--set {key}: a retry only changes processing and metadata settings "
                "(processing.<name>=<value> or metadata.<name>=<value>); "
                "to change anything else, rerun the job with `genfactory rerun`"
            )


def retry_settings(execution_id: int, overrides: dict[str, Any]) -> Settings:
    """The job's settings as it ran, with the retry's overrides (validated the same way)."""
    execution = repository.get_execution(execution_id)
    settings = validate_settings(execution.settings_snapshot)
    return apply_overrides(settings, overrides) if overrides else settings


def parse_statuses(statuses: Sequence[str] | None) -> list[str]:
    """The statuses a `--job` retry picks, checked."""
    chosen = [s.strip() for item in (statuses or DEFAULT_RETRY_STATUSES) for s in item.split(",")]
    allowed = {str(s) for s in RETRYABLE_IMAGE_STATUSES}
    for status in chosen:
        if status not in allowed:
            raise UserError(
                f"--status {status!r} cannot be retried; choose from {', '.join(sorted(allowed))}"
            )
    return chosen


def select_images(
    *,
    job_id: int | None,
    image_ids: Sequence[int] | None,
    statuses: Sequence[str] | None,
    manual: bool,
) -> list[ImageRecord]:
    """The images a retry (or manual approval) asks for, each checked; a UserError names the
    first that cannot be retried and why."""
    if manual:
        allowed: Collection[str] = {ImageStatus.QC_FAILED}
    else:
        allowed = {str(s) for s in RETRYABLE_IMAGE_STATUSES}
    if job_id is not None and image_ids:
        raise UserError("give either --job or --image, not both")
    if job_id is not None:
        _check_job(job_id)
        chosen = parse_statuses(statuses)
        images = [
            image for image in repository.list_images(execution_id=job_id) if image.status in chosen
        ]
        if not images:
            raise UserError(
                f"job {job_id} has no image with status {' or '.join(chosen)}: nothing to retry"
            )
        return images
    if not image_ids:
        raise UserError("say what to retry: --job JOB_ID or --image IMAGE_ID (repeatable)")
    images = []
    for image_id in dict.fromkeys(image_ids):
        image = repository.get_image(image_id)
        if image.status in _BEING_RETRIED:
            raise UserError(
                f"image {image_id} is already being retried ({image.status}); wait for that "
                "retry to end (`genfactory images show "
                f"{image_id}`), or run `genfactory retry` to continue a retry a crash left"
            )
        if image.status not in allowed:
            what = "approved by hand" if manual else "retried"
            raise UserError(
                f"image {image_id} is {image.status}: only "
                f"{' or '.join(sorted(allowed))} images can be {what}"
            )
        _check_job(image.execution_id)
        images.append(image)
    return images


def _check_job(job_id: int) -> None:
    execution = repository.get_execution(job_id)
    if execution.status == JobStatus.RUNNING:
        raise UserError(
            f"job {job_id} is running; retry its images once it has ended "
            f"(or stop it with `genfactory jobs stop {job_id}`)"
        )


def queue_retries(
    *,
    job_id: int | None = None,
    image_ids: Sequence[int] | None = None,
    statuses: Sequence[str] | None = None,
    overrides: dict[str, Any] | None = None,
    manual: bool = False,
) -> tuple[str, int]:
    """Check the request and queue it in the store as one batch: (batch id, images)."""
    overrides = dict(overrides or {})
    check_retry_overrides(overrides)
    images = select_images(job_id=job_id, image_ids=image_ids, statuses=statuses, manual=manual)
    for execution_id in {image.execution_id for image in images}:
        retry_settings(execution_id, overrides)  # a bad value fails before anything is queued
    from_statuses = {ImageStatus.QC_FAILED} if manual else set(RETRYABLE_IMAGE_STATUSES)
    try:
        batch = repository.enqueue_retries(
            [image.id for image in images], from_statuses, overrides=overrides, manual=manual
        )
    except TransitionError as exc:
        raise UserError(f"{exc}: another retry took it first; nothing was queued") from None
    return batch, len(images)


def retry_image(item_id: int, image_id: int, overrides: dict[str, Any], manual: bool) -> str:
    """Carry one queued image through processing and metadata to `approved` or
    `retry_failed`; re-entrant (an image left `processing` by a crash is processed again).
    The queue item ends done or failed whatever happens; returns the image's status."""
    try:
        status = _retry(image_id, overrides, manual)
    except BaseException as exc:
        repository.finish_work(item_id, repository.WORK_FAILED, error=describe_error(exc))
        raise
    done = status == ImageStatus.APPROVED
    repository.finish_work(item_id, repository.WORK_DONE if done else repository.WORK_FAILED)
    return status


def _retry(image_id: int, overrides: dict[str, Any], manual: bool) -> str:
    image = repository.get_image(image_id)
    if image.status not in _BEING_RETRIED:
        return str(image.status)  # finished by an earlier attempt
    settings = retry_settings(image.execution_id, overrides)
    if any(key.startswith("metadata.") for key in overrides) and image.image_metadata:
        image = repository.update_image(image.id, image_metadata=None)  # asked for anew
    used = settings.processing.model_dump(mode="json")
    before = image.qc_reason or image.error
    if image.status == ImageStatus.RETRY_PENDING:
        image = repository.transition_image(
            image.id,
            ImageStatus.RETRY_PENDING,
            ImageStatus.PROCESSING,
            processing_settings=used,
            error=None,
            error_code=None,
        )
    runtime = start_runtime(image.execution_id, settings)
    fields = {"slot": image.slot, "image_index": image.image_index}
    kind = "manual approval" if manual else "retry"
    try:
        source = image.temp_image_path
        if not source or not Path(source).is_file():
            raise UserError(f"the original of image {image.id} is no longer in temp ({source})")
        outcome, _note = render_staged(runtime, image, staged_path(runtime, image))
        image = repository.update_image(
            image.id,
            width=outcome["width"],
            height=outcome["height"],
            media_type=f"image/{'jpeg' if outcome['format'] == 'jpg' else outcome['format']}",
        )
        image = describe(runtime, image)
        image = approve(
            runtime,
            image,
            expected=ImageStatus.PROCESSING,
            rejected=ImageStatus.RETRY_FAILED,
            check_duplicates=not manual,
            approved_by_hand=True if manual else None,
            qc_reason=None,
        )
        error = image.qc_reason if image.status != ImageStatus.APPROVED else None
    except Exception as exc:  # any failure ends the retry: the image must not stay processing
        error = describe_error(exc)
        image = repository.transition_image(
            image.id,
            ImageStatus.PROCESSING,
            ImageStatus.RETRY_FAILED,
            error=f"{kind}: {error}",
            error_code=error_code(exc),
        )
        log_step(f"{kind} failed: {error}", step="retry", level=logging.WARNING, **fields)
    finally:
        release_runtime(image.execution_id)
    repository.add_image_history(
        image.id,
        {
            "at": utcnow().isoformat(),
            "kind": kind,
            "overrides": overrides,
            "processing_settings": used,
            "before": before,
            "status": str(image.status),
            "error": error,
            "file": image.final_image_path,
        },
    )
    repository.refresh_totals(image.execution_id)
    return str(image.status)


# ---------------------------------------------------------------------------------------------
# The tasks of the `retry-images` flow


@task(name="queue-retries", **TASK_OPTIONS)
@scrub_errors
def queue_retry_request(
    job_id: int | None,
    image_ids: list[int] | None,
    statuses: list[str] | None,
    overrides: dict[str, Any],
    manual: bool,
) -> int:
    """Queue the images to retry in the store; returns how many."""
    _batch, count = queue_retries(
        job_id=job_id, image_ids=image_ids, statuses=statuses, overrides=overrides, manual=manual
    )
    return count


@task(name="claim-retry-batch", **TASK_OPTIONS)
def claim_retry_batch() -> list[tuple[int, int, dict[str, Any], bool]]:
    """The next queued batch: (item id, image id, overrides, manual) each; empty when done."""
    return [(i.id, i.target_id, i.overrides, i.manual) for i in claim_batch("retry")]


@task(name="retry-image", task_run_name="retry/{image_id}", **TASK_OPTIONS)
@scrub_errors
def retry_one_image(item_id: int, image_id: int, overrides: dict[str, Any], manual: bool) -> str:
    """Retry (or approve by hand) one queued image; returns its final status."""
    return retry_image(item_id, image_id, overrides, manual)
