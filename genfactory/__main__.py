"""`python -m genfactory`: the `genfactory` command."""

from genfactory.cli import main

main()
