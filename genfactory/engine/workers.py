"""The pool's worker processes and the calling side of their pipes (`WorkerPool`).

Each worker has a pipe of its own, and the calling thread talks to it directly: it takes an
idle worker, sends the pickled call, and reads the answer itself. `concurrent.futures`'
ProcessPoolExecutor routes every call through a manager thread and a feeder thread instead,
which woke for each call and answer (0.19 against 0.055 ms of the caller's CPU per call from
32 threads; benchmarks/README.md). A worker whose parent died reads the end of its pipe and
exits. `engine.pool` holds the process's one `WorkerPool` and the calls the steps make.
"""

from __future__ import annotations

import contextlib
import pickle
import queue
import signal
import threading
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

T = TypeVar("T")

#: How long a worker may take to exit after its pipe closed before it is killed.
EXIT_WAIT = 5.0

#: Put in the idle queue when a worker's place falls vacant (it died, or did not start): a
#: thread waiting for a worker wakes and starts one in that place.
_VACANT = object()


class WorkerDied(Exception):
    """The worker of a call died (or its pipe broke) before answering."""


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker, as its `__cause__` (as
    `concurrent.futures` gives it)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return self.text


# -- the worker's side -------------------------------------------------------------------------


def _worker_init() -> None:
    # Ctrl-C in a terminal reaches the whole process group: the parent turns it into a
    # graceful stop, so a worker finishes its image instead of dying under it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Our own max_pixels check runs on the header of every image; Pillow's warning for images
    # above its global default would only repeat it, in a worker's stderr.
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)


def _failure(exc: BaseException) -> tuple[bool, Any, str]:
    return False, exc, "".join(traceback.format_exception(exc))


def serve(conn: Connection) -> None:
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


def _loaded(data: bytes) -> tuple[bool, Any]:
    """(ok, result or exception) from a worker's answer; an exception carries the worker's
    traceback as its cause."""
    try:
        ok, value, trace = pickle.loads(data)
    except Exception as exc:
        return False, RuntimeError(f"an answer of the process pool did not load: {exc}")
    if not ok and isinstance(value, BaseException) and trace:
        value.__cause__ = RemoteTraceback(trace)
    return ok, value


# -- the calling side --------------------------------------------------------------------------


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


class WorkerPool:
    """Up to `size` workers, started on demand; a calling thread takes an idle one, or waits
    for one, for each call. A worker is only ever in one thread's hands, from `_take` until it
    is given back (its answer read) or lost (dead, or its answer left unread)."""

    def __init__(self, context: BaseContext, size: int) -> None:
        self._context = context
        self._size = size
        self._idle: queue.SimpleQueue[Any] = queue.SimpleQueue()  # workers, _VACANT, None
        self._lock = threading.Lock()
        self._workers: set[_Worker] = set()
        self._count = 0  # started or starting
        self._closed = False

    def call(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        """`fn(*args)` on a worker: its result, or the exception it raised; `WorkerDied`
        when the worker died first."""
        payload = ForkingPickler.dumps((fn, args))  # a value that does not pickle raises here
        worker = self._take()
        assert worker is not None
        self._send(worker, payload)
        ok, value = self._receive(worker)
        if ok:
            return cast(T, value)
        raise value

    def map(self, fn: Callable[..., T], calls: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Each call's result, the exception it raised, or a `WorkerDied`, in order: the calls
        go to as many workers as are idle (or can start), the rest to the first to answer."""
        results: list[Any] = [None] * len(calls)
        pending = list(range(len(calls)))[::-1]
        busy: dict[Connection, tuple[_Worker, int]] = {}
        try:
            while pending or busy:
                self._dispatch(fn, calls, pending, busy, results)
                if busy:
                    for ready in wait(list(busy)):
                        worker, index = busy.pop(cast(Connection, ready))
                        answer = self._unless_died(self._receive, worker)
                        results[index] = answer if isinstance(answer, WorkerDied) else answer[1]
        except BaseException:
            for worker, _index in busy.values():
                self.lost(worker)  # answers nobody will read would confuse their next calls
            raise
        return results

    def _dispatch(
        self,
        fn: Callable[..., Any],
        calls: Sequence[tuple[Any, ...]],
        pending: list[int],
        busy: dict[Connection, tuple[_Worker, int]],
        results: list[Any],
    ) -> None:
        """Send pending calls (the last first) to workers while one is free, or (with nothing
        in flight) the next to be; a call that cannot be sent gets its error as its result."""
        while pending:
            index = pending[-1]
            try:
                payload = ForkingPickler.dumps((fn, calls[index]))
                worker = self._take(block=not busy)
            except CancelledError as exc:  # shut down: the calls not sent are not run
                for rest in pending:
                    results[rest] = exc
                pending.clear()
                return
            except Exception as exc:  # it does not pickle, or no worker could start
                results[pending.pop()] = exc
                continue
            if worker is None:
                return
            pending.pop()
            sent = self._unless_died(self._send, worker, payload)
            if sent is None:
                busy[worker.conn] = (worker, index)
            else:
                results[index] = sent

    @staticmethod
    def _unless_died(step: Callable[..., Any], *args: Any) -> Any:
        """What `step` returns, or the `WorkerDied` it raises."""
        try:
            return step(*args)
        except WorkerDied as exc:
            return exc

    def _send(self, worker: _Worker, payload: bytes | memoryview) -> None:
        """Send a pickled call to `worker` (in this thread's hands). A broken pipe loses it
        (`WorkerDied`), and so does a send cut short (Ctrl-C)."""
        try:
            worker.conn.send_bytes(payload)
        except OSError:
            self.lost(worker)
            raise WorkerDied from None
        except BaseException:
            self.lost(worker)
            raise

    def _receive(self, worker: _Worker) -> tuple[bool, Any]:
        """The answer to the call sent to `worker`: (ok, result or exception). The worker is
        given back once its answer is read, and lost if it died (`WorkerDied`) or the wait was
        cut short: an answer nobody read would be taken for the next call's."""
        answered = False
        try:
            data = worker.conn.recv_bytes()
            answered = True
        except (EOFError, OSError):
            raise WorkerDied from None
        finally:
            if answered:
                self.give(worker)
            else:
                self.lost(worker)
        return _loaded(data)

    def _take(self, block: bool = True) -> _Worker | None:
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
        """A new worker, in a place `_take` has counted."""
        try:
            parent, child = self._context.Pipe(duplex=True)
        except BaseException:
            self._vacate()
            raise
        try:
            process = self._context.Process(  # type: ignore[attr-defined]
                target=serve, args=(child,), name="genfactory-pool", daemon=True
            )
            process.start()
        except BaseException:
            parent.close()
            self._vacate()
            raise
        finally:
            # Only the worker holds its end now: when it dies, the parent's reads see the end.
            child.close()
        worker = _Worker(process, parent)
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
        self.lost(worker, EXIT_WAIT)

    def lost(self, worker: _Worker, wait_seconds: float = 0.0) -> None:
        """A worker that died, whose answer was left unread, or that a shut-down pool no
        longer needs: stop and reap it; its place is free again."""
        with self._lock:
            known = worker in self._workers
            self._workers.discard(worker)
        if known:
            self._vacate()
        worker.retire(wait_seconds)

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
                self.lost(item, EXIT_WAIT)
        self._idle.put(None)  # wakes a waiting caller, which wakes the next
        # The busy ones are stopped by their callers as they answer (`give`): wait for them,
        # as long as their calls take.
        for worker in workers:
            worker.process.join()
