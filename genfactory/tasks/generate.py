"""The generate step: prompt, image provider, the images saved to temp and recorded at once."""

from __future__ import annotations

import random
from pathlib import Path

from prefect import task

from genfactory.config import Settings
from genfactory.errors import JobStopped, MalformedResponse
from genfactory.media import extension_for, sniff_media_type
from genfactory.providers.base import GeneratedImage, GenerationRequest, PromptRequest
from genfactory.statuses import ImageStatus, SlotStatus
from genfactory.storage import repository
from genfactory.tasks.common import (
    TASK_OPTIONS,
    describe_error,
    error_code,
    log_step,
    scrub_errors,
    timed,
)
from genfactory.tasks.files import remove_quietly, safe_name, write_atomically
from genfactory.tasks.runtime import get_runtime


@task(name="generate", **TASK_OPTIONS)
@scrub_errors
def generate_slot(execution_id: int, slot_id: int) -> list[int]:
    """Generate the slot's images into the temp directory; returns the ids of its images
    still waiting for QC (status `generated`).

    Idempotent: a slot whose images are recorded (a retry, a resume) is not generated again,
    and a provider task recorded by an interrupted attempt is polled, not re-created.
    """
    runtime = get_runtime(execution_id)
    runtime.check()
    slot = repository.get_slot(slot_id)
    existing = repository.list_images(execution_id=execution_id, slot=slot.slot)
    if existing:
        if slot.status != SlotStatus.GENERATED:
            repository.update_slot(slot_id, status=SlotStatus.GENERATED, error=None)
        return [image.id for image in existing if image.status == ImageStatus.GENERATED]

    settings = runtime.settings
    prompt = slot.prompt
    try:
        with runtime.guard():
            if prompt is None:
                with timed() as t:
                    prompt = runtime.provider("prompt").make_prompt(
                        PromptRequest(
                            system_prompt=slot.system_prompt,
                            keyword=slot.keyword,
                            variables={k: str(v) for k, v in slot.variables.items()},
                        )
                    )
                repository.update_slot(slot_id, prompt=prompt)
                log_step(
                    f"prompt: {prompt[:160]}", step="prompt", slot=slot.slot, duration_ms=t["ms"]
                )
            repository.update_slot(slot_id, status=SlotStatus.GENERATING, count_attempt=True)
            seed = _seed(settings.job.seed, slot.slot)
            request = GenerationRequest(
                prompt=prompt,
                aspect_ratio=slot.aspect_ratio,
                width=slot.width,
                height=slot.height,
                count=settings.images_per_slot,
                seed=seed,
                negative_prompt=settings.prompts.negative_prompt,
                resume_task_id=slot.provider_task_id,
                source_path=slot.variables.get("source_path"),
                on_task_created=lambda task_id: repository.update_slot(
                    slot_id, provider_task_id=task_id
                ),
            )
            with timed() as t:
                result = runtime.provider("image").generate(request)
            if not result.images:
                raise MalformedResponse(
                    f"{settings.providers.image} returned no image",
                    service=settings.providers.image,
                )
    except Exception as exc:
        repository.update_slot(
            slot_id, status=SlotStatus.FAILED, error=describe_error(exc), error_code=error_code(exc)
        )
        raise

    image_ids = _save_images(
        execution_id,
        slot.slot,
        slot.keyword,
        slot.aspect_ratio,
        seed,
        result.final_prompt or prompt,
        result.images,
        settings,
        slot.variables.get("source_stem"),
    )
    repository.update_slot(
        slot_id, status=SlotStatus.GENERATED, prompt=result.final_prompt or prompt, error=None
    )
    log_step(
        f"{len(image_ids)} images from {settings.providers.image}",
        step="generate",
        slot=slot.slot,
        duration_ms=t["ms"],
    )
    return image_ids


def _seed(base_seed: int | None, slot: int) -> int:
    """Reproducible per slot when the job has a seed, random otherwise."""
    if base_seed is None:
        return random.randrange(2**31)
    # Providers give image i of a slot `seed + i`: slots are spaced wider than any image
    # count (at most 20 per generation) so no two images of a job share a seed.
    return (base_seed * 100_003 + slot * 32) % 2**31


def _save_images(
    execution_id: int,
    slot: int,
    keyword: str,
    aspect_ratio: str,
    seed: int,
    prompt: str,
    images: list[GeneratedImage],
    settings: Settings,
    source_stem: str | None = None,
) -> list[int]:
    """Write every image to temp, then record them all in one transaction: a crash leaves
    either all of a generation's rows or none (and then no file behind)."""
    temp_dir = Path(str(settings.job.temp_dir))
    stem = f"{safe_name(str(settings.job.label))}_{slot}"
    rows: list[dict[str, object]] = []
    try:
        for index, image in enumerate(images):
            media_type = sniff_media_type(image.data) or "application/octet-stream"
            # The execution id keeps temp names apart across jobs that share a label.
            name = f"{stem}_{index}" if source_stem is None else safe_name(source_stem)
            path = write_atomically(
                temp_dir, f"{name}_e{execution_id}", extension_for(media_type), image.data
            )
            rows.append(
                {
                    "image_index": index,
                    "generation_prompt": prompt,
                    "keyword": keyword,
                    "aspect_ratio": aspect_ratio,
                    "seed": image.seed if image.seed is not None else seed,
                    "temp_image_path": str(path),
                    "media_type": media_type,
                }
            )
        return repository.add_images(execution_id, slot, rows)
    except BaseException:
        for row in rows:
            remove_quietly(str(row["temp_image_path"]))
        raise


def stop_reason(execution_id: int) -> str | None:
    """Why the job was stopped (bad key, no credits...), or None while it may go on."""
    return get_runtime(execution_id).stop_reason


def skip_stopped_slot(execution_id: int, slot_id: int, reason: str) -> None:
    """A slot never started because the job stopped: failed, with the reason."""
    repository.update_slot(
        slot_id,
        status=SlotStatus.FAILED,
        error=f"not started: job stopped ({reason})",
        error_code=JobStopped.code,
    )


def record_slot_failure(execution_id: int, slot_id: int, exc: BaseException) -> None:
    """After the last retry: the slot is failed, with the reason; the job goes on."""
    slot = repository.get_slot(slot_id)
    repository.update_slot(
        slot_id, status=SlotStatus.FAILED, error=describe_error(exc), error_code=error_code(exc)
    )
    log_step(
        f"generation failed for good: {describe_error(exc)}",
        step="generate",
        slot=slot.slot,
        error_code=error_code(exc),
        level=40,
    )
