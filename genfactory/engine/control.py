"""The job control loop: a thread beside a running job that makes the store's job control
real in this process.

Every `POLL_SECONDS` it reads the execution's stop request (written by `genfactory jobs stop`
from any process, or by Ctrl-C) into the runtime, so no new step starts; every `BEAT_SECONDS` it
writes the heartbeat (a job whose heartbeat is older than `STALE_AFTER_SECONDS` belongs to a dead
worker, on any host) and adds the providers' usage counters to the store.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from genfactory.engine.runtime import JobRuntime
from genfactory.storage import repository

logger = logging.getLogger("genfactory.control")

POLL_SECONDS = 1.0
BEAT_SECONDS = 5.0
STALE_AFTER_SECONDS = 60.0


class JobControl:
    """Start with `start()`, end with `stop()` (or as a context manager)."""

    def __init__(
        self,
        runtime: JobRuntime,
        *,
        external_stop: Callable[[], str | None] | None = None,
        poll_seconds: float = POLL_SECONDS,
        beat_seconds: float = BEAT_SECONDS,
    ) -> None:
        self.runtime = runtime
        #: Another source of stop requests (the Prefect UI's cancel), checked each beat.
        self.external_stop = external_stop
        self.poll_seconds = poll_seconds
        self.beat_seconds = beat_seconds
        self._done = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name=f"job-control-{runtime.execution_id}", daemon=True
        )

    def __enter__(self) -> JobControl:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        self.check_once(beat=True)

    def check_once(self, *, beat: bool) -> None:
        """One look at the store (and, with `beat`, a heartbeat and a usage flush)."""
        execution_id = self.runtime.execution_id
        try:
            _status, reason = repository.job_control(execution_id, beat=beat)
            if reason:
                self.runtime.stop(reason, by_user=True)
            if beat:
                self.runtime.flush_usage()
                if self.external_stop is not None and self.runtime.stop_reason is None:
                    external = self.external_stop()
                    if external:
                        repository.request_stop(execution_id, external)
                        self.runtime.stop(external, by_user=True)
        except Exception as exc:  # the store may be busy; the next round tries again
            logger.debug("job control of %s: %s", execution_id, exc)

    def _loop(self) -> None:
        last_beat = 0.0
        while not self._done.wait(self.poll_seconds):
            now = time.monotonic()
            beat = now - last_beat >= self.beat_seconds
            if beat:
                last_beat = now
            self.check_once(beat=beat)
