"""The process step (docs/SPEC.md §4): near-duplicate check, then the Pillow pipeline in the process
pool with background removal between its two stages.

The processed file is staged in the temp directory under a name only this image uses
(`temp/.staged/`), so running the step again replaces it instead of adding a second file; it
reaches the output directory only at approval, with its metadata embedded (`tasks.metadata`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from genfactory import pricing
from genfactory.engine import pool
from genfactory.engine.runtime import JobRuntime
from genfactory.engine.steps import describe_error, error_code, fail_image, log_step, timed
from genfactory.errors import ImageRejected, JobFatalError, ProviderError
from genfactory.files import STAGED_DIR, image_name, owned_stem
from genfactory.image_folder import source_stem_of
from genfactory.processing import EXTENSIONS, find_near_duplicate, sendable_as_is
from genfactory.providers.base import ImageInput
from genfactory.statuses import ImageStatus
from genfactory.storage import repository
from genfactory.storage.repository import ImageRecord
from genfactory.tasks import image_files


def output_stem(runtime: JobRuntime, image: ImageRecord) -> str:
    """The delivered file's name before its extension (`files.image_name`)."""
    source = None
    if runtime.settings.job.images_dir is not None:
        slot = repository.get_slot_by_number(image.execution_id, image.slot)
        source = source_stem_of(slot.variables) if slot is not None else None
    label = str(runtime.settings.job.label)
    return image_name(label, image.slot, image.image_index, source)


def staged_path(runtime: JobRuntime, image: ImageRecord) -> Path:
    """Where the processed file of `image` waits for approval (one name per image)."""
    ext = EXTENSIONS[runtime.settings.processing.convert_format]
    stem = owned_stem(output_stem(runtime, image), runtime.execution_id)
    return Path(str(runtime.settings.job.temp_dir)) / STAGED_DIR / f"{stem}.{ext}"


def process(runtime: JobRuntime, image: ImageRecord) -> ImageRecord:
    """`qc_passed` → `processed` (staged file written), `qc_failed` (near-duplicate of an
    approved image) or `failed` (with the reason)."""
    settings = runtime.settings
    options = settings.processing
    used = options.model_dump(mode="json")
    note = None
    staged = staged_path(runtime, image)
    fields = {"slot": image.slot, "image_index": image.image_index}
    with timed() as t:
        # Before any paid or visible work: a near-duplicate of an approved image costs nothing
        # more. (Approval checks again, atomically: a twin may be approved meanwhile.)
        duplicate_of = near_duplicate_of(runtime, image)
        if duplicate_of is not None:
            reason = f"near-duplicate of {duplicate_of}"
            log_step(f"rejected: {reason}", step="process", sub_step="dedupe", **fields)
            return repository.transition_image(
                image.id, ImageStatus.QC_PASSED, ImageStatus.QC_FAILED, qc_reason=reason
            )
        try:
            outcome, note = render_staged(runtime, image, staged)
        except _BackgroundFailed as exc:
            return fail_image(
                image,
                "process",
                str(exc),
                "remove_bg",
                sub_step="remove_bg",
                processing_settings=used,
            )
        except ImageRejected as exc:
            return fail_image(
                image, "process", describe_error(exc), error_code(exc), processing_settings=used
            )
    processed = repository.transition_image(
        image.id,
        ImageStatus.QC_PASSED,
        ImageStatus.PROCESSED,
        width=outcome["width"],
        height=outcome["height"],
        media_type=f"image/{'jpeg' if outcome['format'] == 'jpg' else outcome['format']}",
        processing_settings=used,
    )
    log_step(
        f"{outcome['width']}x{outcome['height']} {outcome['format']}"
        + (f" ({note})" if note else ""),
        step="process",
        duration_ms=t["ms"],
        level=logging.INFO if note else logging.DEBUG,
        **fields,
    )
    return processed


class _BackgroundFailed(ImageRejected):
    code = "remove_bg"


def render_staged(
    runtime: JobRuntime, image: ImageRecord, staged: Path
) -> tuple[dict[str, Any], str | None]:
    """Run the Pillow pipeline (and background removal) on the image's original in temp into
    `staged`, with the runtime's processing settings: (outcome, note). Raises ImageRejected
    when the file cannot be used or background removal failed in `fail` mode."""
    options = runtime.settings.processing
    used = options.model_dump(mode="json")
    note = None
    if options.remove_bg:
        prepared, media_type = _prepared_for_removal(runtime, image, used)
        cutout, note = _remove_background(runtime, prepared, media_type)
        if cutout is None:
            raise _BackgroundFailed(f"background removal failed: {note}")
        outcome = pool.run_in_pool(
            image_files.finish_to_file, cutout, str(staged.parent), staged.stem, used, True
        )
    else:
        source = str(image.temp_image_path)
        outcome = pool.run_in_pool(
            image_files.finish_to_file, source, str(staged.parent), staged.stem, used, True
        )
    return dict(outcome), note


def _prepared_for_removal(
    runtime: JobRuntime, image: ImageRecord, used: dict[str, Any]
) -> tuple[bytes, str]:
    """(bytes, media type) for the background remover. Without a trim, the prepare stage
    changes nothing but the encoding of a plain RGB JPEG (`processing.sendable_as_is`): such a
    file goes as it is, read here, with no decode, PNG encode or trip through the busy pool
    between the QC answer and the removal call. Only a file whose every pixel decoded once
    (its perceptual hash was taken at download): the header says nothing of the pixels, and a
    paid removal must not be what finds a corrupt file. Anything else goes as its prepared
    PNG."""
    options = runtime.settings.processing
    source = str(image.temp_image_path)
    if image.phash and not options.trim_transparent_background:
        try:
            data = Path(source).read_bytes()
        except OSError:
            data = b""  # the prepared path below names what is wrong with the file
        if sendable_as_is(data, max_pixels=options.max_image_pixels):
            return data, "image/jpeg"
    prepared = pool.run_in_pool(image_files.prepare_file, source, used, options.max_image_pixels)
    return prepared, "image/png"


def _remove_background(
    runtime: JobRuntime, prepared: bytes, media_type: str
) -> tuple[bytes | None, str | None]:
    """(cutout PNG, note). Soft failure mode keeps the image; `fail` returns (None, reason)."""
    try:
        with runtime.guard():
            runtime.check_budget(pricing.call_of(runtime.settings, "background"))
            result = runtime.providers.background.remove_background(
                ImageInput(data=prepared, media_type=media_type)
            )
    except JobFatalError:
        raise  # the guard has stopped the job: no soft fallback for a bad key or no credits
    except ProviderError as exc:
        # The HTTP layer has already retried what was worth retrying.
        if runtime.settings.processing.remove_bg_failure_mode == "fail":
            return None, describe_error(exc)
        return prepared, f"background kept: {describe_error(exc)}"
    return result.data, result.note


Judge = Callable[[list[tuple[int, str]]], int | None]


def judge(runtime: JobRuntime, image: ImageRecord) -> Judge | None:
    """The near-duplicate judge for `repository.approve_image`, or None when the check is off."""
    threshold = runtime.settings.processing.near_duplicate_threshold
    if threshold <= 0 or not image.phash:
        return None
    phash = int(image.phash, 16)

    def _judge(approved: list[tuple[int, str]]) -> int | None:
        return find_near_duplicate(phash, [(i, int(h, 16)) for i, h in approved], threshold)

    return _judge


def duplicate_scope(runtime: JobRuntime) -> int | None:
    """The execution near-duplicates are looked for in (None: the whole store)."""
    scope = runtime.settings.processing.near_duplicate_scope
    return runtime.execution_id if scope == "job" else None


def near_duplicate_of(runtime: JobRuntime, image: ImageRecord) -> int | None:
    """The id of an approved image (of the job, or the store) this one nearly duplicates."""
    check = judge(runtime, image)
    if check is None:
        return None
    earlier = [
        (other, h)
        for other, h in repository.approved_hashes(duplicate_scope(runtime))
        if other != image.id
    ]
    return check(earlier)
