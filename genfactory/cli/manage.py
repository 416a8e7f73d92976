"""CLI commands that work on finished jobs: `export`, `retry`, `images approve`, `rerun`,
`images show`, `jobs delete` and `clean`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from genfactory.cli.app import app, console, err_console, fail, guarded, images_app, jobs_app
from genfactory.cli.job_runner import (
    exit_code,
    flow_result,
    print_summary,
    quiet_console_logs,
    run_job,
)
from genfactory.cli.output import plain, print_json
from genfactory.config import parse_set_option
from genfactory.engine import server
from genfactory.statuses import ImageStatus

SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set", "-s", help="A setting by dotted name, section.name=value.", metavar="KEY=VALUE"
    ),
]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Show run logs.")]


def _overrides(items: list[str] | None) -> dict[str, Any]:
    return dict(guarded(lambda: [parse_set_option(item) for item in (items or [])]))


def _quiet_prefect(verbose: bool) -> None:
    """Before Prefect is first imported: its console handler then shows warnings only."""
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def _start_prefect(verbose: bool) -> None:
    api_url = guarded(server.choose_api)
    if guarded(lambda: server.ensure_started(api_url)):
        err_console.print(f"Started the local Prefect server (UI: {server.status().ui_url}).")
    if not verbose:
        quiet_console_logs()


def _flow_result(state: Any) -> Any:
    from genfactory.engine import pool

    pool.shutdown_pool()
    return flow_result(state)


def _run_retries(request: dict[str, Any], verbose: bool) -> None:
    _quiet_prefect(verbose)
    from genfactory.storage import repository
    from genfactory.tasks.retry import select_images

    def _check() -> None:
        from genfactory.tasks.retry import check_retry_overrides, retry_settings

        check_retry_overrides(request["overrides"])
        if request["job_id"] is None and not request["image_ids"]:
            if not repository.list_work("retry", ("pending", "running")):
                raise _user("nothing is queued; say what to retry: --job JOB_ID or --image ID")
            return
        images = select_images(
            job_id=request["job_id"],
            image_ids=request["image_ids"],
            statuses=request["statuses"],
            manual=request["manual"],
        )
        for execution_id in {image.execution_id for image in images}:
            retry_settings(execution_id, request["overrides"])

    guarded(_check)
    _start_prefect(verbose)
    from genfactory.flows.retry_images import retry_images

    result = _flow_result(retry_images(**request, return_state=True))
    table = Table(title="Retried images")
    for column in ("image", "job", "status"):
        table.add_column(column, no_wrap=True)
    table.add_column("file / reason", overflow="fold")
    failed = 0
    for image_id in result["images"]:
        image = repository.get_image(int(image_id))
        failed += image.status != ImageStatus.APPROVED
        table.add_row(
            str(image.id),
            str(image.execution_id),
            str(image.status),
            escape(image.final_image_path or image.error or image.qc_reason or ""),
        )
    console.print(table)
    raise typer.Exit(1 if failed else 0)


def _user(message: str) -> Exception:
    from genfactory.errors import UserError

    return UserError(message)


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


@app.command(
    epilog="Examples:\n\n  genfactory retry --job 12\n\n"
    "  genfactory retry --image 81 --image 82 --set processing.convert_format=jpg\n\n"
    "  genfactory retry   (continues retries a crash left queued)"
)
def retry(
    job: Annotated[int | None, typer.Option("--job", "-j", help="Retry this job's images.")] = None,
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status", help="With --job: these statuses (default qc_failed,failed,retry_failed)."
        ),
    ] = None,
    image: Annotated[
        list[int] | None, typer.Option("--image", "-i", help="Retry this image (repeatable).")
    ] = None,
    set_: SetOption = None,
    verbose: Verbose = False,
) -> None:
    """Retry failed or rejected images: processing and metadata again, never QC.

    From the originals kept in temp; --set changes processing.* or metadata.* settings.
    """
    request: dict[str, Any] = {
        "job_id": job,
        "image_ids": list(image or []) or None,
        "statuses": list(status or []) or None,
        "overrides": _overrides(set_),
        "manual": False,
    }
    _run_retries(request, verbose)


@images_app.command("approve", epilog="Example:\n\n  genfactory images approve 81 82")
def images_approve(
    image_ids: Annotated[list[int], typer.Argument(help="qc_failed image ids.")],
    verbose: Verbose = False,
) -> None:
    """Approve qc_failed images by hand: processed, described, put in the output dir.

    The row records that it was approved by hand.
    """
    request: dict[str, Any] = {
        "job_id": None,
        "image_ids": list(image_ids),
        "statuses": None,
        "overrides": {},
        "manual": True,
    }
    _run_retries(request, verbose)


@app.command(
    epilog="Examples:\n\n  genfactory rerun 12\n\n  genfactory rerun 12 13 14 "
    "--set processing.convert_format=jpg\n\n  genfactory rerun   (continues a bulk a crash left)"
)
def rerun(
    job_ids: Annotated[list[int] | None, typer.Argument(help="Jobs to run again.")] = None,
    set_: SetOption = None,
    verbose: Verbose = False,
) -> None:
    """Run jobs again as new jobs, one after another, from their stored settings and slots.

    The keywords file need not exist; keys come from the current environment.
    """
    from genfactory.storage import repository
    from genfactory.tasks.rerun import plan_rerun

    _quiet_prefect(verbose)
    overrides = _overrides(set_)

    def _check() -> None:
        if not job_ids and not repository.list_work("rerun", ("pending", "running")):
            raise _user("nothing is queued; say which jobs to rerun: genfactory rerun JOB_ID")
        for job_id in job_ids or []:
            plan_rerun(job_id, overrides)

    guarded(_check)
    api_url = guarded(server.choose_api)
    if not verbose:
        quiet_console_logs()
    states: list[Any] = []

    def start(_flows: Any) -> Any:
        from genfactory.flows.rerun_jobs import rerun_jobs

        state = rerun_jobs(list(job_ids or []) or None, overrides, return_state=True)
        states.append(state)
        return state

    last = run_job(api_url, start)
    summaries = _flow_result(states[0]) if states else [last]
    for summary in summaries:
        console.print(f"Job {summary['execution_id']} reran job {summary['rerun_of_id']}:")
        print_summary(summary)
    codes = [
        exit_code({**s, "stopped_by_signal": last.get("stopped_by_signal")}) for s in summaries
    ]
    raise typer.Exit(max(codes, default=1))


@images_app.command("show", epilog="Example:\n\n  genfactory images show 81 --json")
def images_show(
    image_id: Annotated[int, typer.Argument(help="Image id.")],
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show one image: fields, metadata, paths, QC reason, settings, history.

    The settings it was processed with and its history of retries and manual approvals.
    """
    from genfactory.storage import repository
    from genfactory.storage.db import store_exists

    if not store_exists():
        raise fail(f"image {image_id} does not exist (the store is empty)")
    image = guarded(lambda: repository.get_image(image_id))
    if json_:
        print_json(image)
        return
    table = Table(title=f"Image {image.id}", show_header=False)
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for key, value in plain(image).items():
        if key in ("image_metadata", "processing_settings", "history"):
            continue
        table.add_row(key, escape("" if value is None else str(value)))
    metadata = image.image_metadata or {}
    for key in ("title", "description"):
        table.add_row(key, escape(str(metadata.get(key, ""))))
    table.add_row("keywords", escape(", ".join(metadata.get("keywords", []))))
    settings = image.processing_settings or {}
    table.add_row("processed with", escape(", ".join(f"{k}={v}" for k, v in settings.items())))
    for n, entry in enumerate(image.history or [], 1):
        table.add_row(
            f"attempt {n}",
            escape(
                f"{entry.get('at', '')} {entry.get('kind', '')}: {entry.get('status', '')}"
                + (f" ({entry['error']})" if entry.get("error") else "")
            ),
        )
    console.print(table)


@jobs_app.command("delete", epilog="Example:\n\n  genfactory jobs delete 12 --yes")
def jobs_delete(
    job_id: Annotated[int, typer.Argument(help="Job (execution) id.")],
    keep_files: Annotated[
        bool, typer.Option("--keep-files", help="Remove the rows only, keep every file.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Delete a job: exactly its rows and the files it owns (outputs, originals, log)."""
    from genfactory import housekeeping
    from genfactory.storage import repository
    from genfactory.storage.db import store_exists

    if not store_exists():
        raise fail(f"job {job_id} does not exist (the store is empty)")
    execution = guarded(lambda: repository.get_execution(job_id))
    files = (
        housekeeping.FileReport() if keep_files else guarded(lambda: housekeeping.job_files(job_id))
    )
    what = f"job {job_id} '{execution.label}' ({execution.total_images} images)"
    if not keep_files:
        what += f" and its {len(files.files)} files ({_size(files.bytes)})"
    if not yes:
        if not os.isatty(0):
            raise fail(f"deleting {what} needs confirmation: pass --yes")
        typer.confirm(f"Delete {what}?", abort=True)
    report = guarded(lambda: housekeeping.delete_job(job_id, keep_files=keep_files))
    console.print(f"Deleted job {job_id}: {len(report.files)} files ({_size(report.bytes)}).")


@app.command(
    epilog="Examples:\n\n  genfactory clean --dry-run\n\n  genfactory clean --older-than 7d"
)
def clean(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Only files older than this (7d, 12h, 30m).")
    ] = "0",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List, remove nothing.")] = False,
) -> None:
    """Remove temp files no retry can need any more, and print what it frees.

    Originals of approved images or of deleted jobs, and half-written files a killed job left;
    never a file a failed image or a queued retry needs.
    """
    from genfactory import housekeeping
    from genfactory.storage.db import store_exists

    age = guarded(lambda: housekeeping.parse_age(older_than))
    if not store_exists():
        console.print("Nothing to clean: the store is empty.")
        return
    report = guarded(lambda: housekeeping.clean(age, dry_run=dry_run))
    for path in report.files:
        console.print(escape(str(path)), highlight=False, soft_wrap=True)
    verb = "Would free" if dry_run else "Freed"
    console.print(f"{verb} {_size(report.bytes)} in {len(report.files)} files.")


def _size(count: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024  # type: ignore[assignment]
    return f"{count} B"
