"""`generate_job` and `resume_job`: one flow run per job (or resume), the slots mapped as one
`generate/<n>` task each on a thread pool capped at `job.max_concurrency`, then `reconcile` and the
summary (docs/SPEC.md §1). Why a task per slot and not a subflow: benchmarks/README.md."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.client.schemas.objects import StateType
from prefect.futures import PrefectFuture, as_completed
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from genfactory.config import Settings, load_settings
from genfactory.engine.artifacts import advance, start_progress
from genfactory.engine.control import JobControl
from genfactory.engine.lifecycle import execution_of_flow_run, frozen_heap, mark_stopped
from genfactory.engine.runtime import get_runtime
from genfactory.errors import ConfigError
from genfactory.statuses import JobStatus
from genfactory.tasks.finish import finish_job
from genfactory.tasks.initialize import JobPlan, default_label, initialize_job, resume_execution
from genfactory.tasks.pipeline import reconcile, run_slot

RUN_PREFIX = "generate-job/"


def _job_run_name() -> str:
    """`generate-job/<label>`; a job without a label gets its default label here, and the flow
    reads it back from the run name, so the run and the job carry the same name."""
    parameters = flow_run.parameters
    settings = parameters.get("settings")
    label = parameters.get("label") or (parameters.get("overrides") or {}).get("job.label")
    if isinstance(settings, Settings):
        label = settings.job.label
    elif isinstance(settings, dict):
        label = (settings.get("job") or {}).get("label")
    return f"{RUN_PREFIX}{label or default_label()}"


def _deployment_settings(
    keywords_file: str | None,
    count: int | None,
    label: str | None,
    config_file: str | None,
    overrides: dict[str, Any] | None,
) -> Settings:
    """Settings for a run started with small parameters (the UI, `prefect deployment run`, a
    schedule): the optional TOML file, then the worker's GENFACTORY_* environment, then the
    overrides, then the named parameters; secrets stay in the worker's environment."""
    dotted: dict[str, Any] = dict(overrides or {})
    for key, value in (
        ("job.keywords_file", keywords_file),
        ("job.count", count),
        ("job.label", label),
    ):
        if value is not None:
            dotted[key] = value
    settings = load_settings(Path(config_file) if config_file else None, overrides=dotted)
    if settings.job.label is not None:
        return settings
    # No label from the file, the environment or the parameters: the run's own name.
    name = flow_run.name or ""
    label = name.removeprefix(RUN_PREFIX) if name else default_label()
    return settings.model_copy(update={"job": settings.job.model_copy(update={"label": label})})


def _ui_cancel_requested() -> str | None:
    """'cancelled in the Prefect UI' once this flow run is being cancelled there."""
    run_id = flow_run.id
    if not run_id:
        return None
    try:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            state = client.read_flow_run(run_id).state
    except Exception:
        return None
    if state is not None and state.type in (StateType.CANCELLING, StateType.CANCELLED):
        return "cancelled in the Prefect UI"
    return None


def _slot_state(future: PrefectFuture[Any]) -> Any:
    """A finished slot's state, from its thread when it has one: `future.state` alone reads the
    task run back from the Prefect API, one request per slot."""
    with contextlib.suppress(Exception):
        # Raises when the task run could not even be created; `state` then asks the API (the
        # slot is left for `reconcile`).
        future.wait()
    return future.state


def run_plan(plan: JobPlan) -> dict[str, Any]:
    """Map the plan's slots, carry on whatever the orchestration lost, finish.

    `reconcile` is deliberately not a task: it runs what the orchestration lost (a task that
    could not start or report, e.g. the Prefect API failing), so it must not need Prefect."""
    runtime = get_runtime(plan.execution_id)
    done_before = plan.total_slots - len(plan.slots)
    with JobControl(runtime, external_stop=_ui_cancel_requested), frozen_heap():
        runner: ThreadPoolTaskRunner[Any]
        with ThreadPoolTaskRunner(max_workers=plan.max_concurrency) as runner:
            futures: list[PrefectFuture[Any]] = [
                runner.submit(
                    run_slot,  # type: ignore[arg-type]
                    {"execution_id": plan.execution_id, "slot_id": slot_id, "slot": slot},
                )
                for slot_id, slot in plan.slots
            ]
            # The progress artifact is an API round trip: the first slots are running by now.
            progress = start_progress(plan.execution_id, plan.label, plan.total_slots, done_before)
            for future in as_completed(futures):
                state = _slot_state(future)
                advance(progress, "" if state.is_completed() else f"slot: {state.message}")
        reconcile(plan.execution_id)
    return finish_job(plan.execution_id)


def _on_cancelled(flow: Any, flow_run: Any, state: Any) -> None:
    mark_stopped(execution_of_flow_run(flow_run), JobStatus.CANCELLED, "cancelled")


def _on_crashed(flow: Any, flow_run: Any, state: Any) -> None:
    mark_stopped(
        execution_of_flow_run(flow_run),
        JobStatus.INTERRUPTED,
        f"interrupted: {state.message or 'the process ended'}",
    )


def _on_failed(flow: Any, flow_run: Any, state: Any) -> None:
    mark_stopped(
        execution_of_flow_run(flow_run),
        JobStatus.INTERRUPTED,
        f"interrupted: {state.message or 'unknown error'}",
    )


_HOOKS: dict[str, Any] = {
    "persist_result": False,
    "on_cancellation": [_on_cancelled],
    "on_crashed": [_on_crashed],
    "on_failure": [_on_failed],
}


@flow(name="generate-job", flow_run_name=_job_run_name, **_HOOKS)
def generate_job(
    settings: Settings | None = None,
    keywords_file: str | None = None,
    count: int | None = None,
    label: str | None = None,
    config_file: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Turn keywords into finished images (docs/SPEC.md §1). Returns the job summary.

    Args:
        settings: The complete settings (the CLI passes them); leave empty to build them from
            the fields below and the settings model's defaults.
        keywords_file: Keywords .txt (one per line) or .csv, on the worker; relative paths
            are relative to the worker's project directory.
        count: Generation slots (each makes generation.variations images).
        label: Job label; default job_YYYYMMDD_HHMMSS.
        config_file: A TOML settings file on the worker, read before the fields above.
        overrides: Any setting by dotted name, e.g. {"processing.convert_format": "jpg"}.
    """
    small = (keywords_file, count, label, config_file, overrides)
    if settings is None:
        settings = _deployment_settings(keywords_file, count, label, config_file, overrides)
    elif any(value is not None for value in small):
        raise ConfigError(
            "pass either settings or keywords_file/count/label/config_file/overrides, not both; "
            "put the changes into settings or leave settings empty"
        )
    return run_plan(initialize_job(settings))


@flow(name="resume-job", flow_run_name="resume-job/{execution_id}", **_HOOKS)
def resume_job(execution_id: int) -> dict[str, Any]:
    """Continue an `interrupted` or `cancelled` job: finished images untouched, images past QC
    not checked again, slots with a provider task id polled, slots never started run now."""
    return run_plan(resume_execution(execution_id))
