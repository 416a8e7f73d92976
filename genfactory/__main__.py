"""`python -m genfactory`: the `genfactory` command."""

from genfactory.launch import main

main()
