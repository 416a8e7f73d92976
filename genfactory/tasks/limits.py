"""Per-service concurrency limits (`[concurrency]`), shared by every slot of a job.

With a Prefect server (PREFECT_API_URL set), the limits are Prefect global concurrency limits
named `genfactory-<service>`: they hold across processes, workers and concurrent jobs, and show
in the UI. Without one, an in-process `LocalLimiter` does the same within this process.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from genfactory.config import Settings
from genfactory.providers.base import Limiter, LocalLimiter

LIMIT_PREFIX = "genfactory-"


def limit_name(service: str) -> str:
    return f"{LIMIT_PREFIX}{service}"


class PrefectLimiter:
    """Prefect global concurrency limits, created (or resized) to the configured caps on first
    use, so a job that never calls a service never touches its limit."""

    def __init__(self, limits: dict[str, int]) -> None:
        self._limits = limits
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
        with concurrency(limit_name(service), occupy=1, strict=True):
            yield


def prefect_server_configured() -> bool:
    from prefect.settings import get_current_settings

    return bool(get_current_settings().api.url)


def make_limiter(settings: Settings) -> Limiter:
    """Prefect global limits when a Prefect server is configured, else in-process ones."""
    limits = {name: int(value) for name, value in settings.concurrency.model_dump().items()}
    if prefect_server_configured():
        return PrefectLimiter(limits)
    return LocalLimiter(limits)
