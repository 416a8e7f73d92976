"""`rerun_jobs`: rerun one or more jobs, one after another, never overlapping (SPEC §6). The
bulk is queued in the store first, so a crash mid-bulk continues, on the next run, with the
job it was running and then the remaining ones."""

from __future__ import annotations

from typing import Any

from prefect import flow, task

from genfactory.engine.queue import claim_batch
from genfactory.engine.steps import TASK_OPTIONS, describe_error, scrub_errors
from genfactory.flows.generate_job import _run as run_plan
from genfactory.tasks.initialize import JobPlan
from genfactory.tasks.rerun import end_rerun, queue_reruns, start_rerun


@task(name="queue-reruns", **TASK_OPTIONS)
@scrub_errors
def queue_task(job_ids: list[int], overrides: dict[str, Any]) -> str:
    return queue_reruns(job_ids, overrides)


@task(name="claim-rerun-batch", **TASK_OPTIONS)
def claim_task() -> list[tuple[int, int, int | None, dict[str, Any]]]:
    return [(i.id, i.target_id, i.result_id, i.overrides) for i in claim_batch("rerun")]


@task(name="start-rerun", task_run_name="rerun/{source_id}", **TASK_OPTIONS)
@scrub_errors
def start_task(
    item_id: int, source_id: int, result_id: int | None, overrides: dict[str, Any]
) -> JobPlan | None:
    return start_rerun(item_id, source_id, result_id, overrides)


@task(name="end-rerun", **TASK_OPTIONS)
def end_task(item_id: int, error: str | None) -> None:
    end_rerun(item_id, error)


@flow(name="rerun-jobs", persist_result=False)
def rerun_jobs(
    job_ids: list[int] | None = None,
    overrides: dict[str, str | int | float | bool] | None = None,
) -> list[dict[str, Any]]:
    """Queue a rerun of each of `job_ids` (with `overrides`, dotted setting names), then run
    every queued rerun one after another, each a new job linked to its source. With no job
    ids, only continues what is queued. Returns the summaries of the jobs run."""
    if job_ids:
        queue_task(list(job_ids), dict(overrides or {}))
    summaries: list[dict[str, Any]] = []
    while batch := claim_task():
        for item_id, source_id, result_id, item_overrides in batch:
            try:
                plan = start_task(item_id, source_id, result_id, item_overrides)
                summary = None if plan is None else run_plan(plan)
            except Exception as exc:  # one job's failure must not hold up the others
                end_task(item_id, describe_error(exc))
                continue
            if summary is not None:
                summaries.append({**summary, "rerun_of_id": source_id})
                if summary["status"] == "cancelled":
                    # Stopped by the user: the bulk stops too; the next `genfactory rerun`
                    # resumes this job, then runs the rest.
                    return summaries
            end_task(item_id, None)
    return summaries
