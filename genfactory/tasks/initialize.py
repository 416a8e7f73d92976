"""Job initialisation (docs/SPEC.md §1.1): validate, resolve files, create the execution and its
slots."""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import task
from prefect.runtime import flow_run
from pydantic import BaseModel

from genfactory import image_folder, prompting
from genfactory.config import Credentials, Settings, parse_image_size, validate_settings
from genfactory.engine.recovery import recover_stale_executions, this_worker
from genfactory.engine.runtime import start_runtime
from genfactory.engine.secrets import load_credentials
from genfactory.engine.steps import TASK_OPTIONS, log_step, scrub_errors
from genfactory.errors import UserError
from genfactory.files import safe_name
from genfactory.logs import open_job_log, register_secrets
from genfactory.providers.local_qc import start_warnings
from genfactory.providers.registry import (
    check_credentials,
    check_prompt_template,
    fixed_long_side,
    images_per_slot,
)
from genfactory.statuses import FINAL_SLOT_STATUSES, JobStatus
from genfactory.storage import repository
from genfactory.storage.db import data_dir


class JobPlan(BaseModel):
    """What the flow needs to fan out: ids, no pixels."""

    execution_id: int
    label: str
    #: (slot row id, slot number) of every slot with work left, in slot order.
    slots: list[tuple[int, int]]
    total_slots: int
    max_concurrency: int


def default_label(now: datetime | None = None) -> str:
    """`job_YYYYMMDD_HHMMSS_xxxx`: the random tail keeps jobs started in one second apart."""
    return (now or datetime.now()).strftime("job_%Y%m%d_%H%M%S_") + secrets.token_hex(2)


def ensure_writable_dir(path: Path, what: str, option: str) -> Path:
    """Create `path` if needed and prove it can be written; a clear UserError otherwise."""
    path = path.expanduser().resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise UserError(
            f"the {what} {path} cannot be written ({reason}); choose another with {option}"
        ) from None
    return path


def slot_size(settings: Settings, slot: int, aspect_ratio: str) -> tuple[int, int]:
    """Pixel size of a slot: from its aspect ratio, or the cycled image size as given."""
    sizes = settings.generation.image_sizes
    width, height = parse_image_size(sizes[slot % len(sizes)])
    long_side = fixed_long_side(settings)
    if long_side is not None:
        return prompting.size_for(aspect_ratio, long_side)
    if settings.generation.size_from_aspect_ratio:
        return prompting.size_for(aspect_ratio, max(width, height))
    return width, height


def prepare(
    settings: Settings, credentials: Credentials | None = None
) -> tuple[Settings, list[dict[str, object]]]:
    """Every check that can fail on user input, before anything is created. Returns the
    settings as they will run (label, directories resolved) and the planned slots."""
    files = None
    if settings.job.images_dir is not None:
        files, skipped = image_folder.plan_folder(Path(settings.job.images_dir))
        image_folder.warn_once(skipped)
        settings = image_folder.settings_for_files(settings, len(files))
    image_folder.warn_once(start_warnings(settings))
    credentials = credentials or load_credentials(settings)
    register_secrets(credentials.secret_values())
    check_credentials(settings, credentials)
    if files is None:
        plans = _keyword_plans(settings)
    resolved = resolve_places(settings)
    if files is not None:
        return resolved, [plan.as_slot() for plan in files]
    slots = []
    for plan in plans:
        width, height = slot_size(resolved, plan.slot, plan.aspect_ratio)
        slots.append(
            {
                "slot": plan.slot,
                "keyword": plan.keyword,
                "variables": dict(plan.variables),
                "aspect_ratio": plan.aspect_ratio,
                "width": width,
                "height": height,
                "system_prompt": plan.system_prompt,
            }
        )
    return resolved, slots


def _keyword_plans(settings: Settings) -> list[prompting.SlotPlan]:
    """The slots of a generation job: keywords file and template."""
    return prompting.plan_job_slots(
        settings, lambda template: check_prompt_template(settings, template)
    )


def default_output_dir(settings: Settings, label: str) -> Path:
    """`<data dir>/output/<label>/` (job.output_layout per_job, so jobs never mix) or
    `<data dir>/output/` (flat). An output dir given explicitly is used as given."""
    base = data_dir() / "output"
    return base / safe_name(label) if settings.job.output_layout == "per_job" else base


def resolve_places(settings: Settings) -> Settings:
    """The settings with the label and the output and temp directories resolved (created and
    proven writable)."""
    label = settings.job.label or default_label()
    output_dir = ensure_writable_dir(
        Path(settings.job.output_dir or default_output_dir(settings, label)),
        "output directory",
        "--output-dir",
    )
    temp_dir = ensure_writable_dir(
        Path(settings.job.temp_dir or data_dir() / "temp"),
        "temp directory",
        "--set job.temp_dir=DIR",
    )
    return settings.model_copy(
        update={
            "job": settings.job.model_copy(
                update={"label": label, "output_dir": output_dir, "temp_dir": temp_dir}
            )
        }
    )


@task(name="initialize-job", **TASK_OPTIONS)
@scrub_errors
def initialize_job(
    settings: Settings,
    rerun_of_id: int | None = None,
    planned_slots: list[dict[str, Any]] | None = None,
) -> JobPlan:
    """Validate settings and inputs, create the `running` execution and its generation slots.
    With `planned_slots` (a rerun: the slots of the job it reruns), no keywords are read."""
    credentials = load_credentials(settings)
    if planned_slots is None:
        resolved, slots = prepare(settings, credentials)
    else:
        register_secrets(credentials.secret_values())
        check_credentials(settings, credentials)
        resolved, slots = resolve_places(settings), [dict(slot) for slot in planned_slots]
    for stale in recover_stale_executions():
        log_step(
            f"job {stale} was left running by a worker that ended: marked interrupted "
            f"(continue it with `genfactory resume {stale}`)",
            step="initialize",
            execution_id=stale,
            level=logging.WARNING,
        )
    host, pid = this_worker()
    label = str(resolved.job.label)
    log_dir = data_dir() / "logs"
    execution = repository.create_execution(
        label=label,
        settings_snapshot=resolved.model_dump(mode="json"),
        output_dir=str(resolved.job.output_dir),
        temp_dir=str(resolved.job.temp_dir),
        flow_run_id=_flow_run_id(),
        rerun_of_id=rerun_of_id,
        worker_host=host,
        worker_pid=pid,
    )
    repository.claim_execution(
        execution.id, flow_run_id=_flow_run_id(), worker_host=host, worker_pid=pid, resume=False
    )
    log_path = log_dir / f"{safe_name(label)}_{execution.id}.log"
    repository.set_execution_log_path(execution.id, str(log_path))
    slot_ids = repository.add_slots(execution.id, slots)
    runtime = start_runtime(execution.id, resolved, credentials)
    runtime.log_handler = open_job_log(log_path, debug=resolved.job.debug)
    log_step(
        f"job {execution.id} '{label}': {len(slot_ids)} slots x {images_per_slot(resolved)} "
        f"images, providers {resolved.providers.model_dump()}, pid {os.getpid()}",
        step="initialize",
        execution_id=execution.id,
    )
    return JobPlan(
        execution_id=execution.id,
        label=label,
        slots=[
            (slot_id, int(str(plan["slot"]))) for slot_id, plan in zip(slot_ids, slots, strict=True)
        ],
        total_slots=len(slot_ids),
        max_concurrency=resolved.job.max_concurrency,
    )


def _flow_run_id() -> str | None:
    return str(flow_run.id) if flow_run.id else None


@task(name="resume-job", **TASK_OPTIONS)
@scrub_errors
def resume_execution(execution_id: int) -> JobPlan:
    """Take up an `interrupted` or `cancelled` execution again in this process: the same
    execution, its stored settings snapshot, keys from the current environment; only the slots
    and images with work left are planned."""
    recover_stale_executions()
    execution = repository.get_execution(execution_id)
    if not JobStatus(execution.status).is_resumable:
        hint = (
            "it is still running; stop it first with `genfactory jobs stop "
            f"{execution_id}`, or wait"
            if execution.status == JobStatus.RUNNING
            else "only interrupted or cancelled jobs continue; start a new job instead"
        )
        raise UserError(f"job {execution_id} is {execution.status}: {hint}")
    settings = validate_settings(execution.settings_snapshot)
    credentials = load_credentials(settings)
    register_secrets(credentials.secret_values())
    check_credentials(settings, credentials)
    host, pid = this_worker()
    repository.claim_execution(
        execution_id, flow_run_id=_flow_run_id(), worker_host=host, worker_pid=pid, resume=True
    )
    runtime = start_runtime(execution_id, settings, credentials)
    if execution.log_path:
        runtime.log_handler = open_job_log(Path(execution.log_path), debug=settings.job.debug)
    slots = repository.list_slots(execution_id)
    open_image_slots = {image.slot for image in repository.open_images(execution_id)}
    todo = [
        (slot.id, slot.slot)
        for slot in slots
        if slot.status not in FINAL_SLOT_STATUSES or slot.slot in open_image_slots
    ]
    log_step(
        f"job {execution_id} '{execution.label}' resumed ({execution.status} before): "
        f"{len(todo)} of {len(slots)} slots have work left, pid {os.getpid()}",
        step="resume",
        execution_id=execution_id,
    )
    return JobPlan(
        execution_id=execution_id,
        label=execution.label,
        slots=todo,
        total_slots=len(slots),
        max_concurrency=settings.job.max_concurrency,
    )
