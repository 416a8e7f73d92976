"""Running a job in the foreground: the progress bar, Ctrl-C and SIGTERM (stop gracefully,
then abort), the summary printed at the end and the exit code."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from genfactory.cli.app import console, err_console, fail, guarded
from genfactory.cli.output import cost_rows
from genfactory.engine import server
from genfactory.errors import GenfactoryError, UserError
from genfactory.statuses import RESUMABLE_JOB_STATUSES, ImageStatus, JobStatus


def exit_code(summary: dict[str, Any]) -> int:
    if summary.get("stopped_by_signal"):
        return 130
    return 0 if summary["status"] == JobStatus.COMPLETED else 1


def quiet_console_logs() -> None:
    """Run logs go to the job's log file; the terminal shows the progress bar and warnings."""
    import logging

    # Prefect adds its console handlers when `prefect.main` is imported: before that there is
    # nothing to quiet (`resume` came here first, and its terminal showed every INFO line).
    import prefect.main  # noqa: F401

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


def flow_result(state: Any, what: str = "the flow") -> Any:
    """The result of a finished flow run's `state`; its error as a CLI failure (exit 2 for the
    user's mistakes, 1 for the rest)."""
    try:
        return state.result()
    except UserError as exc:
        raise fail(str(exc)) from None
    except GenfactoryError as exc:
        raise fail(str(exc), code=1) from None
    except Exception as exc:
        raise fail(f"{what} failed: {exc or exc.__class__.__name__}", code=1) from None


def run_job(api_url: str | None, start: Callable[[Any], Any]) -> dict[str, Any]:
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
        flow_result(state, "the job flow")
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


def print_summary(summary: dict[str, Any]) -> None:
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
    if summary["status"] in RESUMABLE_JOB_STATUSES:
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
    costs = cost_rows(execution.settings_snapshot, execution.usage or {})
    if len(costs) > 1:
        shown = ", ".join(f"{name.removeprefix('cost ')} {value}" for name, value in costs)
        console.print(f"Cost: {shown}", highlight=False, soft_wrap=True)


# ---------------------------------------------------------------------------------------------
# jobs / images / stats
