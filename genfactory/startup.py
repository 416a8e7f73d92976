"""A command's start-up: the cyclic garbage collector waits while the command imports its
modules (Prefect, SQLAlchemy, pydantic, NumPy: about 280,000 objects it tracks, nearly all kept
to the end). Full collections walked them again and again as they were made, about 0.4 s of a
3.5 s import on a slow VM (benchmarks/README.md). Reference counting frees everything else
meanwhile; the few cycles left unfreed (about 7,000 objects) are collected once the job ends."""

from __future__ import annotations

import gc

_paused = False


def pause_collection() -> None:
    """Turn the cyclic collector off until `resume_collection` (the console script's first
    step)."""
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def resume_collection() -> None:
    """Turn the collector back on if `pause_collection` turned it off; otherwise nothing.
    A job calls it when its slots start, every other command before it runs."""
    global _paused
    if _paused:
        _paused = False
        gc.enable()
