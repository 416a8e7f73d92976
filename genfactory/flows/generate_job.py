"""`generate_job`: initialisation, then one `image` subflow per generation slot, capped at
`job.max_concurrency` in flight, then the summary (SPEC §1)."""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.futures import PrefectFuture, as_completed
from prefect.runtime import flow_run
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect.task_runners import ThreadPoolTaskRunner

from genfactory.config import Settings
from genfactory.errors import JobFatalError, JobStopped
from genfactory.statuses import JobStatus
from genfactory.tasks.common import TASK_OPTIONS, abandon_image, describe_error, retry_options
from genfactory.tasks.finish import finish_job
from genfactory.tasks.generate import (
    generate_slot,
    record_slot_failure,
    skip_stopped_slot,
    stop_reason,
)
from genfactory.tasks.initialize import initialize_job
from genfactory.tasks.lifecycle import mark_stopped
from genfactory.tasks.metadata import describe_image, record_image_failure
from genfactory.tasks.process import process_image
from genfactory.tasks.progress import advance, start_progress
from genfactory.tasks.quality import quality_check

#: Provider errors worth a retry are retried this often in QC/process/metadata steps.
STEP_RETRIES = 2


def _job_run_name() -> str:
    settings = flow_run.parameters.get("settings")
    label = None
    if isinstance(settings, Settings):
        label = settings.job.label
    elif isinstance(settings, dict):
        label = (settings.get("job") or {}).get("label")
    return f"generate-job/{label or 'job'}"


@flow(name="image", flow_run_name="image/{slot}", persist_result=False, validate_parameters=False)
def process_slot(
    execution_id: int, slot_id: int, slot: int, retries: int = 1, backoff_seconds: float = 5.0
) -> str:
    """One generation slot: generate → per image QC → process → metadata. Never raises for
    one image's failure; returns how the slot ended."""
    generate = generate_slot.with_options(**retry_options(retries, backoff_seconds))
    try:
        image_ids = generate(execution_id, slot_id)
    except Exception as exc:
        record_slot_failure(execution_id, slot_id, exc)
        return "failed"
    step_options = retry_options(STEP_RETRIES, backoff_seconds)
    for image_id in image_ids:
        step = "qc"
        try:
            if not quality_check.with_options(**step_options)(execution_id, image_id):
                continue
            step = "process"
            if not process_image.with_options(**step_options)(execution_id, image_id):
                continue
            step = "metadata"
            describe_image.with_options(**step_options)(execution_id, image_id)
        except (JobStopped, JobFatalError):
            # The job is stopping: this and the slot's remaining images stay resumable.
            abandon_image(image_id)
            return "stopped"
        except Exception as exc:
            record_image_failure(image_id, step, exc)
    return "done"


@task(name="slot", **TASK_OPTIONS)
def run_slot(execution_id: int, slot_id: int, slot: int, retries: int, backoff: float) -> str:
    """Runs one slot's subflow; a task so slots can fan out on the capped thread pool."""
    reason = stop_reason(execution_id)
    if reason:
        # The job must stop before spending more: queued slots do not even start a subflow.
        skip_stopped_slot(execution_id, slot_id, reason)
        return "skipped"
    # Subflows need no heartbeat of their own (the parent's covers them); without this each
    # subflow waits up to a second at exit for its heartbeat thread.
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        return process_slot(execution_id, slot_id, slot, retries, backoff)


def _on_cancelled(flow: Any, flow_run: Any, state: Any) -> None:
    mark_stopped(flow_run, JobStatus.CANCELLED, "cancelled")


def _on_crashed(flow: Any, flow_run: Any, state: Any) -> None:
    mark_stopped(flow_run, JobStatus.FAILED, f"crashed: {state.message or 'process ended'}")


def _on_failed(flow: Any, flow_run: Any, state: Any) -> None:
    mark_stopped(flow_run, JobStatus.FAILED, f"failed: {state.message or 'unknown error'}")


@flow(
    name="generate-job",
    flow_run_name=_job_run_name,
    persist_result=False,
    on_cancellation=[_on_cancelled],
    on_crashed=[_on_crashed],
    on_failure=[_on_failed],
)
def generate_job(settings: Settings) -> dict[str, Any]:
    """Turn keywords into finished images: see SPEC §1. Returns the job summary."""
    plan = initialize_job(settings)
    progress = start_progress(plan.execution_id, plan.label, len(plan.slot_ids))
    generation = settings.generation
    slots = [
        {
            "execution_id": plan.execution_id,
            "slot_id": slot_id,
            "slot": index,
            "retries": generation.retries,
            "backoff": generation.retry_backoff_seconds,
        }
        for index, slot_id in enumerate(plan.slot_ids)
    ]
    try:
        runner: ThreadPoolTaskRunner[Any]
        with ThreadPoolTaskRunner(max_workers=settings.job.max_concurrency) as runner:
            futures: list[PrefectFuture[Any]] = [
                runner.submit(run_slot, parameters)  # type: ignore[arg-type]
                for parameters in slots
            ]
            for future in as_completed(futures):
                state = future.state
                advance(progress, "" if state.is_completed() else f"slot error: {state.message}")
    except BaseException as exc:
        mark_stopped(
            flow_run,
            JobStatus.CANCELLED if isinstance(exc, KeyboardInterrupt) else JobStatus.FAILED,
            describe_error(exc),
        )
        raise
    return finish_job(plan.execution_id)
