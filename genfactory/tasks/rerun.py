"""Rerunning jobs (docs/SPEC.md §6): each rerun is a new execution built from the source execution's
settings snapshot and its stored slots (keywords, CSV rows, system prompts as planned — the
keywords file need not exist any more), keys from the current environment, the full pipeline
including QC. The source execution's rows are only read, never written."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prefect import task

from genfactory.config import Settings, apply_overrides, validate_settings
from genfactory.engine.queue import claim_batch
from genfactory.engine.recovery import recover_stale_executions
from genfactory.engine.steps import TASK_OPTIONS, scrub_errors
from genfactory.errors import UserError
from genfactory.files import safe_name
from genfactory.statuses import JobStatus
from genfactory.storage import repository
from genfactory.storage.db import data_dir
from genfactory.tasks.initialize import JobPlan, initialize_job, resume_execution

_SLOT_FIELDS = ("slot", "keyword", "variables", "aspect_ratio", "width", "height", "system_prompt")
_LABEL_MAX = 120


def rerun_label(label: str) -> str:
    """`<label>_rerun_xxxx`: a new label, so the rerun's files never mix with the source's."""
    tail = f"_rerun_{secrets.token_hex(2)}"
    return label[: _LABEL_MAX - len(tail)] + tail


def plan_rerun(source_id: int, overrides: dict[str, Any]) -> tuple[Settings, list[dict[str, Any]]]:
    """The settings (with `overrides`) and the slots a rerun of `source_id` runs with."""
    source = repository.get_execution(source_id)
    slots = [
        {name: getattr(slot, name) for name in _SLOT_FIELDS}
        for slot in repository.list_slots(source_id)
    ]
    if not slots:
        raise UserError(f"job {source_id} has no stored slots: there is nothing to rerun")
    settings = validate_settings(source.settings_snapshot)
    job = settings.job
    updates: dict[str, Any] = {"label": rerun_label(source.label)}
    # A per-job output directory the source got by default is the source's own: the rerun
    # gets its own (an output directory given explicitly is kept).
    if job.output_dir is not None and settings.job.output_layout == "per_job":
        derived = data_dir() / "output" / safe_name(source.label)
        if Path(job.output_dir).resolve() == derived.resolve():
            updates["output_dir"] = None
    settings = settings.model_copy(update={"job": job.model_copy(update=updates)})
    if overrides:
        settings = apply_overrides(settings, overrides)
    return settings, slots


def queue_reruns(job_ids: Sequence[int], overrides: dict[str, Any] | None = None) -> str:
    """Check every job can be rerun (settings included), then queue them as one batch."""
    if not job_ids:
        raise UserError("say which jobs to rerun: genfactory rerun JOB_ID [JOB_ID...]")
    overrides = dict(overrides or {})
    for key in overrides:
        if key in ("job.label", "job.keywords_file"):
            raise UserError(
                f"--set {key}: a rerun keeps the source job's slots and gets its own label"
            )
    for job_id in dict.fromkeys(job_ids):
        plan_rerun(job_id, overrides)
    return repository.enqueue_reruns(list(dict.fromkeys(job_ids)), overrides=overrides)


def start_rerun(
    item_id: int, source_id: int, result_id: int | None, overrides: dict[str, Any]
) -> JobPlan | None:
    """The plan of a queued rerun: a new execution, or — when a killed worker had already
    created it — that execution resumed. None when it has finished already."""
    if result_id is None:
        result_id = _created_before_a_kill(item_id, source_id)
    if result_id is not None:
        recover_stale_executions()
        execution = repository.get_execution(result_id)
        if JobStatus(execution.status).is_resumable:
            return resume_execution.fn(result_id)
        if execution.status != JobStatus.RUNNING:
            return None
        raise UserError(f"rerun {result_id} of job {source_id} is still running elsewhere")
    settings, slots = plan_rerun(source_id, overrides)
    plan = initialize_job.fn(settings, rerun_of_id=source_id, planned_slots=slots)
    repository.finish_work(item_id, repository.WORK_RUNNING, result_id=plan.execution_id)
    return plan


def _created_before_a_kill(item_id: int, source_id: int) -> int | None:
    """The rerun execution a killed worker created for this queue item but had not recorded
    yet (it has its slots): taken up, so a kill never makes two reruns of one job."""
    execution = repository.unrecorded_rerun(item_id, source_id)
    if execution is None:
        return None
    repository.finish_work(item_id, repository.WORK_RUNNING, result_id=execution.id)
    return execution.id


def end_rerun(item_id: int, error: str | None = None) -> None:
    status = repository.WORK_FAILED if error else repository.WORK_DONE
    repository.finish_work(item_id, status, error=error)


# ---------------------------------------------------------------------------------------------
# The tasks of the `rerun-jobs` flow


@task(name="queue-reruns", **TASK_OPTIONS)
@scrub_errors
def queue_rerun_request(job_ids: list[int], overrides: dict[str, Any]) -> str:
    """Queue a rerun of each job in the store; returns the batch id."""
    return queue_reruns(job_ids, overrides)


@task(name="claim-rerun-batch", **TASK_OPTIONS)
def claim_rerun_batch() -> list[tuple[int, int, int | None, dict[str, Any]]]:
    """The next queued batch: (item id, source id, result id, overrides) each; empty when done."""
    return [(i.id, i.target_id, i.result_id, i.overrides) for i in claim_batch("rerun")]


@task(name="start-rerun", task_run_name="rerun/{source_id}", **TASK_OPTIONS)
@scrub_errors
def start_rerun_job(
    item_id: int, source_id: int, result_id: int | None, overrides: dict[str, Any]
) -> JobPlan | None:
    """The plan of the rerun's job (created, or the one a crash left), or None when done."""
    return start_rerun(item_id, source_id, result_id, overrides)


@task(name="end-rerun", **TASK_OPTIONS)
def end_rerun_item(item_id: int, error: str | None) -> None:
    """Mark a queued rerun done (or failed with `error`)."""
    end_rerun(item_id, error)
