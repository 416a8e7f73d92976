"""The HTTP seam of every remote provider: one error policy, one retry loop, one secret scrubber.

Every call to an external service goes through `ServiceClient.call` (or its `request`,
`request_json` and `download` shorthands), which

- maps answers and transport failures onto `genfactory.errors` (retry policy is then decided by
  type): 429 / 5xx / 408 / timeouts / connection errors / unparseable bodies are
  `RetryableProviderError` (`ProviderTimeout`, `MalformedResponse`); 400/404/422 and other 4xx
  are `BadRequest`; 401/403 `AuthenticationError`; 402 `QuotaExceeded`;
- is the one owner of transient retries (the engine's steps do not retry provider errors):
  retryable errors are retried in the call, `generation.retries` times, with exponential
  backoff and full jitter from `generation.retry_backoff_seconds`, honouring `Retry-After`
  (seconds or an HTTP date) up to `MAX_WAIT_SECONDS`; a longer `Retry-After` fails at once as
  `RateLimited` ("rate limited by <service> for N s");
- sends paid creates (`paid=True`) at most once: after a failure that may have come after the
  service accepted the request (read timeout, connection broken after sending, 5xx, an
  unreadable body) it raises `AmbiguousCreate` instead of creating again; only failures that
  prove nothing was created (connect errors, 429, other 4xx) are retried;
- streams downloads and stops them at `generation.max_download_mb` (`DownloadTooLarge`);
- holds the service's concurrency slot (`ctx.limiter(service)`) around each HTTP exchange only,
  never while sleeping between tries;
- counts `calls`, `retries` and `failures` per service in `ctx.usage`;
- keeps API keys in request headers only: never in a URL, a message, a log line or `raw`
  (error bodies are trimmed to 500 characters and every known key is masked);
- trusts no answer: every string of a JSON answer is scrubbed of every known key when it is
  parsed, and `ServiceProvider` scrubs every role result again before it leaves a provider.

Rooms: `_policy` (retry policy, time budgets, URL helpers), `_errors` (answers -> errors),
`_client` (`ServiceClient`: transport, retry loop, downloads, scrubbing), `_provider`
(`ServiceProvider`, the base of the remote providers). Import from this package only.
"""

from genfactory.providers.http._client import ServiceClient
from genfactory.providers.http._errors import ErrorMapping
from genfactory.providers.http._policy import (
    DETAIL_LIMIT,
    MAX_WAIT_SECONDS,
    RAW_LIMIT,
    UNBOUNDED_GENERATION_SECONDS,
    USER_AGENT,
    RetryPolicy,
    generation_timeout_seconds,
    parse_retry_after,
)
from genfactory.providers.http._provider import ServiceProvider

__all__ = [
    "DETAIL_LIMIT",
    "MAX_WAIT_SECONDS",
    "RAW_LIMIT",
    "UNBOUNDED_GENERATION_SECONDS",
    "USER_AGENT",
    "ErrorMapping",
    "RetryPolicy",
    "ServiceClient",
    "ServiceProvider",
    "generation_timeout_seconds",
    "parse_retry_after",
]
