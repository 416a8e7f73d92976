"""`genfactory run` and `genfactory resume` (and `run --dry-run`: the plan and its cost)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from genfactory.cli.app import app, console, guarded
from genfactory.cli.job_runner import exit_code, print_summary, quiet_console_logs, run_job
from genfactory.config import load_settings, parse_set_option
from genfactory.engine import server
from genfactory.errors import UserError


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
        quiet_console_logs()
    summary = run_job(api_url, lambda flows: flows.generate_job(settings, return_state=True))
    print_summary(summary)
    raise typer.Exit(exit_code(summary))


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
        quiet_console_logs()
    summary = run_job(api_url, lambda flows: flows.resume_job(job_id, return_state=True))
    print_summary(summary)
    raise typer.Exit(exit_code(summary))


def _dry_run(settings: Any) -> None:
    """`run --dry-run`: the checks of a run that create nothing, then the plan and its cost."""
    from genfactory import pricing, prompting
    from genfactory.config import Credentials
    from genfactory.providers.registry import (
        check_credentials,
        check_prompt_template,
        images_per_slot,
    )

    check_credentials(settings, Credentials.from_env())
    # The template check of a real run: a dry run must not pass a template `run` refuses.
    plans = prompting.plan_job_slots(settings, lambda t: check_prompt_template(settings, t))
    slots = len(plans)
    calls = pricing.planned_calls(settings, slots)
    table = Table(title="Dry run: what this job would do (nothing was created or sent)")
    table.add_column("service")
    table.add_column("calls at most (first tries)")
    table.add_column("estimated cost", justify="right")
    for row in pricing.cost_rows(settings, calls):
        table.add_row(*row)
    console.print(f"slots {slots}, images {slots * images_per_slot(settings)}", highlight=False)
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
