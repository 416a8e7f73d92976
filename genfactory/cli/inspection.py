"""Looking at the store: `jobs list`, `jobs show`, `images list`, `stats`, and `jobs stop`."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from genfactory.cli.app import app, console, fail, guarded, images_app, jobs_app
from genfactory.cli.output import cost_rows, plain, print_json
from genfactory.errors import UserError
from genfactory.statuses import ImageStatus


@jobs_app.command("list")
def jobs_list(
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
    status: Annotated[str | None, typer.Option(help="Only jobs with this status.")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List jobs with their counts."""
    from genfactory.statuses import JobStatus
    from genfactory.storage import repository
    from genfactory.storage.db import store_exists

    if status is not None and status not in {s.value for s in JobStatus}:
        raise fail(
            f"unknown status {status!r}; choose one of {', '.join(s.value for s in JobStatus)}"
        )

    def _list() -> list[repository.ExecutionRecord]:
        from genfactory.engine.recovery import recover_stale_executions

        if not store_exists():  # a read-only command creates nothing
            return []
        recover_stale_executions()
        return repository.list_executions(limit=limit, status=status)

    executions = guarded(_list)
    if json_:
        print_json(executions)
        return
    table = Table(title="Jobs")
    table.add_column("id", justify="right", no_wrap=True)
    table.add_column("label", overflow="fold", min_width=10)
    table.add_column("status", no_wrap=True)
    # Short headers and no minimum widths: all eight columns fit 80 columns.
    for column in ("total", "ok", "qc_fail", "failed"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("started", no_wrap=True)
    for e in executions:
        table.add_row(
            str(e.id),
            e.label,
            str(e.status),
            str(e.total_images),
            str(e.approved_images),
            str(e.qc_failed_images),
            str(e.failed_images),
            e.started_at.astimezone().strftime("%m-%d %H:%M") if e.started_at else "",
        )
    console.print(table)


@jobs_app.command("show")
def jobs_show(
    job_id: Annotated[int, typer.Argument(help="Job (execution) id.")],
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show one job: status, counts, places, usage per service, settings."""
    from genfactory.storage import repository
    from genfactory.storage.db import store_exists

    if not store_exists():  # a read-only command creates nothing
        raise fail(f"job {job_id} does not exist (the store is empty)")
    e = guarded(lambda: repository.get_execution(job_id))
    counts = repository.image_counts(job_id)
    if json_:
        print_json({**_plain_record(e), "image_counts": counts})
        return
    table = Table(title=f"Job {e.id} — {e.label}", show_header=False)
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    rows: list[tuple[str, Any]] = [
        ("status", e.status),
        ("started", _when(e.started_at)),
        ("completed", _when(e.completed_at)),
        ("images", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"),
        ("error", e.error_message or ""),
        ("output dir", e.output_dir),
        ("temp dir", e.temp_dir),
        ("log", e.log_path),
        ("Prefect flow run", e.flow_run_id),
        ("rerun of", e.rerun_of_id or ""),
    ]
    for service, values in sorted((e.usage or {}).items()):
        rows.append(
            (f"usage {service}", ", ".join(f"{k} {v:g}" for k, v in sorted(values.items())))
        )
    rows += cost_rows(e.settings_snapshot, e.usage or {})
    providers = e.settings_snapshot.get("providers", {})
    rows.append(("providers", ", ".join(f"{k}={v}" for k, v in providers.items())))
    # The settings as the job ran (the snapshot holds no secrets), one row per section.
    for section, values in e.settings_snapshot.items():
        if section != "providers" and isinstance(values, dict):
            shown = ", ".join(f"{k}={v}" for k, v in values.items() if v is not None)
            rows.append((f"[{section}]", shown))
    for key, value in rows:
        table.add_row(escape(key), escape("" if value is None else str(value)))
    console.print(table)


def _plain_record(record: Any) -> dict[str, Any]:

    return dict(plain(record))


def _when(moment: Any) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else ""


@images_app.command("list")
def images_list(
    job: Annotated[int | None, typer.Option("--job", help="Only this job's images.")] = None,
    status: Annotated[str | None, typer.Option("--status", help="Only this status.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 200,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List images with status, file and reason."""
    from genfactory.storage import repository
    from genfactory.storage.db import store_exists

    if status is not None and status not in {s.value for s in ImageStatus}:
        raise fail(
            f"unknown status {status!r}; choose one of {', '.join(s.value for s in ImageStatus)}"
        )
    images = (
        guarded(lambda: repository.list_images(execution_id=job, status=status, limit=limit))
        if store_exists()
        else []
    )
    if json_:
        print_json(images)
        return
    table = Table(title="Images")
    for column in ("id", "job", "slot", "idx", "status"):
        table.add_column(column, no_wrap=True)
    table.add_column("file", overflow="fold")
    table.add_column("reason / title")
    for image in images:
        detail = image.qc_reason or image.error or ""
        if image.image_metadata and not detail:
            detail = str(image.image_metadata.get("title", ""))
        table.add_row(
            str(image.id),
            str(image.execution_id),
            str(image.slot),
            str(image.image_index),
            str(image.status),
            image.final_image_path or image.temp_image_path or "",
            detail,
        )
    console.print(table)


@app.command()
def stats(json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Counts of jobs and images per status across the store."""
    from genfactory.storage import repository
    from genfactory.storage.db import database_url, describe_url, store_exists

    data = guarded(repository.stats) if store_exists() else {"jobs": {}, "images": {}}
    if json_:
        print_json(data)
        return
    table = Table(title="Store", caption=describe_url(database_url()))
    table.add_column("what")
    table.add_column("status")
    table.add_column("count", justify="right")
    for what in ("jobs", "images"):
        for status, count in sorted(data[what].items()):
            table.add_row(what, status, str(count))
    console.print(table)


@jobs_app.command("stop", epilog="Example:\n\n  genfactory jobs stop 12")
def jobs_stop(job_id: Annotated[int, typer.Argument(help="Job (execution) id.")]) -> None:
    """Ask a running job to stop gracefully, from any terminal or machine sharing the store:
    images in flight finish, nothing new starts, the job ends `cancelled` (resumable)."""
    from genfactory.statuses import JobStatus
    from genfactory.storage import repository

    def _stop() -> Any:
        execution = repository.get_execution(job_id)
        if execution.status != JobStatus.RUNNING:
            raise UserError(f"job {job_id} is {execution.status}, not running: nothing to stop")
        return repository.request_stop(job_id, "stopped by `genfactory jobs stop`")

    guarded(_stop)
    console.print(
        f"Stop requested: job {job_id} finishes its images in flight, then ends cancelled "
        f"(continue it later with `genfactory resume {job_id}`)."
    )
