"""The generate step: prompt, image provider, each image saved to temp and recorded at once."""

from __future__ import annotations

import random
from pathlib import Path

from prefect import task

from genfactory.errors import GenfactoryError, JobFatalError, MalformedResponse
from genfactory.media import extension_for, sniff_media_type
from genfactory.providers.base import GenerationRequest, PromptRequest
from genfactory.statuses import SlotStatus
from genfactory.storage import repository
from genfactory.tasks.common import (
    TASK_OPTIONS,
    describe_error,
    error_code,
    log_step,
    scrub_errors,
    timed,
)
from genfactory.tasks.files import safe_name, write_atomically
from genfactory.tasks.runtime import get_runtime


class JobStopped(GenfactoryError):
    """The job was stopped (bad key, no credits, user stop): no new work starts."""

    code = "job_stopped"


@task(name="generate", **TASK_OPTIONS)
@scrub_errors
def generate_slot(execution_id: int, slot_id: int) -> list[int]:
    """Generate the slot's images into the temp directory; returns their image ids.

    Idempotent: a slot whose images are already recorded (a retry, a resume) is not generated
    again, and a provider task recorded by an interrupted attempt is polled, not re-created.
    """
    runtime = get_runtime(execution_id)
    if runtime.stop_reason:
        raise JobStopped(f"job stopped before this slot started: {runtime.stop_reason}")
    slot = repository.get_slot(slot_id)
    existing = repository.list_images(execution_id=execution_id, slot=slot.slot)
    if existing:
        return [image.id for image in existing]

    settings = runtime.settings
    prompt = slot.prompt
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
        log_step(f"prompt: {prompt[:160]}", step="prompt", slot=slot.slot, duration_ms=t["ms"])

    repository.update_slot(slot_id, status=SlotStatus.GENERATING, count_attempt=True)
    base_seed = settings.job.seed
    seed = (base_seed * 100_003 + slot.slot) if base_seed is not None else random.randrange(2**31)
    request = GenerationRequest(
        prompt=prompt,
        aspect_ratio=slot.aspect_ratio,
        width=slot.width,
        height=slot.height,
        count=settings.images_per_slot,
        seed=seed,
        negative_prompt=settings.prompts.negative_prompt,
        resume_task_id=slot.provider_task_id,
        on_task_created=lambda task_id: repository.update_slot(slot_id, provider_task_id=task_id),
    )
    try:
        with timed() as t:
            result = runtime.provider("image").generate(request)
        if not result.images:
            raise MalformedResponse(
                f"{settings.providers.image} returned no image", service=settings.providers.image
            )
    except JobFatalError as exc:
        runtime.stop(describe_error(exc))
        raise
    except Exception as exc:
        repository.update_slot(
            slot_id, status=SlotStatus.FAILED, error=describe_error(exc), error_code=error_code(exc)
        )
        raise

    temp_dir = Path(str(settings.job.temp_dir))
    stem = f"{safe_name(str(settings.job.label))}_{slot.slot}"
    image_ids = []
    for index, image in enumerate(result.images):
        media_type = sniff_media_type(image.data) or "application/octet-stream"
        ext = extension_for(media_type)
        # The execution id keeps temp names apart across jobs that share a label.
        path = write_atomically(temp_dir, f"{stem}_{index}_e{execution_id}", ext, image.data)
        record = repository.add_image(
            execution_id=execution_id,
            slot=slot.slot,
            image_index=index,
            generation_prompt=result.final_prompt or prompt,
            keyword=slot.keyword,
            aspect_ratio=slot.aspect_ratio,
            seed=image.seed if image.seed is not None else seed,
            temp_image_path=str(path),
            media_type=media_type,
        )
        image_ids.append(record.id)
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
