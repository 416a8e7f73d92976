"""The file edge of image processing, and the process pool it runs in.

`prepare_file` and `finish_to_file` read files, run `genfactory.processing` and write the
result; they are top-level functions taking plain values, so `run_in_pool` can ship them to
a worker process. Pillow holds the GIL for much of its work, so threads alone would not use
more than one core: the pool does.

The pool uses the "forkserver" start method (or "spawn" where that is missing): the caller
runs Prefect and threads, and forking a threaded process can copy a held lock into the child.
``GENFACTORY_PROCESS_POOL=0`` runs everything inline, for debugging and tests.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any, TypeVar

from PIL import Image

from genfactory.config import ProcessingSection
from genfactory.errors import ImageRejected
from genfactory.processing import (
    EXTENSIONS,
    Stage,
    embed_metadata,
    encode,
    open_image,
    perceptual_hash,
    process_image,
)
from genfactory.tasks.files import safe_name, write_atomically, write_replacing

T = TypeVar("T")

POOL_ENV = "GENFACTORY_PROCESS_POOL"

_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()


# ---------------------------------------------------------------------------------------------
# The pool


def pool_enabled() -> bool:
    """False when GENFACTORY_PROCESS_POOL is 0/false/no/off: work then runs inline."""
    return os.environ.get(POOL_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def pool_size() -> int:
    """One worker per CPU this process may run on (the affinity mask, where there is one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _worker_init() -> None:
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
                forkserver.set_forkserver_preload([__name__])
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
    for attempt in (1, 2):
        pool = _get_pool()
        try:
            future: Future[T] = pool.submit(fn, *args)
            return future.result()
        except BrokenProcessPool:
            _discard_pool(pool)
            if attempt == 2:
                raise ImageRejected(
                    "image processing killed its worker process twice (out of memory?)"
                ) from None
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------------------------
# File edge: functions that run inside the pool


def _read(src: str) -> bytes:
    try:
        return Path(src).read_bytes()
    except FileNotFoundError:
        raise ImageRejected(f"image file {src} does not exist") from None
    except IsADirectoryError:
        raise ImageRejected(f"image path {src} is a directory, not a file") from None


def hash_file(src: str, max_pixels: int) -> int:
    """Perceptual hash of an image file as generated (before any processing)."""
    return perceptual_hash(open_image(_read(src), max_pixels=max_pixels))


def prepare_file(src: str, settings: dict[str, Any], max_pixels: int) -> bytes:
    """Decode the file at ``src``, run the "prepare" stage, return lossless PNG bytes.

    Used before background removal: the PNG keeps alpha and the ICC profile, and is encoded
    at the fastest zlib level since it only travels to the remover.
    """
    section = ProcessingSection.model_validate(settings)
    image = process_image(open_image(_read(src), max_pixels=max_pixels), section, stage="prepare")
    fast_png = section.model_copy(update={"png_quality": 100})
    return encode(image, "png", fast_png)


def finish_to_file(
    src: str | bytes, dst_dir: str, stem: str, settings: dict[str, Any], replace: bool = False
) -> dict[str, Any]:
    """Process an image and write it to ``dst_dir/stem.<ext>`` (ext from convert_format).

    ``src`` is a path (stages "prepare" and "finish" both run) or PNG bytes returned by
    background removal ("finish" only: they were prepared before removal). Existing files
    are never overwritten: a taken name gets ``-2``, ``-3``... before the extension (with
    ``replace``, for a file name only this image uses, the file of that name is replaced).
    Returns ``{"path", "width", "height", "format", "bytes"}``. (Near-duplicates are judged
    on the original: see `hash_file`.)
    """
    section = ProcessingSection.model_validate(settings)
    stage: Stage = "finish" if isinstance(src, bytes) else "all"
    data = src if isinstance(src, bytes) else _read(src)
    image = process_image(
        open_image(data, max_pixels=section.max_image_pixels), section, stage=stage
    )
    fmt = section.convert_format
    encoded = encode(image, fmt, section)
    write = write_replacing if replace else write_atomically
    path = write(Path(dst_dir), safe_name(stem, fallback="image"), EXTENSIONS[fmt], encoded)
    return {
        "path": str(path),
        "width": image.width,
        "height": image.height,
        "format": fmt,
        "bytes": len(encoded),
    }


def embed_file_metadata(path: str, title: str, description: str, keywords: list[str]) -> None:
    """Embed IPTC/XMP into the output file at ``path`` (runs in the calling thread)."""
    embed_metadata(Path(path), title=title, description=description, keywords=keywords)


__all__ = [
    "POOL_ENV",
    "embed_file_metadata",
    "finish_to_file",
    "pool_enabled",
    "pool_size",
    "prepare_file",
    "run_in_pool",
    "shutdown_pool",
    "warm_pool",
    "write_atomically",
]
