"""`retry_images`: retry failed images (or approve rejected ones by hand) of finished jobs —
processing and metadata only, never QC (SPEC §5). The request is queued in the store first,
then every queued batch runs, one at a time, including batches a crashed run left."""

from __future__ import annotations

from typing import Any

from prefect import flow, task

from genfactory.engine.queue import claim_batch
from genfactory.engine.steps import TASK_OPTIONS, scrub_errors
from genfactory.tasks.retry import queue_retries, retry_image


@task(name="queue-retries", **TASK_OPTIONS)
@scrub_errors
def queue_task(
    job_id: int | None,
    image_ids: list[int] | None,
    statuses: list[str] | None,
    overrides: dict[str, Any],
    manual: bool,
) -> int:
    _batch, count = queue_retries(
        job_id=job_id, image_ids=image_ids, statuses=statuses, overrides=overrides, manual=manual
    )
    return count


@task(name="claim-retry-batch", **TASK_OPTIONS)
def claim_task() -> list[tuple[int, int, dict[str, Any], bool]]:
    return [(i.id, i.target_id, i.overrides, i.manual) for i in claim_batch("retry")]


@task(name="retry-image", task_run_name="retry/{image_id}", **TASK_OPTIONS)
@scrub_errors
def retry_task(item_id: int, image_id: int, overrides: dict[str, Any], manual: bool) -> str:
    return retry_image(item_id, image_id, overrides, manual)


@flow(name="retry-images", persist_result=False)
def retry_images(
    job_id: int | None = None,
    image_ids: list[int] | None = None,
    statuses: list[str] | None = None,
    overrides: dict[str, str | int | float | bool] | None = None,
    manual: bool = False,
) -> dict[str, Any]:
    """Queue the images of `job_id` with one of `statuses` (default qc_failed, failed,
    retry_failed), or the images `image_ids`, with `overrides` of processing.* / metadata.*
    settings (`manual`: approve qc_failed images by hand); then run every queued retry batch.
    With nothing given, only continues what is queued. Returns {image id: final status}."""
    queued = 0
    if job_id is not None or image_ids:
        queued = queue_task(job_id, image_ids, statuses, dict(overrides or {}), manual)
    results: dict[str, Any] = {}
    while batch := claim_task():
        for item_id, image_id, item_overrides, item_manual in batch:
            results[str(image_id)] = retry_task(item_id, image_id, item_overrides, item_manual)
    return {"queued": queued, "images": results}
