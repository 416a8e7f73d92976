"""The metadata step: title, description, keywords stored on the row and embedded in the file;
then the image is approved."""

from __future__ import annotations

import logging
from pathlib import Path

from prefect import task

from genfactory.providers.base import ImageInput, MetadataRequest
from genfactory.statuses import ImageStatus
from genfactory.storage import repository
from genfactory.tasks import imaging
from genfactory.tasks.common import (
    TASK_OPTIONS,
    describe_error,
    error_code,
    fail_image,
    log_step,
    scrub_errors,
    timed,
)
from genfactory.tasks.files import remove_quietly
from genfactory.tasks.process import near_duplicate_of, reject_duplicate
from genfactory.tasks.runtime import get_runtime


@task(name="metadata", **TASK_OPTIONS)
@scrub_errors
def describe_image(execution_id: int, image_id: int) -> bool:
    """Generate (if `run_metadata_gen`) and embed metadata, then approve the image."""
    runtime = get_runtime(execution_id)
    runtime.check()
    settings = runtime.settings
    image = repository.get_image(image_id)
    final_path = Path(str(image.final_image_path))
    metadata = image.image_metadata
    with timed() as t:
        if settings.metadata.run_metadata_gen and metadata is None:
            request = MetadataRequest(
                image=ImageInput(data=final_path.read_bytes(), media_type=image.media_type or ""),
                prompt=image.generation_prompt,
                keyword=image.keyword or "",
            )
            with runtime.guard():
                metadata = runtime.provider("metadata").describe(request).as_dict()
            repository.update_image(image_id, image_metadata=metadata)
        if metadata and settings.metadata.embed:
            imaging.embed_file_metadata(
                str(final_path),
                str(metadata["title"]),
                str(metadata["description"]),
                list(metadata["keywords"]),
            )
    with runtime.dedupe_lock:
        # The final near-duplicate check and the approval are one step, so two near-twins
        # processed at once cannot both be approved.
        duplicate_of = near_duplicate_of(runtime, image_id, int(str(image.phash or "0"), 16))
        if image.phash and duplicate_of is not None:
            return reject_duplicate(repository.get_image(image_id), duplicate_of)
        # Approved: from now on the image lives only in the output directory.
        repository.update_image(
            image_id, status=ImageStatus.APPROVED, temp_image_path=None, error=None, error_code=None
        )
    remove_quietly(image.temp_image_path)
    log_step(
        "approved" + (f": {metadata['title']}" if metadata else ""),
        step="metadata",
        slot=image.slot,
        image_index=image.image_index,
        duration_ms=t["ms"],
    )
    return True


def record_image_failure(image_id: int, step: str, exc: BaseException) -> None:
    """A step failed for good: the image is `failed` with the reason; its files stay listed."""
    fail_image(
        repository.get_image(image_id),
        step,
        f"{step}: {describe_error(exc)}",
        error_code(exc),
        level=logging.ERROR,
    )
