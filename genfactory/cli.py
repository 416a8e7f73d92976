"""The `genfactory` command line (Typer + Rich).

User mistakes print one sentence and exit with code 2, never a traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from genfactory.config import load_settings, parse_set_option, settings_template
from genfactory.errors import GenfactoryError, UserError
from genfactory.statuses import ImageStatus

app = typer.Typer(
    help="genfactory: keywords in, finished and sellable AI-generated images out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
jobs_app = typer.Typer(help="Inspect jobs (executions).", no_args_is_help=True)
images_app = typer.Typer(help="Inspect generated images.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")
app.add_typer(images_app, name="images")

console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")


def fail(message: str, code: int = 2) -> typer.Exit:
    from genfactory.logs import redact

    err_console.print(
        f"[bold red]error:[/] {escape(redact(message))}", highlight=False, soft_wrap=True
    )
    return typer.Exit(code)


def guarded(fn: Callable[[], T]) -> T:
    """Run `fn`, turning genfactory's user-facing errors into one line and exit code 2."""
    try:
        return fn()
    except UserError as exc:
        raise fail(str(exc)) from None
    except LookupError as exc:  # repository.NotFound
        raise fail(str(exc).strip("'\"")) from None
    except GenfactoryError as exc:
        raise fail(str(exc), code=1) from None


# ---------------------------------------------------------------------------------------------
# run


@app.command(
    epilog="Examples:\n\n  genfactory run --config examples/job.toml\n\n"
    "  genfactory run --keywords examples/keywords.txt --count 4 "
    "--set processing.convert_format=jpg --set processing.jpg_quality=90"
)
def run(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Settings file (TOML).")
    ] = None,
    keywords: Annotated[
        Path | None, typer.Option("--keywords", "-k", help="Keywords .txt or .csv.")
    ] = None,
    count: Annotated[int | None, typer.Option("--count", "-n", help="Generation slots.")] = None,
    output_dir: Annotated[
        Path | None, typer.Option("--output-dir", "-o", help="Where approved files go.")
    ] = None,
    label: Annotated[str | None, typer.Option("--label", "-l", help="Job label.")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="Any setting by dotted name: section.name=value."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show run logs.")] = False,
) -> None:
    """Run a job: generate, check, process and describe images, with a progress bar."""
    if not verbose:
        # Before Prefect is first imported: its console handler then shows warnings only.
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    overrides: dict[str, Any] = dict(parse_set_option(item) for item in (set_ or []))
    for key, value in (
        ("job.keywords_file", keywords),
        ("job.count", count),
        ("job.output_dir", output_dir),
        ("job.label", label),
    ):
        if value is not None:
            overrides[key] = str(value) if isinstance(value, Path) else value

    def _load() -> Any:
        settings = load_settings(config, overrides=overrides)
        # Every input check before Prefect starts: mistakes cost no start-up time and no rows.
        from genfactory.tasks.initialize import prepare

        resolved, _slots = prepare(settings)
        return resolved

    settings = guarded(_load)
    if not verbose:
        _quiet_console_logs()
    summary = guarded(lambda: _run_with_progress(settings))
    _print_summary(summary)
    if summary["status"] != "completed":
        raise typer.Exit(1)


def _quiet_console_logs() -> None:
    """Run logs go to the job's log file; the terminal shows the progress bar and warnings."""
    import logging

    for name in (None, "prefect", "prefect.flow_runs", "prefect.task_runs", "genfactory"):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(
                handler, logging.FileHandler
            ):
                handler.setLevel(logging.WARNING)


def _run_with_progress(settings: Any) -> dict[str, Any]:
    from genfactory import progress as events
    from genfactory.flows import generate_job

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[slots]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task_id = bar.add_task("starting Prefect", total=100, slots="")

        def on_event(event: events.ProgressEvent) -> None:
            bar.update(
                task_id,
                completed=event.fraction * 100,
                description=f"job {event.execution_id} {event.label}",
                slots=f"{event.done_slots}/{event.total_slots} slots",
            )

        events.subscribe(on_event)
        try:
            state = generate_job(settings, return_state=True)
        finally:
            events.unsubscribe(on_event)
    if state.is_completed():
        result: dict[str, Any] = state.result()
        return result
    try:
        state.result()
    except GenfactoryError:
        raise
    except Exception as exc:
        raise GenfactoryError(f"the job flow failed: {exc}") from None
    raise GenfactoryError(f"the job flow ended {state.type.value.lower()}: {state.message}")


def _print_summary(summary: dict[str, Any]) -> None:
    from genfactory.storage import repository
    from genfactory.storage.db import database_url, describe_url

    table = Table(title=f"Job {summary['execution_id']} — {summary['label']}", show_lines=False)
    table.add_column("status")
    table.add_column("total", justify="right")
    table.add_column("approved", justify="right", style="green")
    table.add_column("qc_failed", justify="right", style="yellow")
    table.add_column("failed", justify="right", style="red")
    table.add_row(
        summary["status"],
        str(summary["total"]),
        str(summary["approved"]),
        str(summary["qc_failed"]),
        str(summary["failed"]),
    )
    console.print(table)
    if summary.get("error_message"):
        console.print(f"[red]{summary['error_message']}[/]")
    rejected = [
        image
        for image in repository.list_images(execution_id=summary["execution_id"])
        if image.status in (ImageStatus.QC_FAILED, ImageStatus.FAILED)
    ]
    for image in rejected[:10]:
        console.print(
            f"  [yellow]{image.status}[/] slot {image.slot} image {image.image_index}: "
            f"{image.qc_reason or image.error}",
            highlight=False,
        )
    console.print(
        f"Approved images: [bold]{summary['output_dir']}[/]", highlight=False, soft_wrap=True
    )
    console.print(
        f"Temp (rejected and failed originals): {summary['temp_dir']}",
        highlight=False,
        soft_wrap=True,
    )
    console.print(f"Store: {describe_url(database_url())}", highlight=False, soft_wrap=True)
    console.print(f"Log: {summary['log_path']}", highlight=False, soft_wrap=True)


# ---------------------------------------------------------------------------------------------
# jobs / images / stats


@jobs_app.command("list")
def jobs_list(
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
    status: Annotated[str | None, typer.Option(help="Only jobs with this status.")] = None,
) -> None:
    """List jobs with their counts."""
    from genfactory.storage import repository

    def _list() -> list[repository.ExecutionRecord]:
        from genfactory.tasks.recovery import recover_stale_executions

        recover_stale_executions()
        return repository.list_executions(limit=limit, status=status)

    executions = guarded(_list)
    table = Table(title="Jobs")
    table.add_column("id", justify="right", no_wrap=True)
    table.add_column("label", overflow="fold", min_width=19)
    table.add_column("status", no_wrap=True)
    for column in ("total", "approved", "qc_failed", "failed"):
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
def jobs_show(job_id: Annotated[int, typer.Argument(help="Job (execution) id.")]) -> None:
    """Show one job: status, counts, places, usage per service, settings."""
    from genfactory.storage import repository

    e = guarded(lambda: repository.get_execution(job_id))
    counts = repository.image_counts(job_id)
    table = Table(title=f"Job {e.id} — {e.label}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
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
    providers = e.settings_snapshot.get("providers", {})
    rows.append(("providers", ", ".join(f"{k}={v}" for k, v in providers.items())))
    for key, value in rows:
        table.add_row(key, "" if value is None else str(value))
    console.print(table)


def _when(moment: Any) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else ""


@images_app.command("list")
def images_list(
    job: Annotated[int | None, typer.Option("--job", help="Only this job's images.")] = None,
    status: Annotated[str | None, typer.Option("--status", help="Only this status.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 200,
) -> None:
    """List images with status, file and reason."""
    from genfactory.storage import repository

    if status is not None and status not in {s.value for s in ImageStatus}:
        raise fail(
            f"unknown status {status!r}; choose one of {', '.join(s.value for s in ImageStatus)}"
        )
    images = guarded(lambda: repository.list_images(execution_id=job, status=status, limit=limit))
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
def stats() -> None:
    """Counts of jobs and images per status across the store."""
    from genfactory.storage import repository
    from genfactory.storage.db import database_url, describe_url

    data = guarded(repository.stats)
    table = Table(title="Store", caption=describe_url(database_url()))
    table.add_column("what")
    table.add_column("status")
    table.add_column("count", justify="right")
    for what in ("jobs", "images"):
        for status, count in sorted(data[what].items()):
            table.add_row(what, status, str(count))
    console.print(table)


@app.command("settings")
def settings_cmd() -> None:
    """Print every setting with its default, as a TOML settings file."""
    console.print(settings_template(), markup=False, highlight=False, soft_wrap=True)


# ---------------------------------------------------------------------------------------------
# export

#: Changes printed on the terminal; the export's report file lists every one.
_CHANGES_SHOWN = 200


@app.command(
    "export",
    epilog="Examples:\n\n  genfactory export 3 --format xlsx\n\n"
    "  genfactory export 3 4 --format zip --out ~/uploads/spring.zip\n\n"
    "  genfactory export 3 --format adobe-csv --out ~/uploads/adobe",
)
def export_cmd(
    job_ids: Annotated[list[int], typer.Argument(help="Job (execution) ids.", show_default=False)],
    format_: Annotated[
        str,
        typer.Option(
            "--format", "-f", help="xlsx, adobe-csv, freepik-csv, zip or html.", show_default=True
        ),
    ] = "xlsx",
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="A file for one job; a folder (or .zip) for several."),
    ] = None,
) -> None:
    """Export jobs: Excel workbook, stock-site CSVs, an image ZIP or an HTML report.

    No Prefect start-up: it reads the store and writes files (so does the export-job flow).

    No Shutterstock export: Shutterstock refuses AI-generated content.
    """
    from genfactory.exports import run_export

    result = guarded(lambda: run_export(job_ids, format_, out))
    for line in result.changes[:_CHANGES_SHOWN]:
        console.print(f"[yellow]changed[/] {escape(line)}", highlight=False, soft_wrap=True)
    hidden = result.changes_total - len(result.changes[:_CHANGES_SHOWN])
    if hidden > 0:
        console.print(f"... and {hidden} more in {result.report or result.path}", highlight=False)
    if result.changes_total:
        console.print(
            f"{result.changes_total} change(s) the stock limits forced"
            + (f", listed in {result.report}" if result.report else ""),
            highlight=False,
            soft_wrap=True,
        )
    console.print(f"Export written: [bold]{result.path}[/]", highlight=False, soft_wrap=True)


def main() -> None:
    """Console entry point."""
    # Offline by default: Prefect's ephemeral server would otherwise try to send telemetry
    # (and log an error when there is no network).
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
