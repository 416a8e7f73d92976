"""genfactory as a service: the local Prefect server (`server start|stop|status`), `serve`
(the deployments of prefect.yaml, from this process), and `settings` (the settings template)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from genfactory.cli.app import app, console, err_console, fail, guarded
from genfactory.config import settings_template
from genfactory.engine import server

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
    code = serving.serve(
        deployments,
        limit,
        lambda line: err_console.print(escape(line), highlight=False),
        # Said once the deployments exist in the API: a run started after the line is found.
        lambda: console.print(
            f"Serving {names} (API {api_url}); Ctrl-C stops.", highlight=False, soft_wrap=True
        ),
    )
    console.print("Stopped serving.")
    raise typer.Exit(code)


@app.command("settings")
def settings_cmd() -> None:
    """Print every setting with its default, as a TOML settings file."""
    console.print(settings_template(), markup=False, highlight=False, soft_wrap=True)
