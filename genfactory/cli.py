"""The `genfactory` command line (Typer + Rich).

User mistakes print one sentence and exit with code 2, never a traceback.
"""

from __future__ import annotations

import contextlib
import os
import signal
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
from genfactory.engine import server
from genfactory.errors import GenfactoryError, UserError
from genfactory.statuses import ImageStatus

app = typer.Typer(
    help="genfactory: keywords in, finished and sellable AI-generated images out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
jobs_app = typer.Typer(help="Inspect jobs (executions).", no_args_is_help=True)
images_app = typer.Typer(help="Inspect generated images.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")
app.add_typer(images_app, name="images")

console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")


def _flags_take_no_value() -> None:
    """Typer's rich help shows flags as if they took a value (`--verbose <bool>`); a flag
    shows no type."""
    from typer.core import TyperOption

    original = TyperOption.display_type_rich

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag else original(self, ctx)

    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_take_no_value()


def _show_version(value: bool) -> None:
    if value:
        from genfactory import __version__

        console.print(f"genfactory {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main_options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_show_version, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """genfactory: keywords in, finished and sellable AI-generated images out."""


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
    images: Annotated[
        Path | None,
        typer.Option("--images", help="Use the image files in DIR instead of generating."),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="Any setting by dotted name: section.name=value."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show run logs.")] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Validate, print the slots, images, calls per service and the estimated "
            "cost, then stop: no job, no row, no directory, no service contacted.",
        ),
    ] = False,
    max_cost: Annotated[
        float | None,
        typer.Option("--max-cost", help="Budget in USD (job.max_cost): stop before passing it."),
    ] = None,
) -> None:
    """Run a job: generate, check, process and describe images, with a progress bar."""
    if not verbose:
        # Before Prefect is first imported: its console handler then shows warnings only.
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    overrides: dict[str, Any] = dict(
        guarded(lambda: [parse_set_option(item) for item in (set_ or [])])
    )
    for key, value in (
        ("job.keywords_file", keywords),
        ("job.count", count),
        ("job.output_dir", output_dir),
        ("job.label", label),
        ("job.max_cost", max_cost),
        ("job.images_dir", images),
    ):
        if value is not None:
            overrides[key] = str(value) if isinstance(value, Path) else value

    if dry_run:
        guarded(lambda: _dry_run(load_settings(config, overrides=overrides)))
        return

    def _load() -> Any:
        settings = load_settings(config, overrides=overrides)
        # Every input check before Prefect starts: mistakes cost no start-up time and no rows.
        from genfactory.tasks.initialize import prepare

        resolved, _slots = prepare(settings)
        return resolved

    api_url = guarded(server.choose_api)
    settings = guarded(_load)
    if not verbose:
        _quiet_console_logs()
    summary = _run_job(api_url, lambda flows: flows.generate_job(settings, return_state=True))
    _print_summary(summary)
    raise typer.Exit(_exit_code(summary))


@app.command(epilog="Example:\n\n  genfactory resume 12")
def resume(
    job_id: Annotated[int, typer.Argument(help="Job (execution) id.")],
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show run logs.")] = False,
) -> None:
    """Continue an interrupted or cancelled job where it stopped (the same job id)."""
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from genfactory.engine.recovery import recover_stale_executions
    from genfactory.statuses import JobStatus
    from genfactory.storage import repository

    def _check() -> None:
        recover_stale_executions()
        execution = repository.get_execution(job_id)
        if not JobStatus(execution.status).is_resumable:
            raise UserError(
                f"job {job_id} is {execution.status}: only interrupted or cancelled jobs "
                "continue"
                + (
                    f" (stop it with `genfactory jobs stop {job_id}`)"
                    if execution.status == JobStatus.RUNNING
                    else ""
                )
            )

    api_url = guarded(server.choose_api)
    guarded(_check)
    if not verbose:
        _quiet_console_logs()
    summary = _run_job(api_url, lambda flows: flows.resume_job(job_id, return_state=True))
    _print_summary(summary)
    raise typer.Exit(_exit_code(summary))


def _exit_code(summary: dict[str, Any]) -> int:
    if summary.get("stopped_by_signal"):
        return 130
    return 0 if summary["status"] == "completed" else 1


def _dry_run(settings: Any) -> None:
    """`run --dry-run`: the checks of a run that create nothing, then the plan and its cost."""
    from genfactory import pricing, prompting
    from genfactory.config import Credentials
    from genfactory.providers.registry import check_credentials

    check_credentials(settings, Credentials.from_env())
    if settings.job.keywords_file is None:
        raise UserError(
            "no keywords file: pass --keywords FILE or set job.keywords_file in the settings file"
        )
    source = prompting.read_keywords(Path(settings.job.keywords_file).expanduser())
    template = prompting.load_template(settings.prompts.template, settings.providers.prompt)
    plans = prompting.plan_slots(
        source,
        template,
        settings.job.count,
        settings.generation.aspect_ratios,
        random_order=settings.job.keyword_random,
        seed=settings.job.seed,
    )
    slots = len(plans)
    calls = pricing.planned_calls(settings, slots)
    table = Table(title="Dry run: what this job would do (nothing was created or sent)")
    table.add_column("service")
    table.add_column("calls at most (first tries)")
    table.add_column("estimated cost", justify="right")
    for row in pricing.cost_rows(settings, calls):
        table.add_row(*row)
    console.print(f"slots {slots}, images {slots * settings.images_per_slot}", highlight=False)
    console.print(table)
    budget = settings.job.max_cost
    vision = calls.get("openai", {}).get("vision_calls", 0)
    if vision and settings.openai.max_attempts > 1:
        console.print(
            f"Malformed vision answers may cost up to {settings.openai.max_attempts} calls "
            f"each ({vision * settings.openai.max_attempts} in all).",
            highlight=False,
        )
    if budget is not None:
        total = pricing.estimate_cost(settings, calls)["total"]
        verdict = "within" if total <= budget else "OVER; the job would stop at"
        console.print(f"Budget: job.max_cost = ${budget:g}, {verdict} it.", highlight=False)
    console.print("Prices: the \\[pricing] settings; edit them for your plan.", highlight=False)


def _quiet_console_logs() -> None:
    """Run logs go to the job's log file; the terminal shows the progress bar and warnings."""
    import logging

    for name in (None, "prefect", "prefect.flow_runs", "prefect.task_runs", "genfactory"):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(
                handler, logging.FileHandler
            ):
                handler.setLevel(logging.WARNING)


class _Interrupts:
    """Ctrl-C (SIGINT) and SIGTERM while a job runs: the first asks the job to stop
    gracefully (in-flight steps finish, nothing new starts, the job ends `cancelled`); the
    second aborts at once and leaves the job `interrupted` for `genfactory resume`."""

    def __init__(self) -> None:
        self.execution_id: int | None = None
        self.signals = 0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Interrupts:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, _frame: Any) -> None:
        self.signals += 1
        name = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
        if self.signals == 1 and self.execution_id is not None:
            from genfactory.engine.runtime import peek_runtime
            from genfactory.storage import repository

            reason = f"stopped by {name}"
            runtime = peek_runtime(self.execution_id)
            if runtime is not None:
                runtime.stop(reason, by_user=True)
            with contextlib.suppress(Exception):  # the job's control loop still sees the flag
                repository.request_stop(self.execution_id, reason)
            err_console.print(
                f"[yellow]{name}: stopping job {self.execution_id} — images in flight finish, "
                "nothing new starts (press Ctrl-C again to abort at once)[/]"
            )
            return
        self._abort(name)

    def _abort(self, name: str) -> None:
        """Leave the job `interrupted` and end this process and its pool workers now."""
        import multiprocessing

        if self.execution_id is not None:
            from genfactory.engine.lifecycle import mark_stopped
            from genfactory.statuses import JobStatus

            mark_stopped(
                self.execution_id,
                JobStatus.INTERRUPTED,
                f"interrupted: aborted by {name}; continue it with "
                f"`genfactory resume {self.execution_id}`",
            )
            err_console.print(
                f"[red]aborted: job {self.execution_id} is interrupted; continue it with "
                f"`genfactory resume {self.execution_id}`[/]"
            )
        else:
            err_console.print("[red]aborted[/]")
        for child in multiprocessing.active_children():
            child.kill()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)


def _run_job(api_url: str | None, start: Callable[[Any], Any]) -> dict[str, Any]:
    """Run a job flow with a progress bar and graceful stops; returns its summary (from the
    store, however the flow run ended)."""
    from genfactory import progress as events

    started = guarded(lambda: server.ensure_started(api_url))
    if started:
        err_console.print(
            f"Started the local Prefect server (UI: {server.status().ui_url}); later jobs reuse "
            "it. `genfactory server stop` stops it."
        )
    from prefect.exceptions import ExternalSignal

    from genfactory import flows
    from genfactory.engine import pool
    from genfactory.tasks.finish import summarize

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[slots]}"),
        TimeElapsedColumn(),
    )
    interrupts = _Interrupts()
    with interrupts, Progress(*columns, console=console, transient=False) as bar:
        task_id = bar.add_task("starting", total=100, slots="")

        def on_event(event: events.ProgressEvent) -> None:
            interrupts.execution_id = event.execution_id
            bar.update(
                task_id,
                completed=event.fraction * 100,
                description=f"job {event.execution_id} {event.label}",
                slots=f"{event.done_slots}/{event.total_slots} slots",
            )

        events.subscribe(on_event)
        try:
            state = start(flows)
        except (KeyboardInterrupt, ExternalSignal) as exc:
            # Prefect turns a signal into an exception out of the flow: say it in words.
            _say_signal_ended(interrupts.execution_id, exc)
        finally:
            events.unsubscribe(on_event)
            pool.shutdown_pool()
    if interrupts.execution_id is None:
        # The flow ended before the job existed: initialisation refused the input.
        try:
            state.result()
        except UserError as exc:
            raise fail(str(exc)) from None
        except GenfactoryError as exc:
            raise fail(str(exc), code=1) from None
        except Exception as exc:
            raise fail(f"the job flow failed: {exc}", code=1) from None
        raise fail(f"the job flow ended {state.type.value.lower()}: {state.message}", code=1)
    summary = summarize(interrupts.execution_id)
    summary["stopped_by_signal"] = interrupts.signals > 0
    return summary


def _say_signal_ended(execution_id: int | None, exc: BaseException) -> None:
    """The job ended by Ctrl-C or SIGTERM: mark it interrupted (resumable), say so, exit 130."""
    name = "Ctrl-C" if isinstance(exc, KeyboardInterrupt) else "SIGTERM"
    if execution_id is None:
        raise fail(f"stopped by {name} before the job started; nothing was run", code=130)
    from genfactory.engine.lifecycle import mark_stopped
    from genfactory.statuses import JobStatus

    mark_stopped(
        execution_id,
        JobStatus.INTERRUPTED,
        f"interrupted: stopped by {name}; continue it with `genfactory resume {execution_id}`",
    )
    raise fail(
        f"stopped by {name}: job {execution_id} is interrupted; continue it with "
        f"`genfactory resume {execution_id}`",
        code=130,
    )


def _print_summary(summary: dict[str, Any]) -> None:
    from genfactory.storage import repository
    from genfactory.storage.db import database_url, describe_url

    table = Table(title=f"Job {summary['execution_id']} — {summary['label']}", show_lines=False)
    table.add_column("status")
    table.add_column("total", justify="right")
    table.add_column("approved", justify="right", style="green")
    table.add_column("qc_failed", justify="right", style="yellow")
    table.add_column("failed", justify="right", style="red")
    table.add_column("slots", justify="right")
    slots = f"{summary['slots']}"
    if summary["failed_slots"]:
        slots += f" ({summary['failed_slots']} failed)"
    row = [
        summary["status"],
        str(summary["total"]),
        str(summary["approved"]),
        str(summary["qc_failed"]),
        str(summary["failed"]),
        slots,
    ]
    if summary.get("unfinished") or summary.get("unstarted_slots"):
        table.add_column("left", justify="right", style="cyan")
        row.append(f"{summary['unfinished']}+{summary['unstarted_slots']}s")
    table.add_row(*row)
    console.print(table)
    if summary.get("error_message"):
        console.print(f"[red]{escape(summary['error_message'])}[/]")
    for failure in summary.get("slot_failures", [])[:10]:
        console.print(
            f"  [red]slot {failure['slot']} failed[/]: {escape(failure['error'])}", highlight=False
        )
    rejected = [
        image
        for image in repository.list_images(execution_id=summary["execution_id"])
        if image.status in (ImageStatus.QC_FAILED, ImageStatus.FAILED)
    ]
    for image in rejected[:10]:
        console.print(
            f"  [yellow]{image.status}[/] slot {image.slot} image {image.image_index}: "
            f"{escape(str(image.qc_reason or image.error))}",
            highlight=False,
        )
    if summary["status"] in ("cancelled", "interrupted"):
        console.print(
            f"Continue it with: [bold]genfactory resume {summary['execution_id']}[/]",
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
    if summary.get("report_path"):
        console.print(f"Report: {summary['report_path']}", highlight=False, soft_wrap=True)
    execution = repository.get_execution(summary["execution_id"])
    costs = _cost_rows(execution.settings_snapshot, execution.usage or {})
    if len(costs) > 1:
        shown = ", ".join(f"{name.removeprefix('cost ')} {value}" for name, value in costs)
        console.print(f"Cost: {shown}", highlight=False, soft_wrap=True)


# ---------------------------------------------------------------------------------------------
# jobs / images / stats


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
        from genfactory.cli_output import print_json

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
        from genfactory.cli_output import print_json

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
    rows += _cost_rows(e.settings_snapshot, e.usage or {})
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
    from genfactory.cli_output import plain

    return dict(plain(record))


def _cost_rows(snapshot: dict[str, Any], usage: dict[str, Any]) -> list[tuple[str, Any]]:
    """`jobs show`: the estimated cost per service, from the usage and the job's own prices."""
    from genfactory import pricing
    from genfactory.config import Settings

    try:
        settings = Settings.model_validate(snapshot)
    except ValueError:  # a snapshot from an older version: today's default prices
        settings = Settings()
    return [
        (f"cost {service}", f"{cost} (estimated)")
        for service, _calls, cost in pricing.cost_rows(settings, usage)
    ]


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
        from genfactory.cli_output import print_json

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
        from genfactory.cli_output import print_json

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


server_app = typer.Typer(
    help="The local Prefect server genfactory starts on first use and reuses (UI included).",
    no_args_is_help=True,
)
app.add_typer(server_app, name="server")


@server_app.command("start")
def server_start() -> None:
    """Start the local Prefect server in the background (no-op when it already answers)."""
    current = guarded(server.start)
    console.print(f"Prefect server running: UI {current.ui_url}, API {current.url}")


@server_app.command("stop")
def server_stop() -> None:
    """Stop the local Prefect server genfactory started."""
    if server.stop():
        console.print("Prefect server stopped.")
    else:
        console.print("No Prefect server started by genfactory is running.")


@server_app.command("status")
def server_status() -> None:
    """Whether the local Prefect server answers, and where."""
    current = guarded(server.status)
    if os.environ.get("PREFECT_API_URL"):
        console.print(f"PREFECT_API_URL is set: jobs use {os.environ['PREFECT_API_URL']}")
    state = "running" if current.running else "not running"
    owner = f" (pid {current.pid}, started by genfactory)" if current.managed else ""
    console.print(f"Local Prefect server {state}{owner}: UI {current.ui_url}, API {current.url}")
    if not current.running:
        raise typer.Exit(1)


# ---------------------------------------------------------------------------------------------
# serve


@app.command(
    epilog="Example:\n\n  genfactory serve\n\n  then start a run from the UI, or:\n\n"
    "  prefect deployment run 'generate-job/generate' "
    '--params \'{"keywords_file": "examples/keywords.txt", "count": 4}\''
)
def serve(
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="prefect.yaml with the deployments.")
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", help="At most this many runs at once.", min=1)
    ] = None,
) -> None:
    """Serve the deployments of prefect.yaml from this process (no work pool, no worker): runs
    started from the Prefect UI, `prefect deployment run` or a schedule execute here, with this
    process's environment (API keys, store). Ctrl-C stops it."""
    from genfactory import serve as serving

    path = file or (Path("prefect.yaml") if Path("prefect.yaml").is_file() else None)
    path = path or serving.DEFAULT_FILE
    api_url = guarded(server.choose_api)
    if api_url is None:
        raise fail(
            "serving needs a Prefect server that outlives this command; unset "
            "GENFACTORY_PREFECT_SERVER=ephemeral or set PREFECT_API_URL"
        )
    deployments, skipped = guarded(lambda: serving.served_deployments(path))
    if guarded(lambda: server.ensure_started(api_url)):
        err_console.print(f"Started the local Prefect server (UI: {server.status().ui_url}).")
    for line in skipped:
        err_console.print(f"[yellow]not served[/] {escape(line)}", highlight=False)
    names = ", ".join(f"{d.flow_name}/{d.name}" for d in deployments)
    console.print(
        f"Serving {names} (API {api_url}); Ctrl-C stops.", highlight=False, soft_wrap=True
    )
    code = serving.serve(
        deployments, limit, lambda line: err_console.print(escape(line), highlight=False)
    )
    console.print("Stopped serving.")
    raise typer.Exit(code)


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


# Commands on finished jobs (retry, rerun, images approve/show, jobs delete, clean).
from genfactory import cli_manage as _cli_manage  # noqa: E402, F401

if __name__ == "__main__":
    # `python -m genfactory.cli`: run the app of the imported module, on which every
    # command module registered its commands (this __main__ copy has only its own).
    from genfactory.cli import main as _main

    _main()
