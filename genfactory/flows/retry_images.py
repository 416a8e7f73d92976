"""`retry_images`: retry failed images (or approve rejected ones by hand) of finished jobs —
processing and metadata only, never QC (docs/SPEC.md §5). The request is queued in the store first,
then every queued batch runs, one at a time, including batches a crashed run left."""

from __future__ import annotations

from typing import Any

from prefect import flow

from genfactory.tasks.retry import claim_retry_batch, queue_retry_request, retry_one_image


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
        queued = queue_retry_request(job_id, image_ids, statuses, dict(overrides or {}), manual)
    results: dict[str, Any] = {}
    while batch := claim_retry_batch():
        for item_id, image_id, item_overrides, item_manual in batch:
            results[str(image_id)] = retry_one_image(item_id, image_id, item_overrides, item_manual)
    return {"queued": queued, "images": results}
