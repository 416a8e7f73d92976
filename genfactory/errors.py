"""The project's exception hierarchy.

Retry policy is decided by type, in one place (`is_retryable`): provider code raises the most
precise class it can and never decides on retries itself.
"""

from __future__ import annotations


class GenfactoryError(Exception):
    """Base class of every error genfactory raises on purpose."""

    code = "error"


class UserError(GenfactoryError):
    """A mistake the user can fix (bad setting, missing file...): one clear sentence."""

    code = "user_error"


class ConfigError(UserError):
    """A setting or a settings file is invalid."""

    code = "config_error"


class InputFileError(UserError):
    """A keywords file or template is missing, empty, unreadable or malformed."""

    code = "input_error"


class ProviderError(GenfactoryError):
    """A provider (external service or local engine) could not do its work."""

    code = "provider_error"

    def __init__(
        self,
        message: str,
        *,
        service: str = "",
        status_code: int | None = None,
        raw: str | None = None,
    ) -> None:
        super().__init__(message)
        self.service = service
        self.status_code = status_code
        #: The raw answer body (trimmed), kept for diagnosis; never holds a secret.
        self.raw = raw


class RetryableProviderError(ProviderError):
    """Transient: 429, 5xx, timeouts, connection errors, malformed bodies. Worth retrying."""

    code = "retryable"

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after


class ProviderTimeout(RetryableProviderError):
    """A call or a task did not finish within its time budget."""

    code = "timeout"


class MalformedResponse(RetryableProviderError):
    """The service answered something that does not follow its contract."""

    code = "malformed_response"


class RateLimited(RetryableProviderError):
    """A 429 whose `Retry-After` is longer than the wait budget left: fails the step at once."""

    code = "rate_limited"


class AmbiguousCreate(ProviderError):
    """A paid create failed after it was sent: the task (and its charge) may exist.

    Never retried automatically; the user retries on purpose (`genfactory retry`).
    """

    code = "ambiguous_create"

    def __init__(self, message: str, *, task_id: str | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        #: The id the task would have (Runware's taskUUID), for a lookup, if known.
        self.task_id = task_id


class DownloadTooLarge(ProviderError):
    """A download went past `generation.max_download_mb`: stopped while streaming."""

    code = "download_too_large"


class TooFewKeywords(ProviderError):
    """Metadata had fewer than `metadata.min_keywords` and `metadata.too_few_keywords` = fail."""

    code = "too_few_keywords"


class ContentRejected(ProviderError):
    """The service refused the content (moderation, failed task): retrying will not help."""

    code = "content_rejected"


class BadRequest(ProviderError):
    """The service rejected the request as invalid (HTTP 400/404/422)."""

    code = "bad_request"


class JobFatalError(ProviderError):
    """An error after which the whole job must stop before spending more."""

    code = "job_fatal"


class AuthenticationError(JobFatalError):
    """The API key is missing, wrong or not allowed (HTTP 401/403)."""

    code = "auth_error"


class QuotaExceeded(JobFatalError):
    """The account has no credits left (HTTP 402)."""

    code = "no_credits"


class BudgetExceeded(JobFatalError):
    """The next paid call would take the job past `job.max_cost`."""

    code = "budget_exceeded"


class JobStopped(GenfactoryError):
    """The job was stopped (bad key, no credits, user stop): no new work starts."""

    code = "job_stopped"


class ImageRejected(GenfactoryError):
    """An image file cannot be used (too large, too small, animated, cannot be encoded...)."""

    code = "bad_image"


class UnreadableImage(ImageRejected):
    """The bytes cannot be decoded as an image (empty, not an image, truncated, corrupt).

    Raised only by `genfactory.processing.decode`, where every image is decoded; every step
    handles it the same way (the image fails with code `bad_image`), and no provider says
    "cannot be read" on its own.
    """


def is_retryable(exc: BaseException) -> bool:
    """True when retrying the same call may succeed."""
    return isinstance(exc, RetryableProviderError)


def error_code(exc: BaseException) -> str:
    """A short machine-readable code for logs and the store."""
    return getattr(exc, "code", type(exc).__name__)
