"""Per-execution runtime objects shared by the tasks of one job in this process.

Providers hold HTTP clients and usage counters; building them once per job (not per task)
keeps connections pooled. The runtime is rebuilt from the store's settings snapshot when a task
runs in a process that has not seen the job yet (another worker, a resume).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from genfactory.config import Credentials, Settings, validate_settings
from genfactory.errors import JobFatalError, JobStopped
from genfactory.logs import register_secrets
from genfactory.providers.base import Usage
from genfactory.providers.registry import ProviderContext, build_provider
from genfactory.statuses import JobStatus
from genfactory.storage import repository
from genfactory.tasks import imaging
from genfactory.tasks.common import describe_error
from genfactory.tasks.limits import make_limiter
from genfactory.tasks.secrets import load_credentials


@dataclass
class JobRuntime:
    execution_id: int
    settings: Settings
    context: ProviderContext
    _providers: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    #: Serialises the near-duplicate check so two similar images cannot both pass at once.
    dedupe_lock: threading.Lock = field(default_factory=threading.Lock)
    #: Set when the job must stop before spending more (bad key, no credits, user stop).
    stop_reason: str | None = None
    log_handler: logging.Handler | None = None

    def provider(self, role: str) -> Any:
        """The job's provider for `role`, built on first use."""
        with self._lock:
            if role not in self._providers:
                self._providers[role] = build_provider(role, self.context)
            return self._providers[role]

    def stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason

    def check(self) -> None:
        """Raise JobStopped once the job must not start more work."""
        if self.stop_reason:
            raise JobStopped(f"job stopped: {self.stop_reason}")

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """Around provider calls: a bad key or exhausted credits stops the whole job, before
        any other slot spends more."""
        try:
            yield
        except JobFatalError as exc:
            self.stop(describe_error(exc))
            raise

    def close(self) -> None:
        with self._lock:
            for provider in self._providers.values():
                close = getattr(provider, "close", None)
                if callable(close):
                    close()
            self._providers.clear()


_runtimes: dict[int, JobRuntime] = {}
_registry_lock = threading.Lock()


def start_runtime(
    execution_id: int, settings: Settings, credentials: Credentials | None = None
) -> JobRuntime:
    """Create (or replace) the runtime of an execution."""
    credentials = credentials or load_credentials(settings)
    register_secrets(credentials.secret_values())
    context = ProviderContext(
        settings=settings,
        credentials=credentials,
        usage=Usage(),
        limiter=make_limiter(settings),
        run_heavy=imaging.run_in_pool,
    )
    runtime = JobRuntime(execution_id=execution_id, settings=settings, context=context)
    with _registry_lock:
        _runtimes[execution_id] = runtime
    return runtime


def get_runtime(execution_id: int) -> JobRuntime:
    """The execution's runtime, rebuilt from its stored settings snapshot if needed."""
    with _registry_lock:
        runtime = _runtimes.get(execution_id)
    if runtime is not None:
        return runtime
    execution = repository.get_execution(execution_id)
    if execution.status != JobStatus.RUNNING:
        # A thread outliving its job (after a cancel or crash) must not spend more.
        raise JobStopped(f"job {execution_id} is {execution.status}")
    return start_runtime(execution_id, validate_settings(execution.settings_snapshot))


def peek_runtime(execution_id: int) -> JobRuntime | None:
    """The execution's runtime in this process, without building one."""
    with _registry_lock:
        return _runtimes.get(execution_id)


def release_runtime(execution_id: int) -> JobRuntime | None:
    """Close the execution's providers and forget its runtime."""
    with _registry_lock:
        runtime = _runtimes.pop(execution_id, None)
    if runtime is not None:
        runtime.close()
    return runtime
