"""Retry policy, time budgets and the small URL/status helpers of the HTTP seam."""

from __future__ import annotations

import email.utils
import http
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

RAW_LIMIT = 500
DETAIL_LIMIT = 200
USER_AGENT = "genfactory/0.1 (+httpx)"
#: Bound of a generation when the overall timeout is switched off (docs/SPEC.md §10: always
#: bounded).
UNBOUNDED_GENERATION_SECONDS = 60 * 60.0
#: Longest wait between two tries of a call (backoff or Retry-After); longer = rate limited.
MAX_WAIT_SECONDS = 60.0


@dataclass(frozen=True)
class RetryPolicy:
    """In-call retries of retryable errors: `attempts` tries in all, sleeps capped by `max_sleep`.

    A `Retry-After` longer than `max_sleep` is not waited for: the call fails at once with
    `RateLimited` (its `retry_after` set), which names the service and the wait.
    """

    attempts: int = 3
    base_delay: float = 0.5
    max_sleep: float = 10.0

    @classmethod
    def from_settings(cls, settings: Any) -> RetryPolicy:
        """The policy of `generation.retries` / `generation.retry_backoff_seconds`."""
        gen = settings.generation
        return cls(
            attempts=int(gen.retries) + 1,
            base_delay=float(gen.retry_backoff_seconds),
            max_sleep=MAX_WAIT_SECONDS,
        )

    def backoff(self, failed_attempts: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**(n-1))]."""
        ceiling = min(self.max_sleep, self.base_delay * 2 ** max(failed_attempts - 1, 0))
        return rng.uniform(0, ceiling)


def generation_timeout_seconds(settings: Any) -> float:
    """The overall budget of one generation (docs/SPEC.md §10: 15 min on; bounded even when off)."""
    gen = settings.generation
    if gen.timeout_enabled:
        return float(gen.polling_timeout_minutes) * 60
    return UNBOUNDED_GENERATION_SECONDS


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds to wait: delta-seconds or an HTTP date; None if absent/invalid."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def phrase(status: int) -> str:
    """The reason phrase of an HTTP status ("Unknown Status" for codes outside the list)."""
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown Status"


def origin(url: str) -> str:
    """scheme://host:port of a URL."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def short_path(url: str) -> str:
    """Path only: query strings never reach a log line or a message."""
    return urlsplit(url).path or "/"
