"""Finishing a job: final counts and status, usage, the summary artifact, resources released."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_table_artifact

from genfactory.logs import close_job_log, redact_value
from genfactory.statuses import ImageStatus, JobStatus
from genfactory.storage import repository
from genfactory.tasks.common import TASK_OPTIONS, log_step, scrub_errors
from genfactory.tasks.progress import artifact_key
from genfactory.tasks.recovery import close_unfinished_images
from genfactory.tasks.runtime import get_runtime, release_runtime

#: Rows in the summary artifact; the store and `genfactory images list` have them all.
ARTIFACT_ROWS = 500


@task(name="finish-job", **TASK_OPTIONS)
@scrub_errors
def finish_job(execution_id: int, cancelled: bool = False) -> dict[str, Any]:
    """Store counts and the final status; returns the summary the CLI prints."""
    runtime = get_runtime(execution_id)
    status: JobStatus | None = JobStatus.CANCELLED if cancelled else None
    message = None
    if runtime.stop_reason:
        status = JobStatus.CANCELLED if cancelled else JobStatus.FAILED
        message = f"job stopped: {runtime.stop_reason}"
    # Every slot has ended: an image still waiting now was stopped in flight (or dropped by a
    # crash); it fails with the reason and keeps its original in temp for a retry.
    close_unfinished_images(
        execution_id,
        message or "not finished: its slot ended before it was processed",
        "job_stopped" if runtime.stop_reason else "unfinished",
    )
    repository.record_usage(execution_id, runtime.context.usage.snapshot())
    execution = repository.finish_execution(execution_id, status=status, error_message=message)
    summary = summarize(execution_id)
    _summary_artifact(execution_id, summary)
    log_step(
        f"job {execution_id} {execution.status}: {execution.approved_images} approved, "
        f"{execution.qc_failed_images} qc_failed, {execution.failed_images} failed of "
        f"{execution.total_images}"
        + (f" — {execution.error_message}" if execution.error_message else ""),
        step="finish",
        execution_id=execution_id,
    )
    close_runtime(execution_id)
    return summary


def close_runtime(execution_id: int) -> None:
    """Close providers and the job's log file."""
    runtime = release_runtime(execution_id)
    if runtime is not None and runtime.log_handler is not None:
        close_job_log(runtime.log_handler)


def summarize(execution_id: int) -> dict[str, Any]:
    execution = repository.get_execution(execution_id)
    return {
        "execution_id": execution.id,
        "label": execution.label,
        "status": str(execution.status),
        "total": execution.total_images,
        "approved": execution.approved_images,
        "qc_failed": execution.qc_failed_images,
        "failed": execution.failed_images,
        "error_message": execution.error_message,
        "output_dir": execution.output_dir,
        "temp_dir": execution.temp_dir,
        "log_path": execution.log_path,
    }


def _summary_artifact(execution_id: int, summary: dict[str, Any]) -> None:
    rows = []
    for image in repository.list_images(execution_id=execution_id, limit=ARTIFACT_ROWS):
        path = image.final_image_path or image.temp_image_path or ""
        detail = image.qc_reason or image.error or ""
        if image.status == ImageStatus.APPROVED and image.image_metadata:
            detail = str(image.image_metadata.get("title", ""))
        rows.append(
            {
                "slot": image.slot,
                "image": image.image_index,
                "status": str(image.status),
                "file": Path(path).name,
                "detail": detail,
            }
        )
    description = (
        f"Job {summary['execution_id']} '{summary['label']}' {summary['status']}: "
        f"{summary['approved']} approved, {summary['qc_failed']} qc_failed, "
        f"{summary['failed']} failed of {summary['total']}. Output: {summary['output_dir']}"
    )
    # The API may already be shutting down; the store has everything.
    with contextlib.suppress(Exception):
        create_table_artifact(
            table=redact_value(rows),
            key=artifact_key(str(summary["label"]), execution_id, "summary"),
            description=str(redact_value(description)),
        )
