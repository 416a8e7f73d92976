"""The process step (SPEC §4): near-duplicate check, then the Pillow pipeline in the process
pool with background removal between its two stages, written to the output directory."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from genfactory.errors import ImageRejected, JobFatalError, ProviderError
from genfactory.processing import find_near_duplicate
from genfactory.providers.base import ImageInput
from genfactory.statuses import ImageStatus
from genfactory.storage import repository
from genfactory.storage.repository import ImageRecord
from genfactory.tasks import imaging
from genfactory.tasks.common import (
    TASK_OPTIONS,
    describe_error,
    error_code,
    fail_image,
    log_step,
    scrub_errors,
    timed,
    will_retry,
)
from genfactory.tasks.files import safe_name
from genfactory.tasks.runtime import JobRuntime, get_runtime


@task(name="process", **TASK_OPTIONS)
@scrub_errors
def process_image(execution_id: int, image_id: int) -> bool:
    """Write the processed file to the output directory; True when the image goes on.

    The unprocessed original stays in temp until the image is approved (the metadata step
    removes it), so an image that fails later can be retried from it; a rejected or failed
    image has no file in the output directory.
    """
    runtime = get_runtime(execution_id)
    runtime.check()
    settings = runtime.settings
    options = settings.processing
    image = repository.get_image(image_id)
    source = str(image.temp_image_path)
    used = options.model_dump(mode="json")
    note = None
    with timed() as t:
        try:
            # Before any paid or visible work: a near-duplicate of an approved image costs
            # nothing more. (Approval checks again: a twin may be approved meanwhile.)
            phash = imaging.run_in_pool(imaging.hash_file, source, options.max_image_pixels)
            repository.update_image(image_id, phash=format(phash, "016x"))
            duplicate_of = near_duplicate_of(runtime, image_id, phash)
            if duplicate_of is not None:
                return reject_duplicate(image, duplicate_of)
            stem = _source_stem(image) or (
                f"{safe_name(str(settings.job.label))}_{image.slot}_{image.image_index}"
            )
            output_dir = str(settings.job.output_dir)
            if options.remove_bg and settings.providers.background != "none":
                prepared = imaging.run_in_pool(
                    imaging.prepare_file, source, used, options.max_image_pixels
                )
                cutout, note = _remove_background(runtime, prepared)
                if cutout is None:
                    return fail_image(
                        image,
                        "process",
                        f"background removal failed: {note}",
                        "remove_bg",
                        sub_step="remove_bg",
                        processing_settings=used,
                    )
                outcome = imaging.run_in_pool(
                    imaging.finish_to_file, cutout, output_dir, stem, used
                )
            else:
                outcome = imaging.run_in_pool(
                    imaging.finish_to_file, source, output_dir, stem, used
                )
        except ImageRejected as exc:
            return fail_image(
                image, "process", describe_error(exc), error_code(exc), processing_settings=used
            )
    repository.update_image(
        image_id,
        final_image_path=str(outcome["path"]),
        width=outcome["width"],
        height=outcome["height"],
        media_type=f"image/{'jpeg' if outcome['format'] == 'jpg' else outcome['format']}",
        processing_settings=used,
    )
    log_step(
        f"{Path(outcome['path']).name} {outcome['width']}x{outcome['height']}"
        + (f" ({note})" if note else ""),
        step="process",
        slot=image.slot,
        image_index=image.image_index,
        duration_ms=t["ms"],
    )
    return True


def _source_stem(image: ImageRecord) -> str | None:
    """The file name stem of an image that came from `job.images_dir`, else None."""
    for slot in repository.list_slots(image.execution_id):
        if slot.slot == image.slot:
            stem = slot.variables.get("source_stem")
            return str(stem) if stem else None
    return None


def _remove_background(runtime: JobRuntime, prepared: bytes) -> tuple[bytes | None, str | None]:
    """(cutout PNG, note). Soft failure mode keeps the image; `fail` returns (None, reason)."""
    try:
        with runtime.guard():
            result = runtime.provider("background").remove_background(
                ImageInput(data=prepared, media_type="image/png")
            )
    except JobFatalError:
        raise  # the guard has stopped the job: no soft fallback for a bad key or no credits
    except ProviderError as exc:
        if will_retry(exc):
            raise  # a transient error: the step's retries (and Retry-After) come first
        if runtime.settings.processing.remove_bg_failure_mode == "fail":
            return None, describe_error(exc)
        return prepared, f"background kept: {describe_error(exc)}"
    return result.data, result.note


def near_duplicate_of(runtime: JobRuntime, image_id: int, phash: int) -> int | None:
    """The id of an approved image (of the job, or the store) this one nearly duplicates."""
    options = runtime.settings.processing
    if options.near_duplicate_threshold <= 0:
        return None
    scope = runtime.execution_id if options.near_duplicate_scope == "job" else None
    earlier = [
        (other, int(h, 16)) for other, h in repository.approved_hashes(scope) if other != image_id
    ]
    return find_near_duplicate(phash, earlier, options.near_duplicate_threshold)


def reject_duplicate(image: ImageRecord, duplicate_of: int) -> bool:
    """Mark `qc_failed` as a near-duplicate; a processed file is removed, the original kept."""
    reason = f"near-duplicate of {duplicate_of}"
    fields: dict[str, object] = {}
    if image.final_image_path:
        Path(image.final_image_path).unlink(missing_ok=True)
        fields["final_image_path"] = None
    repository.update_image(image.id, status=ImageStatus.QC_FAILED, qc_reason=reason, **fields)
    log_step(
        f"rejected: {reason}",
        step="process",
        sub_step="dedupe",
        slot=image.slot,
        image_index=image.image_index,
    )
    return False
