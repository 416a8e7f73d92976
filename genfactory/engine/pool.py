"""The process pool heavy image work runs in (`run_in_pool`).

The file edge of processing (`genfactory.tasks.image_files`) and model inference of the local
engines are top-level functions taking plain values, so `run_in_pool` can ship them to a worker
process. Pillow holds the GIL for much of its work, so threads alone would not use more than
one core: the pool does. Its workers and their pipes are `engine.workers`.

The workers start from a fork server (or "spawn" where that is missing): the caller runs
Prefect and threads, and forking a threaded process can copy a held lock into the child.
``GENFACTORY_PROCESS_POOL=0`` runs everything inline, for debugging and tests.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.context import BaseContext
from typing import Any, TypeVar

from genfactory.engine.workers import WorkerDied, WorkerPool
from genfactory.errors import ImageRejected

T = TypeVar("T")

POOL_ENV = "GENFACTORY_PROCESS_POOL"

#: Imported once by the fork server, so every worker starts with them loaded.
PRELOAD = ["genfactory.engine.workers", __name__, "genfactory.processing", "genfactory.config"]


def pool_enabled() -> bool:
    """False when GENFACTORY_PROCESS_POOL is 0/false/no/off: work then runs inline."""
    return os.environ.get(POOL_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def pool_size() -> int:
    """One worker per CPU this process may run on (the affinity mask, where there is one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


_pool: WorkerPool | None = None
_pool_lock = threading.Lock()


def _context() -> BaseContext:
    if "forkserver" in multiprocessing.get_all_start_methods():
        forkserver = multiprocessing.get_context("forkserver")
        # The fork server imports the processing code once; every worker forked from it
        # starts with Pillow and numpy loaded instead of importing them again.
        forkserver.set_forkserver_preload(PRELOAD)
        return forkserver
    return multiprocessing.get_context("spawn")


def _get_pool() -> WorkerPool:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = WorkerPool(_context(), pool_size())
        return _pool


def shutdown_pool() -> None:
    """Stop the workers after the running calls; calls waiting for a worker get
    CancelledError. The next `run_in_pool` starts a new pool."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown()


atexit.register(shutdown_pool)


def _ready(pause: float) -> int:
    time.sleep(pause)
    return os.getpid()


def warm_pool(timeout: float = 60.0) -> int:
    """Start every worker process now; returns how many answered (0 when running inline).

    Optional: the pool starts lazily, but then the first images pay for process start-up.
    """
    if not pool_enabled():
        return 0
    size = pool_size()
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < size and time.monotonic() < deadline:
        # Side by side, each call holds its worker, so `size` calls reach `size` workers.
        seen.update(r for r in _get_pool().map(_ready, [(0.05,)] * size) if isinstance(r, int))
    return len(seen)


def run_in_pool(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` in the process pool and return its result, blocking this thread.

    Call it from worker threads, never from an event loop. ``fn`` and the arguments must
    pickle: a top-level function of an importable module (not ``__main__``: the workers do
    not import it) and plain values. Exceptions raised by ``fn`` are re-raised here. If a
    worker process dies (out of memory, a crashing decoder), a new one takes its place and
    the call is tried once more; a second death raises ImageRejected.
    """
    if not pool_enabled():
        return fn(*args)
    try:
        return _get_pool().call(fn, args)
    except WorkerDied:
        return _once_more(fn, *args)


def map_in_pool(fn: Callable[..., T], calls: Sequence[tuple[Any, ...]]) -> list[T | Exception]:
    """`run_in_pool` for several independent calls at once: they go to the workers side by
    side, and the caller waits for them together, not one after another. Returns each call's
    result or the exception it raised, in the order of `calls`. A worker death is handled per
    call as in `run_in_pool` (a new worker, the call tried once more)."""
    if not pool_enabled():
        return [_outcome(fn, *args) for args in calls]
    results = _get_pool().map(fn, calls)
    return [
        _outcome(_once_more, fn, *args) if isinstance(result, WorkerDied) else result
        for args, result in zip(calls, results, strict=True)
    ]


def _outcome(fn: Callable[..., T], *args: Any) -> T | Exception:
    try:
        return fn(*args)
    except Exception as exc:
        return exc


def _once_more(fn: Callable[..., T], *args: Any) -> T:
    """The second try of a call whose worker died, on another worker; a second death raises
    ImageRejected."""
    try:
        return _get_pool().call(fn, args)
    except WorkerDied:
        raise ImageRejected(
            "image processing killed its worker process twice (out of memory?)"
        ) from None


__all__ = [
    "POOL_ENV",
    "map_in_pool",
    "pool_enabled",
    "pool_size",
    "run_in_pool",
    "shutdown_pool",
    "warm_pool",
]
