"""`python -m genfactory.cli`."""

from genfactory.cli import main

main()
