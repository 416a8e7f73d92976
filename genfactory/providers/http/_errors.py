"""How an unsuccessful exchange becomes one precise `genfactory.errors` class.

Every message names the service and says what to fix; bodies are trimmed and scrubbed of every
known key before they are kept (`raw`) or quoted (the service's own short explanation).
"""

from __future__ import annotations

import json as jsonlib
from typing import Any

import httpx

from genfactory.errors import (
    AmbiguousCreate,
    AuthenticationError,
    BadRequest,
    DownloadTooLarge,
    MalformedResponse,
    ProviderError,
    ProviderTimeout,
    QuotaExceeded,
    RateLimited,
    RetryableProviderError,
)
from genfactory.providers.base import Usage
from genfactory.providers.http._policy import (
    DETAIL_LIMIT,
    RAW_LIMIT,
    origin,
    parse_retry_after,
    phrase,
    short_path,
)


class ErrorMapping:
    """The error side of `ServiceClient`: answers and transport failures -> our errors."""

    service: str
    label: str
    #: The variable that holds the service's API key / points it at another server.
    key_env: str | None
    base_url_env: str | None
    max_download_bytes: int
    _usage: Usage

    def scrub(self, text: str) -> str:  # pragma: no cover - ServiceClient defines it
        raise NotImplementedError

    def error_for(self, response: httpx.Response) -> ProviderError:
        """The error an unsuccessful answer stands for, with a message that says what to do."""
        status = response.status_code
        head = f"{self.label} answered {status} {phrase(status)}"
        raw = self.scrub(response.text[:RAW_LIMIT])
        detail = self._detail(response)
        said = f" ({detail})" if detail else ""
        kw: dict[str, Any] = {"service": self.service, "status_code": status, "raw": raw}
        key = self.key_env or "the API key setting"
        if status == 429:
            wait = parse_retry_after(response.headers.get("Retry-After"))
            asked = f"; it asks to wait {wait:g} s" if wait is not None else ""
            return RetryableProviderError(
                f"{head}: too many requests{asked}; lower concurrency.{self.service} if this "
                "keeps happening",
                retry_after=wait,
                **kw,
            )
        if status == 401:
            return AuthenticationError(
                f"{head}: the API key in {key} was refused{said}; check it", **kw
            )
        if status == 403:
            return AuthenticationError(
                f"{head}: the API key in {key} is not allowed to do this{said}; check the key "
                "and the account's plan",
                **kw,
            )
        if status == 402:
            return QuotaExceeded(
                f"{head}: the account has no credits left{said}; top up the {self.label} "
                "account, then resume the job",
                **kw,
            )
        if status in (408, 425) or status >= 500:
            wait = parse_retry_after(response.headers.get("Retry-After"))
            return RetryableProviderError(
                f"{head}: the service failed on its side{said}; retrying usually helps",
                retry_after=wait,
                **kw,
            )
        if status == 404:
            return BadRequest(
                f"{head}: {short_path(str(response.request.url))} does not exist{said}; check "
                f"the {self.service} paths and {self.base_url_env or 'the base URL'}",
                **kw,
            )
        if 400 <= status < 500:
            return BadRequest(
                f"{head}: the request was refused{said}; check the [{self.service}] settings "
                "and the prompt",
                **kw,
            )
        return MalformedResponse(
            f"{head}, which this client does not expect; check "
            f"{self.base_url_env or 'the base URL'}",
            **kw,
        )

    def rate_limited(self, error: ProviderError, wait: float, budget: float) -> RateLimited:
        """The error for a `Retry-After` longer than the wait budget left."""
        return RateLimited(
            f"rate limited by {self.label} for {wait:g} s (more than the {budget:g} s left to "
            f"wait); lower concurrency.{self.service} or run the job later",
            service=self.service,
            status_code=error.status_code,
            raw=error.raw,
            retry_after=wait,
        )

    def _too_large(self, request: httpx.Request, why: str) -> DownloadTooLarge:
        cap = self.max_download_bytes / 1024**2
        return DownloadTooLarge(
            f"{self.label} served a download at {short_path(str(request.url))} larger than "
            f"generation.max_download_mb = {cap:g} ({why}); stopped; raise the setting if the "
            "images are really that large",
            service=self.service,
        )

    def _ambiguous(self, error: ProviderError) -> AmbiguousCreate:
        """A paid create that failed after it was sent (`ambiguous`)."""
        what = str(error).split("; retrying usually helps")[0].split("; this is usually")[0]
        return self.ambiguous(
            f"{what}, after the request was sent",
            status_code=error.status_code,
            raw=error.raw,
        )

    def ambiguous(
        self,
        what: str,
        *,
        task_id: str | None = None,
        status_code: int | None = None,
        raw: str | None = None,
    ) -> AmbiguousCreate:
        """A paid create the service may have accepted (`what` says why it is unknown): never
        sent again. Counted as `ambiguous_creates`, which cost estimates treat as charged."""
        self._usage.add(self.service, ambiguous_creates=1)
        return AmbiguousCreate(
            f"{what}: {self.label} may have created the task and charged for it; it is not "
            "created again automatically, so you are never charged twice: check the "
            f"{self.label} dashboard, then run the image again on purpose",
            task_id=task_id,
            service=self.service,
            status_code=status_code,
            raw=raw,
        )

    def _detail(self, response: httpx.Response) -> str:
        """A service's own short explanation from a JSON error body, if it gave one."""
        try:
            body = response.json()
        except (ValueError, UnicodeDecodeError):
            return ""
        found: Any = None
        if isinstance(body, dict):
            error = body.get("error")
            errors = body.get("errors")
            data = body.get("data")
            if isinstance(error, dict):
                found = error.get("message") or error.get("code")
            elif isinstance(error, str):
                found = error
            elif isinstance(errors, list) and errors and isinstance(errors[0], dict):
                first = errors[0]
                found = first.get("message") or first.get("title") or first.get("detail")
                found = found or first.get("code")
            elif isinstance(data, dict) and isinstance(data.get("error"), dict):
                found = data["error"].get("message")
            found = found or body.get("message") or body.get("detail")
        if not isinstance(found, str):
            found = jsonlib.dumps(found) if found else ""
        found = " ".join(found.split())
        return self.scrub(found)[:DETAIL_LIMIT]

    def _timeout_error(self, exc: httpx.TimeoutException, url: str, took: float) -> ProviderError:
        phase = {
            httpx.ConnectTimeout: "to accept the connection",
            httpx.ReadTimeout: "to answer",
            httpx.WriteTimeout: "to take the request",
            httpx.PoolTimeout: "for a free connection",
        }.get(type(exc), "to answer")
        return ProviderTimeout(
            f"{self.label} took too long {phase} ({took:.1f} s on {short_path(url)}); "
            "generation.http_timeout_seconds bounds every call; retrying usually helps",
            service=self.service,
        )

    def _transport_error(self, exc: httpx.TransportError, url: str) -> ProviderError:
        reason = self.scrub(str(exc)) or type(exc).__name__
        if isinstance(exc, httpx.ConnectError):
            env = self.base_url_env
            fix = f"check {env} and the network" if env else "check the network"
            message = f"{self.label} could not be reached at {origin(url)} ({reason}); {fix}"
        else:
            message = (
                f"{self.label} broke off the exchange on {short_path(url)} ({reason}); "
                "retrying usually helps"
            )
        return RetryableProviderError(message, service=self.service)
