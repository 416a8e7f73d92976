"""The process pool heavy image work runs in (`run_in_pool`).

The file edge of processing (`genfactory.tasks.image_files`) and model inference of the local
engines are top-level functions taking plain values, so `run_in_pool` can ship them to a worker
process. Pillow holds the GIL for much of its work, so threads alone would not use more than
one core: the pool does.

Each worker has a pipe of its own, and the calling thread talks to it directly: it takes an
idle worker, sends the call, and waits for the answer on the pipe. `concurrent.futures`'
ProcessPoolExecutor routes every call through a manager thread and a feeder thread instead,
which cost the job process about 16 % of its GIL time at 32 slots (about 4 calls per image,
each waking both threads; benchmarks/README.md), time every slot thread then waited for.

The workers start from a fork server (or "spawn" where that is missing): the caller runs
Prefect and threads, and forking a threaded process can copy a held lock into the child. A
worker whose parent died reads the end of its pipe and exits. ``GENFACTORY_PROCESS_POOL=0``
runs everything inline, for debugging and tests.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import os
import pickle
import queue
import signal
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from multiprocessing.reduction import ForkingPickler
from typing import Any, TypeVar, cast

from PIL import Image

from genfactory.errors import ImageRejected

T = TypeVar("T")

POOL_ENV = "GENFACTORY_PROCESS_POOL"

#: Imported once by the fork server, so every worker starts with them loaded.
PRELOAD = [__name__, "genfactory.processing", "genfactory.config"]

#: How long `shutdown_pool` waits for a worker to exit after its pipe closed.
_EXIT_WAIT = 5.0


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
    # graceful stop, so a worker finishes its image instead of dying under it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Our own max_pixels check runs on the header of every image; Pillow's warning for images
    # above its global default would only repeat it, in a worker's stderr.
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)


class _RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker, as its `__cause__` (as
    `concurrent.futures` gives it)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return self.text


def _failure(exc: BaseException) -> tuple[bool, Any, str]:
    return False, exc, "".join(traceback.format_exception(exc))


def _serve(conn: Connection) -> None:
    """A worker's life: answer each call on `conn` with (True, result, "") or (False, the
    exception, its traceback), until the parent sends None or its end of the pipe closes (it
    exited or died)."""
    _worker_init()
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return
        fn: Any = None
        try:
            message = pickle.loads(data)
            if message is None:
                return
            fn, args = message
            reply: tuple[bool, Any, str] = (True, fn(*args), "")
        except BaseException as exc:  # SystemExit too: the caller gets it, the worker lives
            reply = _failure(exc)
        try:
            payload = ForkingPickler.dumps(reply)
        except Exception as exc:  # a result or an exception that does not pickle
            name = getattr(fn, "__name__", repr(fn))
            payload = ForkingPickler.dumps(
                _failure(RuntimeError(f"{name}: {exc.__class__.__name__}: {exc}"))
            )
        try:
            conn.send_bytes(payload)
        except OSError:
            return


@dataclass(eq=False)
class _Worker:
    process: BaseProcess
    conn: Connection

    def retire(self, wait_seconds: float = 0.0) -> None:
        """Close its pipe (it exits on reading the end), then reap it; kill it if it is still
        there after `wait_seconds`."""
        with contextlib.suppress(OSError):
            self.conn.close()
        self.process.join(wait_seconds)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(1.0)


class _WorkerDied(Exception):
    """The worker of a call died (or its pipe broke) before answering."""


#: Put in the idle queue when a worker's place falls vacant (it died, or did not start): a
#: thread waiting for a worker wakes and starts one in that place.
_VACANT = object()


class _Pool:
    """Up to `size` workers, started on demand; a calling thread takes an idle one, or waits
    for one, for each call. A worker is only ever in one thread's hands, from `take` until it
    is given back (its answer read) or lost (dead, or its answer left unread)."""

    def __init__(self, context: BaseContext, size: int) -> None:
        self._context = context
        self._size = size
        self._idle: queue.SimpleQueue[Any] = queue.SimpleQueue()  # workers, _VACANT, None
        self._lock = threading.Lock()
        self._workers: set[_Worker] = set()
        self._count = 0  # started or starting
        self._closed = False

    def _start_worker(self) -> _Worker:
        parent, child = self._context.Pipe(duplex=True)
        try:
            process = self._context.Process(  # type: ignore[attr-defined]
                target=_serve, args=(child,), name="genfactory-pool", daemon=True
            )
            process.start()
        finally:
            # Only the worker holds its end now: when it dies, the parent's reads see the end.
            child.close()
        return _Worker(process, parent)

    def take(self, block: bool = True) -> _Worker | None:
        """An idle worker, a new one while fewer than `size` exist, or (with `block`) the next
        one given back; None without `block` when there is none. CancelledError once the pool
        is shut down."""
        while True:
            try:
                item = self._idle.get_nowait()
            except queue.Empty:
                with self._lock:
                    if self._closed:
                        raise CancelledError("the process pool was shut down") from None
                    start = self._count < self._size
                    if start:
                        self._count += 1
                if start:
                    return self._started()
                if not block:
                    return None
                item = self._idle.get()
            if item is None:  # shut down: wake the next waiter too
                self._idle.put(None)
                raise CancelledError("the process pool was shut down")
            if item is not _VACANT:
                return cast(_Worker, item)

    def _started(self) -> _Worker:
        """A new worker, in a place `take` has counted."""
        try:
            worker = self._start_worker()
        except BaseException:
            self._vacate()
            raise
        with self._lock:
            self._workers.add(worker)
        return worker

    def _vacate(self) -> None:
        """One place fewer taken: a waiting thread may start a worker in it."""
        with self._lock:
            self._count -= 1
            if not self._closed:
                self._idle.put(_VACANT)

    def give(self, worker: _Worker) -> None:
        """Hand a worker back after a call it answered."""
        # Under the lock `shutdown` closes the pool with: a worker given back is either in
        # the queue it drains, or retired here.
        with self._lock:
            if not self._closed:
                self._idle.put(worker)
                return
        self.lost(worker, _EXIT_WAIT)

    def lost(self, worker: _Worker, wait_seconds: float = 0.0) -> None:
        """A worker that died, whose answer was left unread, or that a shut-down pool no
        longer needs: stop and reap it; its place is free again."""
        with self._lock:
            known = worker in self._workers
            self._workers.discard(worker)
        if known:
            self._vacate()
        worker.retire(wait_seconds)

    def _exchange(self, worker: _Worker, payload: bytes | memoryview) -> tuple[bool, Any]:
        """Send a pickled call to `worker` (taken by this thread) and read its answer; the
        worker is given back, or lost if it died or anything cut the exchange short (Ctrl-C):
        an answer nobody read would be taken for the next call's. (ok, result or exception)."""
        answered = False
        try:
            try:
                worker.conn.send_bytes(payload)
                data = worker.conn.recv_bytes()
            except (EOFError, OSError):
                raise _WorkerDied from None
            answered = True
            self.give(worker)
        finally:
            if not answered:
                self.lost(worker)
        return _loaded(data)

    def call(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        """`fn(*args)` on a worker: its result, or the exception it raised; `_WorkerDied`
        when the worker died first."""
        payload = ForkingPickler.dumps((fn, args))  # a value that does not pickle raises here
        worker = self.take()
        assert worker is not None
        ok, value = self._exchange(worker, payload)
        if ok:
            return cast(T, value)
        raise value

    def map(self, fn: Callable[..., T], calls: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Each call's result, the exception it raised, or a `_WorkerDied`, in order: the calls
        go to as many workers as are idle (or can start), the rest to the first to answer."""
        results: list[Any] = [None] * len(calls)
        pending = list(range(len(calls)))[::-1]
        busy: dict[Connection, tuple[_Worker, int]] = {}
        try:
            while pending or busy:
                while pending:
                    index = pending[-1]
                    try:
                        payload = ForkingPickler.dumps((fn, calls[index]))
                    except Exception as exc:
                        results[pending.pop()] = exc
                        continue
                    try:
                        worker = self.take(block=not busy)
                    except CancelledError as exc:  # shut down: the calls not sent are not run
                        for rest in pending:
                            results[rest] = exc
                        pending.clear()
                        break
                    if worker is None:
                        break
                    pending.pop()
                    try:
                        worker.conn.send_bytes(payload)
                    except OSError:
                        self.lost(worker)
                        results[index] = _WorkerDied()
                        continue
                    except BaseException:
                        self.lost(worker)
                        raise
                    busy[worker.conn] = (worker, index)
                if not busy:
                    continue
                for ready in wait(list(busy)):
                    worker, index = busy[cast(Connection, ready)]
                    try:
                        data = worker.conn.recv_bytes()
                    except (EOFError, OSError):
                        del busy[worker.conn]
                        self.lost(worker)
                        results[index] = _WorkerDied()
                        continue
                    del busy[worker.conn]
                    self.give(worker)
                    results[index] = _loaded(data)[1]
        except BaseException:
            for worker, _index in busy.values():
                self.lost(worker)  # answers nobody will read would confuse their next calls
            raise
        return results

    def shutdown(self) -> None:
        """Refuse new calls (waiting ones get CancelledError) and stop every worker once its
        running call has answered."""
        with self._lock:
            self._closed = True
            workers = set(self._workers)
        while True:
            try:
                item = self._idle.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Worker):
                self.lost(item, _EXIT_WAIT)
        self._idle.put(None)  # wakes a waiting caller, which wakes the next
        # The busy ones are stopped by their callers as they answer (`give`): wait for them,
        # as long as their calls take.
        for worker in workers:
            worker.process.join()


def _loaded(data: bytes) -> tuple[bool, Any]:
    """(ok, result or exception) from a worker's answer; an exception carries the worker's
    traceback as its cause."""
    try:
        ok, value, trace = pickle.loads(data)
    except Exception as exc:
        return False, RuntimeError(f"an answer of the process pool did not load: {exc}")
    if not ok and isinstance(value, BaseException) and trace:
        value.__cause__ = _RemoteTraceback(trace)
    return ok, value


_pool: _Pool | None = None
_pool_lock = threading.Lock()


def _context() -> BaseContext:
    if "forkserver" in multiprocessing.get_all_start_methods():
        forkserver = multiprocessing.get_context("forkserver")
        # The fork server imports the processing code once; every worker forked from it
        # starts with Pillow and numpy loaded instead of importing them again.
        forkserver.set_forkserver_preload(PRELOAD)
        return forkserver
    return multiprocessing.get_context("spawn")


def _get_pool() -> _Pool:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = _Pool(_context(), pool_size())
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
    except _WorkerDied:
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
        _outcome(_once_more, fn, *args) if isinstance(result, _WorkerDied) else result
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
    except _WorkerDied:
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
