"""Per-execution runtime objects shared by the tasks of one job in this process.

Providers hold HTTP clients; building them once per job (not per task) keeps connections
pooled. What other processes must see lives in the store, not here: the stop request (mirrored
into `stop_reason` by `engine.control.JobControl`), the usage counters (this runtime only keeps
what it has not yet added to the store) and the near-duplicate approval lock
(`repository.approve_image`). The runtime is rebuilt from the store's settings snapshot when a
task runs in a process that has not seen the job yet (another worker, a resume).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from genfactory import pricing
from genfactory.config import Credentials, Settings, validate_settings
from genfactory.engine import pool
from genfactory.engine.limits import make_limiter
from genfactory.engine.secrets import load_credentials
from genfactory.errors import BudgetExceeded, JobFatalError, JobStopped
from genfactory.logs import describe_error, register_secrets
from genfactory.providers.base import Usage
from genfactory.providers.registry import ProviderContext, ProviderSet
from genfactory.statuses import JobStatus
from genfactory.storage import repository


@dataclass
class JobRuntime:
    execution_id: int
    settings: Settings
    context: ProviderContext
    #: The job's providers, typed by role, each built on first use.
    providers: ProviderSet = field(init=False)
    #: Why the job must not start more work (bad key, no credits, a stop request), or None.
    stop_reason: str | None = None
    #: True when the stop came from the user (jobs stop, Ctrl-C, UI cancel): the job ends
    #: `cancelled` and can be resumed; otherwise (a fatal provider error) it ends `failed`.
    stop_by_user: bool = False
    log_handler: logging.Handler | None = None
    #: When this run of the execution began (time.time()).
    started: float = field(default_factory=time.time)
    _flushed: dict[str, dict[str, float]] = field(default_factory=dict)
    _flush_lock: threading.Lock = field(default_factory=threading.Lock)
    #: What earlier runs of this execution (before a resume) had spent, from the store.
    usage_before: dict[str, dict[str, float]] = field(default_factory=dict)
    #: The store behind this job's usage counters and its own reads (injectable; by default
    #: the configured one). The steps still call the `repository` module functions, which
    #: resolve the same configured store.
    store: repository.Repository = field(default_factory=repository.default_repository)

    def __post_init__(self) -> None:
        self.providers = ProviderSet(self.context)

    def stop(self, reason: str, *, by_user: bool = False) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
            self.stop_by_user = by_user

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

    def spent(self) -> dict[str, dict[str, float]]:
        """Usage of the whole execution: earlier runs plus this process's counters."""
        total = {service: dict(values) for service, values in self.usage_before.items()}
        for service, values in self.context.usage.snapshot().items():
            entry = total.setdefault(service, {})
            for key, amount in values.items():
                entry[key] = entry.get(key, 0) + amount
        return total

    def check_budget(self, next_call: Mapping[str, Mapping[str, float]] | None) -> None:
        """Stop the job (BudgetExceeded, a fatal error) before a call that would take it past
        `job.max_cost`."""
        if self.settings.job.max_cost is None or not next_call:
            return
        reason = pricing.budget_exceeded(self.settings, self.spent(), next_call=next_call)
        if reason:
            error = BudgetExceeded(reason)
            self.stop(describe_error(error))
            raise error

    def flush_usage(self) -> None:
        """Add what the providers counted since the last flush to the store's counters."""
        with self._flush_lock:
            now = self.context.usage.snapshot()
            delta: dict[str, dict[str, float]] = {}
            for service, values in now.items():
                before = self._flushed.get(service, {})
                changed = {
                    k: v - before.get(k, 0) for k, v in values.items() if v != before.get(k, 0)
                }
                if changed:
                    delta[service] = changed
            if delta:
                self.store.add_usage(self.execution_id, delta)
                self._flushed = now

    def close(self) -> None:
        self.providers.close()


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
        run_heavy=pool.run_in_pool,
    )
    runtime = JobRuntime(execution_id=execution_id, settings=settings, context=context)
    runtime.usage_before = runtime.store.get_execution(execution_id).usage or {}
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
    """Add the last usage to the store, close the providers and forget the runtime."""
    with _registry_lock:
        runtime = _runtimes.pop(execution_id, None)
    if runtime is not None:
        with contextlib.suppress(Exception):
            runtime.flush_usage()
        runtime.close()
    return runtime
