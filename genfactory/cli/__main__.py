"""`python -m genfactory.cli`: the `genfactory` command, started as the console script is."""

from genfactory.launch import main

main()
