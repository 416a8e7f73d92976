"""The per-slot unit of a job: generate, then each image through QC → process → metadata →
approval. The flow maps one `generate/<slot>` task over the slots; it generates the slot and
carries each of its images in a nested `image/<slot>-<index>` task (the names the UI shows).
Every task run costs about 15 ms of CPU on the machine, a quarter of it here and the rest in
the Prefect server recording its three state events (benchmarks/README.md), so a slot has one
task run plus one per image when it makes several, and just its `generate/<slot>` task when it
makes one image (`job.variations = 1` with a provider of one image per task): that task's log
then holds the image's steps, and a second task run for the same single image would only double
the orchestration's cost.

Every step reads the row's status first and does only what is left, so any of them can run
again (a Prefect retry, a resume, `reconcile` after an orchestration failure) without a second
provider call or a second file.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from prefect import task

from genfactory.engine.runtime import get_runtime
from genfactory.engine.steps import (
    ENGINE_TASK_OPTIONS,
    TASK_OPTIONS,
    describe_error,
    error_code,
    fail_image,
    log_step,
    scrub_errors,
    worth_retrying,
)
from genfactory.errors import GenfactoryError, JobFatalError, JobStopped
from genfactory.providers.registry import images_per_slot
from genfactory.statuses import FINAL_IMAGE_STATUSES, ImageStatus, SlotStatus
from genfactory.storage import repository
from genfactory.storage.repository import TransitionError
from genfactory.tasks.approval import approve
from genfactory.tasks.generate import generate_slot
from genfactory.tasks.metadata import describe
from genfactory.tasks.process import process
from genfactory.tasks.quality import check_quality

logger = logging.getLogger("genfactory.pipeline")


@task(name="image", task_run_name="image/{slot}-{index}", **ENGINE_TASK_OPTIONS)
@scrub_errors
def run_image(execution_id: int, image_id: int, slot: int, index: int) -> str:
    """Carry one image as far as it goes; returns its status. A step that fails for good
    marks the image `failed` with the reason; the job goes on."""
    runtime = get_runtime(execution_id)
    image = repository.get_image(image_id)
    if image.status in FINAL_IMAGE_STATUSES:
        return str(image.status)
    runtime.check()  # a stopping job starts no new image; one already started finishes
    step = "qc"
    try:
        if image.status == ImageStatus.GENERATED:
            image = check_quality(runtime, image)
        step = "process"
        if image.status == ImageStatus.QC_PASSED:
            image = process(runtime, image)
        step = "metadata"
        if image.status == ImageStatus.PROCESSED:
            image = describe(runtime, image)
            step = "approve"
            image = approve(runtime, image)
    except (JobStopped, JobFatalError, TransitionError, repository.NotFound):
        # NotFound: the row is gone (the job was deleted meanwhile); nothing to mark failed.
        raise
    except GenfactoryError as exc:
        image = fail_image(
            repository.get_image(image_id),
            step,
            f"{step}: {describe_error(exc)}",
            error_code(exc),
            level=logging.ERROR,
        )
    return str(image.status)


def carry_slot(execution_id: int, slot_id: int, slot: int, *, direct: bool = False) -> str:
    """Generate slot `slot` and carry its images; returns how it ended: done, failed (the
    generation failed for good), stopped (the job is stopping) or lost (orchestration kept
    failing; the rows say what is left). The generation is tried again by `_retried` in every
    mode. With `direct` (`reconcile`), the image steps run once each, without Prefect; a job of
    one image per slot runs them in its `generate/<slot>` task, tried again like the image task
    (see the module docstring)."""
    image_task: Any = run_image
    if direct:
        image_task = run_image.fn
    elif images_per_slot(get_runtime(execution_id).settings) == 1:
        image_task = _run_image_inline
    try:
        images = _generate(execution_id, slot_id, slot)
    except JobStopped:
        return "stopped"
    except Exception as exc:
        if repository.get_slot(slot_id).status == SlotStatus.FAILED:
            return "failed"
        logger.warning("slot %s: %s", slot, describe_error(exc))
        return "lost"
    outcome = "done"
    for image_id, index in images:
        try:
            image_task(execution_id, image_id, slot, index)
        except (JobStopped, JobFatalError):
            return "stopped"
        except Exception as exc:
            outcome = _after_image_error(image_id, exc) or outcome
    return outcome


def _generate(execution_id: int, slot_id: int, slot: int) -> list[tuple[int, int]]:
    """`generate_slot`, tried again like the engine's tasks (`_retried`)."""
    result: list[tuple[int, int]] = _retried(generate_slot, execution_id, slot_id, slot)
    return result


def _run_image_inline(execution_id: int, image_id: int, slot: int, index: int) -> str:
    """The image task's body in the slot's own task, tried again like the image task."""
    result: str = _retried(run_image.fn, execution_id, image_id, slot, index)
    return result


def _retried(step: Any, *args: Any) -> Any:
    """Run `step`, tried again as the engine's Prefect tasks are (`ENGINE_TASK_OPTIONS`, by
    `worth_retrying`). Every step is re-entrant, so a try again finishes what the last one
    began."""
    tries = 1 + int(ENGINE_TASK_OPTIONS["retries"])
    for attempt in range(1, tries + 1):
        try:
            return step(*args)
        except Exception as exc:
            if attempt == tries or not worth_retrying(exc):
                raise
            logger.debug("%s: %s; trying again", args, describe_error(exc))
            time.sleep(float(ENGINE_TASK_OPTIONS["retry_delay_seconds"]))
    raise AssertionError("unreachable")


def _after_image_error(image_id: int, exc: BaseException) -> str | None:
    """An image's task failed past its retries: a step error fails the image; an
    orchestration failure leaves it for `reconcile`."""
    image = repository.get_image(image_id)
    if image.status in FINAL_IMAGE_STATUSES:
        return None
    if isinstance(exc, GenfactoryError | OSError | ValueError | TransitionError):
        fail_image(
            image, "image", f"image: {describe_error(exc)}", error_code(exc), level=logging.ERROR
        )
        return None
    logger.warning("image %s: %s", image_id, describe_error(exc))
    return "lost"


@task(name="generate", task_run_name="generate/{slot}", **TASK_OPTIONS)
def run_slot(execution_id: int, slot_id: int, slot: int) -> str:
    """The mapped unit of a job: one slot, generated and its images carried to the end."""
    return carry_slot(execution_id, slot_id, slot)


def reconcile(execution_id: int) -> int:
    """After the fan-out: run again, without Prefect, every slot and image the orchestration
    lost (a task that could not start or report), unless the job is stopping. Returns how many
    slots it carried."""
    runtime = get_runtime(execution_id)
    if runtime.stop_reason:
        return 0
    carried = 0
    for record in repository.open_slots(execution_id):
        carry_slot(execution_id, record.id, record.slot, direct=True)
        carried += 1
    for image in repository.open_images(execution_id):
        if runtime.stop_reason:
            break
        try:
            run_image.fn(execution_id, image.id, image.slot, image.image_index)
        except (JobStopped, JobFatalError):
            break
        except Exception as exc:
            _after_image_error(image.id, exc)
    if carried:
        log_step(
            f"{carried} slots lost by the orchestration were run again",
            step="reconcile",
            level=logging.WARNING,
        )
    return carried
