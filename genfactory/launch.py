"""The `genfactory` console script and `python -m genfactory`."""

from __future__ import annotations


def main() -> None:
    """Run the command line, the garbage collector paused while it imports (`startup`)."""
    from genfactory.startup import pause_collection

    pause_collection()
    from genfactory.cli import main as cli_main

    cli_main()
