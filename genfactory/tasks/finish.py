"""Finishing a job: what is still open is closed with a reason (or, after a stop by the user,
left to `resume`), the final status, the summary and its artifact, resources released."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_table_artifact

from genfactory.engine.artifacts import artifact_key
from genfactory.engine.lifecycle import close_runtime
from genfactory.engine.runtime import JobRuntime, get_runtime
from genfactory.engine.steps import TASK_OPTIONS, fail_image, log_step, scrub_errors
from genfactory.errors import JobStopped
from genfactory.logs import redact_value
from genfactory.statuses import OPEN_IMAGE_STATUSES, ImageStatus, JobStatus, SlotStatus
from genfactory.storage import repository
from genfactory.tasks.approval import remove_leftovers

#: Rows in the summary artifact; the store and `genfactory images list` have them all.
ARTIFACT_ROWS = 500


@task(name="finish-job", **TASK_OPTIONS)
@scrub_errors
def finish_job(execution_id: int) -> dict[str, Any]:
    """Store counts and the final status; returns the summary the CLI prints.

    - stopped by the user: `cancelled`, open slots and images left as they are (resumable);
    - stopped by a fatal provider error (bad key, no credits): `failed`, what is open closed
      `failed` with the reason (originals kept in temp for a retry);
    - otherwise what is still open could not run even when `reconcile` ran it without Prefect:
      the job is `interrupted` so `genfactory resume` can run it; else `completed` when any image
      was approved, `failed` when none was.
    """
    runtime = get_runtime(execution_id)
    status: JobStatus | None = None
    message = None
    if runtime.stop_reason and runtime.stop_by_user:
        status, message = JobStatus.CANCELLED, f"stopped: {runtime.stop_reason}"
    elif runtime.stop_reason:
        status, message = JobStatus.FAILED, f"job stopped: {runtime.stop_reason}"
        _close_open_work(runtime, message, JobStopped.code)
    else:
        left = len(repository.open_slots(execution_id)) + len(repository.open_images(execution_id))
        if left:
            status = JobStatus.INTERRUPTED
            message = (
                f"{left} slots or images could not run (the orchestration kept failing); "
                f"continue them with `genfactory resume {execution_id}`"
            )
    remove_leftovers(runtime)
    runtime.flush_usage()
    if status == JobStatus.INTERRUPTED:
        execution = repository.transition_execution(
            execution_id, JobStatus.RUNNING, JobStatus.INTERRUPTED, error_message=message
        )
        repository.refresh_totals(execution_id)
    else:
        execution = repository.finish_execution(execution_id, status=status, error_message=message)
    summary = summarize(execution_id)
    summary["report_path"] = _write_report(execution_id, summary)
    _summary_artifact(execution_id, summary)
    log_step(
        f"job {execution_id} {summary['status']}: {summary['approved']} approved, "
        f"{summary['qc_failed']} qc_failed, {summary['failed']} failed of {summary['total']}"
        + (f", {summary['failed_slots']} slots failed" if summary["failed_slots"] else "")
        + (f" — {execution.error_message}" if execution.error_message else ""),
        step="finish",
        execution_id=execution_id,
    )
    close_runtime(execution_id)
    return summary


def _close_open_work(runtime: JobRuntime, message: str, code: str) -> None:
    for slot in repository.open_slots(runtime.execution_id):
        repository.transition_slot(
            slot.id,
            (SlotStatus.PENDING, SlotStatus.GENERATING),
            SlotStatus.FAILED,
            error=f"not run: {message}",
            error_code=code,
        )
    for image in repository.open_images(runtime.execution_id):
        fail_image(image, "finish", message, code, level=logging.INFO)


#: Up to this many images the job's HTML report is written when it finishes (a thumbnail costs
#: about 10 ms); larger jobs get it from `genfactory export J --format html`.
REPORT_AT_FINISH_LIMIT = 1000


def _write_report(execution_id: int, summary: dict[str, Any]) -> str | None:
    """The job's visual report (exports.report) beside its log; None when not written."""
    if summary["total"] > REPORT_AT_FINISH_LIMIT or not summary.get("log_path"):
        return None
    from genfactory.exports.report import write_report

    path = Path(str(summary["log_path"])).with_suffix(".html")
    try:
        return str(write_report(execution_id, path))
    except Exception as exc:  # a report must never fail the job
        log_step(f"report not written: {exc}", step="finish", level=logging.WARNING)
        return None


def summarize(execution_id: int) -> dict[str, Any]:
    """The job as the CLI and the artifact show it, from the store."""
    execution = repository.get_execution(execution_id)
    counts = repository.image_counts(execution_id)
    slots = repository.list_slots(execution_id)
    failed_slots = [s for s in slots if s.status == SlotStatus.FAILED]
    return {
        "execution_id": execution.id,
        "label": execution.label,
        "status": str(execution.status),
        "total": sum(counts.values()),
        "approved": counts.get(ImageStatus.APPROVED, 0),
        "qc_failed": counts.get(ImageStatus.QC_FAILED, 0),
        "failed": counts.get(ImageStatus.FAILED, 0) + counts.get(ImageStatus.RETRY_FAILED, 0),
        "unfinished": sum(counts.get(s, 0) for s in OPEN_IMAGE_STATUSES),
        "slots": len(slots),
        "failed_slots": len(failed_slots),
        "unstarted_slots": sum(
            1 for s in slots if s.status in (SlotStatus.PENDING, SlotStatus.GENERATING)
        ),
        "slot_failures": [
            {"slot": s.slot, "error": s.error or "", "code": s.error_code or ""}
            for s in failed_slots[:20]
        ],
        "error_message": execution.error_message,
        "output_dir": execution.output_dir,
        "temp_dir": execution.temp_dir,
        "log_path": execution.log_path,
        "usage": execution.usage,
    }


def _summary_artifact(execution_id: int, summary: dict[str, Any]) -> None:
    rows = [
        {"slot": f["slot"], "image": "", "status": "slot failed", "file": "", "detail": f["error"]}
        for f in summary["slot_failures"]
    ]
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
        f"{summary['failed']} failed of {summary['total']} images"
        + (
            f"; {summary['failed_slots']} of {summary['slots']} slots failed"
            if summary["failed_slots"]
            else ""
        )
        + f". Output: {summary['output_dir']}. "
        + (
            f"[Visual report]({Path(summary['report_path']).as_uri()})"
            if summary.get("report_path")
            else f"Visual report: `genfactory export {summary['execution_id']} --format html`"
        )
    )
    # The API may be unreachable; the store has everything.
    with contextlib.suppress(Exception):
        create_table_artifact(
            table=redact_value(rows),
            key=artifact_key(str(summary["label"]), execution_id, "summary"),
            description=str(redact_value(description)),
        )
