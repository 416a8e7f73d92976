"""`rerun_jobs`: rerun one or more jobs, one after another, never overlapping (docs/SPEC.md §6). The
bulk is queued in the store first, so a crash mid-bulk continues, on the next run, with the
job it was running and then the remaining ones."""

from __future__ import annotations

from typing import Any

from prefect import flow

from genfactory.engine.steps import describe_error
from genfactory.flows.generate_job import run_plan
from genfactory.statuses import JobStatus
from genfactory.tasks.rerun import (
    claim_rerun_batch,
    end_rerun_item,
    queue_rerun_request,
    start_rerun_job,
)


@flow(name="rerun-jobs", persist_result=False)
def rerun_jobs(
    job_ids: list[int] | None = None,
    overrides: dict[str, str | int | float | bool] | None = None,
) -> list[dict[str, Any]]:
    """Queue a rerun of each of `job_ids` (with `overrides`, dotted setting names), then run
    every queued rerun one after another, each a new job linked to its source. With no job
    ids, only continues what is queued. Returns the summaries of the jobs run."""
    if job_ids:
        queue_rerun_request(list(job_ids), dict(overrides or {}))
    summaries: list[dict[str, Any]] = []
    while batch := claim_rerun_batch():
        for item_id, source_id, result_id, item_overrides in batch:
            try:
                plan = start_rerun_job(item_id, source_id, result_id, item_overrides)
                summary = None if plan is None else run_plan(plan)
            except Exception as exc:  # one job's failure must not hold up the others
                end_rerun_item(item_id, describe_error(exc))
                continue
            if summary is not None:
                summaries.append({**summary, "rerun_of_id": source_id})
                if summary["status"] == JobStatus.CANCELLED:
                    # Stopped by the user: the bulk stops too; the next `genfactory rerun`
                    # resumes this job, then runs the rest.
                    return summaries
            end_rerun_item(item_id, None)
    return summaries
