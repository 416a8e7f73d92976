"""Per-service concurrency limits (`[concurrency]`), shared by every slot of a job.

`concurrency.scope = "prefect"` (or "auto" with a Prefect server configured, PREFECT_API_URL)
keeps the caps as Prefect global concurrency limits named `genfactory-<service>`: they hold
across processes, workers and concurrent jobs, and show in the UI. "process" (or "auto" without
a server) keeps them in this process with semaphores.

Prefect's slots cost API calls (benchmarks/limits.py: ~130 ms per acquire + release on a
PostgreSQL-backed server, ~165 ms with four callers; 1-5 s under a running job on a SQLite-backed
one), so the Prefect limiter waits on a local semaphore first: a process never queues more
acquisitions at the server than the cap, and within one process waiting stays cheap. Hence the
default `process` on one machine, and `prefect` on several workers (README, "From one machine
to many").
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from genfactory import services
from genfactory.config import Settings
from genfactory.providers.base import Limiter, LocalLimiter

LIMIT_PREFIX = "genfactory-"


def limit_name(service: str) -> str:
    return f"{LIMIT_PREFIX}{service}"


def service_caps(settings: Settings) -> dict[str, int]:
    """service -> cap: `concurrency.<service>` for every capped service of the table (its
    default for an entry registered after the settings models were built)."""
    caps = {}
    for spec in services.capped():
        cap = settings.concurrency.cap(spec.name) or spec.concurrency
        if cap is not None:
            caps[spec.name] = cap
    return caps


class PrefectLimiter:
    """Prefect global concurrency limits, created (or resized) to the configured caps on first
    use, so a job that never calls a service never touches its limit."""

    def __init__(self, limits: dict[str, int]) -> None:
        self._limits = limits
        self._local = LocalLimiter(limits)
        self._ready: set[str] = set()
        self._lock = threading.Lock()

    def _ensure(self, service: str) -> None:
        with self._lock:
            if service in self._ready:
                return
            from prefect.client.orchestration import get_client

            with get_client(sync_client=True) as client:
                client.upsert_global_concurrency_limit_by_name(
                    limit_name(service), self._limits[service]
                )
            self._ready.add(service)

    @contextlib.contextmanager
    def __call__(self, service: str) -> Iterator[None]:
        if service not in self._limits:
            yield
            return
        from prefect.concurrency.sync import concurrency

        self._ensure(service)
        with self._local(service), concurrency(limit_name(service), occupy=1, strict=True):
            yield


def prefect_server_configured() -> bool:
    from prefect.settings import get_current_settings

    return bool(get_current_settings().api.url)


def make_limiter(settings: Settings) -> Limiter:
    """The limiter `concurrency.scope` asks for (auto: Prefect's when a server is configured)."""
    caps = service_caps(settings)
    scope = settings.concurrency.scope
    if scope == "prefect" or (scope == "auto" and prefect_server_configured()):
        return PrefectLimiter(caps)
    return LocalLimiter(caps)
