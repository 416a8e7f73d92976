"""The `genfactory` command line (Typer + Rich): `app` and the entry point `main` (`cli.app`);
the commands, registered in the order `--help` lists them: `cli.run` (run, resume),
`cli.inspection` (jobs, images, stats), `cli.serving` (server, serve, settings) and
`cli.manage` (export, retry, rerun, clean...). `cli.job_runner` runs a job in the foreground,
`cli.output` prints JSON and costs."""

import importlib

from genfactory.cli.app import app, main

COMMAND_MODULES = ("run", "inspection", "serving", "manage")

for _name in COMMAND_MODULES:
    importlib.import_module(f"genfactory.cli.{_name}")

__all__ = ["app", "main"]
