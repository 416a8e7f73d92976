"""The generate step of a slot: prompt, image provider, every image saved to temp, checked
locally and recorded at once (all of a generation's rows, and the slot `generated`, in one
transaction).

Re-entrant: a generated slot returns its images again without any call; a slot whose provider
task id is recorded is polled, never created again; a slot that may have sent a paid create
before its worker died is not created again on its own (`ambiguous_create`).
"""

from __future__ import annotations

import random
from pathlib import Path

from genfactory import pricing
from genfactory.config import Settings
from genfactory.engine import pool
from genfactory.engine.runtime import JobRuntime, get_runtime
from genfactory.engine.steps import describe_error, error_code, log_step, scrub_errors, timed
from genfactory.errors import ImageRejected, JobStopped, MalformedResponse
from genfactory.files import image_name, owned_stem, remove_quietly, write_replacing
from genfactory.image_folder import SOURCE_PATH, source_stem_of
from genfactory.media import extension_for, sniff_media_type
from genfactory.providers.base import GenerationRequest, ImageResult, PromptRequest
from genfactory.providers.registry import images_per_slot, repeatable_create
from genfactory.statuses import OPEN_IMAGE_STATUSES, ImageStatus, SlotStatus
from genfactory.storage import repository
from genfactory.storage.repository import SlotRecord
from genfactory.tasks import image_files

AMBIGUOUS_CREATE = "ambiguous_create"


@scrub_errors
def generate_slot(execution_id: int, slot_id: int, slot: int) -> list[tuple[int, int]]:
    """Generate slot `slot` (row `slot_id`) into the temp directory; returns (id, image index)
    of its images the job still has to carry on. Raises when the generation failed for good
    (the slot is then `failed` with the reason)."""
    runtime = get_runtime(execution_id)
    record = repository.get_slot(slot_id)
    if record.status == SlotStatus.GENERATED:
        return _open_images(execution_id, record.slot)
    if record.status == SlotStatus.FAILED:
        return []
    runtime.check()
    settings = runtime.settings
    if (
        record.status == SlotStatus.GENERATING
        and not record.provider_task_id
        and not repeatable_create(settings)
    ):
        message = (
            f"a paid create at {settings.providers.image} may have been sent before the job was "
            "interrupted, and no task id came back: it is not created again on its own, so you "
            "are never charged twice; check the service's dashboard, then retry this slot on "
            "purpose"
        )
        repository.transition_slot(
            slot_id,
            SlotStatus.GENERATING,
            SlotStatus.FAILED,
            error=message,
            error_code=AMBIGUOUS_CREATE,
        )
        # Counted as a create that may have been charged, as the cost estimate and the budget
        # count every ambiguous create.
        runtime.context.usage.add(settings.providers.image, ambiguous_creates=1)
        log_step(message, step="generate", slot=record.slot, error_code=AMBIGUOUS_CREATE, level=40)
        return []
    try:
        with runtime.guard():
            if not record.provider_task_id:  # polling a recorded task costs nothing more
                runtime.check_budget(pricing.planned_calls(settings, 1))
            prompt = record.prompt or _make_prompt(runtime, record)
            # A new prompt is stored with the status change, one write: a slot that turned
            # `generating` always has the prompt its create was (or is about to be) sent with.
            repository.transition_slot(
                slot_id,
                (SlotStatus.PENDING, SlotStatus.GENERATING),
                SlotStatus.GENERATING,
                count_attempt=True,
                **({} if record.prompt else {"prompt": prompt}),
            )
            seed = _seed(settings.job.seed, record.slot)
            request = GenerationRequest(
                prompt=prompt,
                aspect_ratio=record.aspect_ratio,
                width=record.width,
                height=record.height,
                count=images_per_slot(settings),
                seed=seed,
                negative_prompt=settings.prompts.negative_prompt,
                resume_task_id=record.provider_task_id,
                source_path=record.variables.get(SOURCE_PATH),
                on_task_created=lambda task_id: repository.update_slot(
                    slot_id, provider_task_id=task_id
                ),
            )
            with timed() as t:
                result = runtime.providers.image.generate(request)
            if not result.images:
                raise MalformedResponse(
                    f"{settings.providers.image} returned no image",
                    service=settings.providers.image,
                )
    except JobStopped:
        raise
    except Exception as exc:
        repository.transition_slot(
            slot_id,
            (SlotStatus.PENDING, SlotStatus.GENERATING),
            SlotStatus.FAILED,
            error=describe_error(exc),
            error_code=error_code(exc),
        )
        log_step(
            f"generation failed: {describe_error(exc)}",
            step="generate",
            slot=record.slot,
            error_code=error_code(exc),
            level=40,
        )
        raise
    final_prompt = result.final_prompt or prompt
    slot_fields: dict[str, object] = {"prompt": final_prompt}
    if result.task_id and not record.provider_task_id:
        # Recorded with the images when the provider had nothing to poll later (a local render).
        slot_fields["provider_task_id"] = result.task_id
    image_ids = _save_images(runtime, record, seed, slot_fields, result.images)
    log_step(
        f"{len(result.images)} images from {settings.providers.image}",
        step="generate",
        slot=record.slot,
        duration_ms=t["ms"],
    )
    return image_ids


def _open_images(execution_id: int, slot: int) -> list[tuple[int, int]]:
    return [
        (image.id, image.image_index)
        for image in repository.list_images(execution_id=execution_id, slot=slot)
        if image.status in OPEN_IMAGE_STATUSES
    ]


def _make_prompt(runtime: JobRuntime, slot: SlotRecord) -> str:
    """The slot's prompt from the prompt provider (the caller stores it)."""
    with timed() as t:
        prompt: str = runtime.providers.prompt.make_prompt(
            PromptRequest(
                system_prompt=slot.system_prompt,
                keyword=slot.keyword,
                variables={k: str(v) for k, v in slot.variables.items()},
            )
        )
    log_step(f"prompt: {prompt[:160]}", step="prompt", slot=slot.slot, duration_ms=t["ms"])
    return prompt


def _seed(base_seed: int | None, slot: int) -> int:
    """Reproducible per slot when the job has a seed, random otherwise."""
    if base_seed is None:
        return random.randrange(2**31)
    # Providers give image i of a slot `seed + i`: slots are spaced wider than any image
    # count (at most 20 per generation) so no two images of a job share a seed.
    return (base_seed * 100_003 + slot * 32) % 2**31


def _save_images(
    runtime: JobRuntime,
    slot: SlotRecord,
    seed: int,
    slot_fields: dict[str, object],
    images: list[ImageResult],
) -> list[tuple[int, int]]:
    """Write every image to temp and decode it locally (format, pixel limit, truncation), then
    record them all and the slot `generated` (with `slot_fields`) in one transaction: a crash
    leaves either all of a generation's rows or none (and then no file behind). An image that
    does not decode is recorded `failed` with the reason, before any paid QC sees it."""
    settings: Settings = runtime.settings
    temp_dir = Path(str(settings.job.temp_dir))
    source_stem = source_stem_of(slot.variables)  # an image from `job.images_dir`
    rows: list[dict[str, object]] = []
    try:
        for index, image in enumerate(images):
            media_type = sniff_media_type(image.data) or "application/octet-stream"
            # The execution id keeps temp names apart across jobs that share a label; the name
            # is this image's own, so a generation saved again replaces it.
            name = image_name(str(settings.job.label), slot.slot, index, source_stem)
            path = write_replacing(
                temp_dir,
                owned_stem(name, runtime.execution_id),
                extension_for(media_type),
                image.data,
            )
            rows.append(
                {
                    "image_index": index,
                    "generation_prompt": slot_fields["prompt"],
                    "keyword": slot.keyword,
                    "aspect_ratio": slot.aspect_ratio,
                    "seed": image.seed if image.seed is not None else seed,
                    "temp_image_path": str(path),
                    "media_type": media_type,
                }
            )
        # Decoded side by side in the pool: one wait for the slot's images, not one each.
        hashes = pool.map_in_pool(
            image_files.hash_file,
            [(row["temp_image_path"], settings.processing.max_image_pixels) for row in rows],
        )
        for row, phash in zip(rows, hashes, strict=True):
            if isinstance(phash, ImageRejected):
                row.update(
                    status=ImageStatus.FAILED,
                    error=f"download: {describe_error(phash)}",
                    error_code=error_code(phash),
                )
                log_step(
                    f"failed: {describe_error(phash)}",
                    step="generate",
                    slot=slot.slot,
                    image_index=row["image_index"],
                    level=30,
                )
            elif isinstance(phash, Exception):
                raise phash
            else:
                row["phash"] = format(phash, "016x")
        ids = repository.add_images(
            runtime.execution_id, slot.slot, rows, slot_id=slot.id, slot_fields=slot_fields
        )
    except BaseException:
        for row in rows:
            remove_quietly(str(row["temp_image_path"]))
        raise
    return [
        (i, int(str(row["image_index"])))
        for i, row in zip(ids, rows, strict=True)
        if "status" not in row
    ]
