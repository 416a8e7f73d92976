"""The process pool heavy image work runs in (`run_in_pool`).

The file edge of processing (`genfactory.tasks.image_files`) and model inference of the local
engines are top-level functions taking plain values, so `run_in_pool` can ship them to a worker
process. Pillow holds the GIL for much of its work, so threads alone would not use more than
one core: the pool does.

The pool uses the "forkserver" start method (or "spawn" where that is missing): the caller
runs Prefect and threads, and forking a threaded process can copy a held lock into the child.
``GENFACTORY_PROCESS_POOL=0`` runs everything inline, for debugging and tests.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.context import BaseContext
from typing import Any, TypeVar

from PIL import Image

from genfactory.errors import ImageRejected

T = TypeVar("T")

POOL_ENV = "GENFACTORY_PROCESS_POOL"

#: Imported once by the fork server, so every worker starts with them loaded.
PRELOAD = [__name__, "genfactory.processing", "genfactory.config"]

_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()


def pool_enabled() -> bool:
    """False when GENFACTORY_PROCESS_POOL is 0/false/no/off: work then runs inline."""
    return os.environ.get(POOL_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def pool_size() -> int:
    """One worker per CPU this process may run on (the affinity mask, where there is one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _worker_init() -> None:
    # Ctrl-C in a terminal reaches the whole process group: the parent turns it into a
    # graceful stop, so a worker finishes its image instead of sending KeyboardInterrupt back
    # through the future (which Prefect would take for an abort of the whole flow).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Our own max_pixels check runs on the header of every image; Pillow's warning for images
    # above its global default would only repeat it, in a worker's stderr.
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)


def _get_pool() -> ProcessPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            context: BaseContext
            if "forkserver" in multiprocessing.get_all_start_methods():
                forkserver = multiprocessing.get_context("forkserver")
                # The fork server imports the processing code once; every worker forked from
                # it starts with Pillow and numpy loaded instead of importing them again.
                forkserver.set_forkserver_preload(PRELOAD)
                context = forkserver
            else:
                context = multiprocessing.get_context("spawn")
            _pool = ProcessPoolExecutor(
                max_workers=pool_size(), mp_context=context, initializer=_worker_init
            )
        return _pool


def _discard_pool(broken: ProcessPoolExecutor) -> None:
    global _pool
    with _pool_lock:
        if _pool is broken:
            _pool = None
    broken.shutdown(wait=False, cancel_futures=True)


def shutdown_pool() -> None:
    """Stop the workers after the running calls; queued calls get CancelledError.

    The next `run_in_pool` starts a new pool.
    """
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


def _ready(pause: float) -> int:
    time.sleep(pause)
    return os.getpid()


def warm_pool(timeout: float = 60.0) -> int:
    """Start every worker process now; returns how many answered (0 when running inline).

    Optional: the pool starts lazily, but then the first images pay for process start-up.
    """
    if not pool_enabled():
        return 0
    pool = _get_pool()
    size = pool_size()
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    # Workers start on demand and an early one may take every task of a round, so repeat
    # short rounds of concurrent calls until each worker has answered.
    while len(seen) < size and time.monotonic() < deadline:
        futures = [pool.submit(_ready, 0.05) for _ in range(size)]
        seen.update(future.result() for future in futures)
    return len(seen)


def run_in_pool(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` in the process pool and return its result, blocking this thread.

    Call it from worker threads, never from an event loop. ``fn`` and the arguments must
    pickle: a top-level function of an importable module (not ``__main__``: the workers do
    not import it) and plain values. Exceptions raised by ``fn`` are re-raised here. If a
    worker process dies (out of memory, a crashing decoder), the pool is replaced and the
    call tried once more; a second death raises ImageRejected.
    """
    if not pool_enabled():
        return fn(*args)
    pool = _get_pool()
    try:
        return pool.submit(fn, *args).result()
    except BrokenProcessPool:
        _discard_pool(pool)
        return _once_more(fn, *args)


def map_in_pool(fn: Callable[..., T], calls: Sequence[tuple[Any, ...]]) -> list[T | Exception]:
    """`run_in_pool` for several independent calls at once: all are submitted together, so the
    workers run them side by side and the caller waits for the queue once, not once per call.
    Returns each call's result or the exception it raised, in the order of `calls`. A worker
    death is handled per call as in `run_in_pool` (the pool replaced, the call tried once more).
    """
    if not pool_enabled():
        return [_outcome(fn, *args) for args in calls]
    pool = _get_pool()
    futures: list[Future[T] | None] = []
    for args in calls:
        try:
            futures.append(pool.submit(fn, *args))
        except BrokenProcessPool:
            futures.append(None)
    results: list[T | Exception] = []
    for args, future in zip(calls, futures, strict=True):
        try:
            if future is None:
                raise BrokenProcessPool
            results.append(future.result())
        except BrokenProcessPool:
            _discard_pool(pool)
            results.append(_outcome(_once_more, fn, *args))
        except Exception as exc:
            results.append(exc)
    return results


def _outcome(fn: Callable[..., T], *args: Any) -> T | Exception:
    try:
        return fn(*args)
    except Exception as exc:
        return exc


def _once_more(fn: Callable[..., T], *args: Any) -> T:
    """The second try of a call whose worker died, in a new pool; a second death raises
    ImageRejected."""
    pool = _get_pool()
    try:
        return pool.submit(fn, *args).result()
    except BrokenProcessPool:
        _discard_pool(pool)
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
