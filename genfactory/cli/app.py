"""The `genfactory` Typer app and its sub-apps (`jobs`, `images`), the consoles, the entry
point, and how errors become one sentence: user mistakes exit with code 2, never a traceback."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from genfactory.errors import GenfactoryError, UserError
from genfactory.startup import resume_collection

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


#: Commands that run a job here: the job turns the garbage collector back on when its slots
#: start (`startup`), after its last imports.
JOB_COMMANDS = ("run", "resume")


@app.callback()
def _main_options(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_show_version, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """genfactory: keywords in, finished and sellable AI-generated images out."""
    if ctx.invoked_subcommand not in JOB_COMMANDS:
        resume_collection()


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
    except UserError as exc:  # repository.NotFound too ("job 12 does not exist")
        raise fail(str(exc)) from None
    except GenfactoryError as exc:
        raise fail(str(exc), code=1) from None


# ---------------------------------------------------------------------------------------------
# run


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
