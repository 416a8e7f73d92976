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

Helpers shared by the remote providers live here too: media-type sniffing and size fitting.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import email.utils
import functools
import http
import json as jsonlib
import logging
import random
import ssl
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import httpx
from pydantic import SecretStr

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
from genfactory.logs import redact
from genfactory.media import sniff_media_type
from genfactory.providers.base import ROLE_METHODS, scrub_answer

if TYPE_CHECKING:
    from genfactory.providers.registry import ProviderContext

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How each service is named in messages, and the variables a user fixes things with.
SERVICE_LABELS = {
    "piapi": "PiAPI",
    "runware": "Runware",
    "openai": "OpenAI",
    "sdwebui": "Stable Diffusion WebUI",
    "removebg": "remove.bg",
}
KEY_ENV = {
    "piapi": "PIAPI_API_KEY",
    "runware": "RUNWARE_API_KEY",
    "openai": "OPENAI_API_KEY",
    "removebg": "REMOVE_BG_API_KEY",
}
BASE_URL_ENV = {
    "piapi": "PIAPI_BASE_URL",
    "runware": "RUNWARE_BASE_URL",
    "openai": "OPENAI_BASE_URL",
    "sdwebui": "SDWEBUI_BASE_URL",
    "removebg": "REMOVE_BG_BASE_URL",
}

RAW_LIMIT = 500
DETAIL_LIMIT = 200
USER_AGENT = "genfactory/0.1 (+httpx)"
#: Bound of a generation when the overall timeout is switched off (SPEC §10: always bounded).
UNBOUNDED_GENERATION_SECONDS = 60 * 60.0
#: Longest wait between two tries of a call (backoff or Retry-After); longer = rate limited.
MAX_WAIT_SECONDS = 60.0
#: Timeouts that prove the request never reached the service (nothing can have been created).
_UNSENT_TIMEOUTS = (httpx.ConnectTimeout, httpx.PoolTimeout)


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
    """The overall budget of one generation (SPEC §10: 15 min on; bounded even when off)."""
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


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """One verified TLS context per process: building one per client costs ~70 ms."""
    return httpx.create_ssl_context()


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown Status"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _short_path(url: str) -> str:
    """Path only: query strings never reach a log line or a message."""
    return urlsplit(url).path or "/"


def _scrubbing(fn: Callable[..., T]) -> Callable[..., T]:
    """`fn` (a provider's role method) with its result scrubbed of every known secret."""

    @functools.wraps(fn)
    def wrapper(self: ServiceProvider, *args: Any, **kw: Any) -> T:
        result: T = scrub_answer(fn(self, *args, **kw), self.http.scrub)
        return result

    wrapper._scrubbed = True  # type: ignore[attr-defined]
    return wrapper


class ServiceClient:
    """One service's HTTP client: base URL, auth header, timeouts, error policy and retries.

    One instance per provider instance; thread-safe (httpx connection pools are), so a provider
    may be shared by concurrent slots. `close()` releases the connections.
    """

    def __init__(
        self,
        ctx: ProviderContext,
        service: str,
        *,
        base_url: str,
        secret: SecretStr | None = None,
        auth_header: str | None = None,
        auth_prefix: str = "",
        retry: RetryPolicy | None = None,
    ) -> None:
        self.service = service
        self.label = SERVICE_LABELS.get(service, service)
        self.base_url = base_url.rstrip("/")
        self.key_env = KEY_ENV.get(service)
        self.retry = retry or RetryPolicy.from_settings(ctx.settings)
        self.max_download_bytes = int(float(ctx.settings.generation.max_download_mb) * 1024**2)
        self._usage = ctx.usage
        self._limiter = ctx.limiter
        self._auth_header = auth_header
        self._auth_value = (
            f"{auth_prefix}{secret.get_secret_value()}" if auth_header and secret else None
        )
        # Mask every key we know of, not only our own: an error body may echo any header.
        self._secrets = sorted(
            {s for s in ctx.credentials.secret_values() if s}
            | ({secret.get_secret_value()} if secret and secret.get_secret_value() else set()),
            key=len,
            reverse=True,
        )
        self._http_timeout = float(ctx.settings.generation.http_timeout_seconds)
        self.timeout = httpx.Timeout(self._http_timeout)
        self._rng = random.Random()
        self._client = httpx.Client(
            timeout=self.timeout,
            headers={"User-Agent": USER_AGENT},
            follow_redirects=False,
            verify=_ssl_context(),
        )

    # -- public API ----------------------------------------------------------------------------

    def url(self, path: str) -> str:
        """Absolute URL for a path of this service (an empty path is the base URL itself)."""
        if path.startswith(("http://", "https://")):
            return path
        return self.base_url + path

    def generation_timeout(self, seconds: float) -> httpx.Timeout:
        """Timeouts of a synchronous generation call: the usual connect/write, a long read."""
        return httpx.Timeout(self._http_timeout, read=max(seconds, self._http_timeout))

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """One call with the error policy; returns the (successful or `accept`ed) response."""
        return self.call(method, path, parse=lambda response: response, **kw)

    def request_json(self, method: str, path: str, **kw: Any) -> Any:
        """One call whose answer must be JSON; an unparseable body is retried like a 5xx."""
        return self.call(method, path, parse=self._parse_json, **kw)

    def download(self, url: str, *, what: str = "image", **kw: Any) -> bytes:
        """Fetch an image (unauthenticated: CDNs never see the key); the bytes must be an image.

        Streamed and stopped at `generation.max_download_mb` (`DownloadTooLarge`, not retried).
        """
        kw.setdefault("authenticated", False)
        kw.setdefault("limited", False)
        kw.setdefault("follow_redirects", True)
        kw.setdefault("count_as", "downloads")
        kw.setdefault("max_bytes", self.max_download_bytes)

        def parse(response: httpx.Response) -> bytes:
            data = response.content
            if sniff_media_type(data) is None:
                raise MalformedResponse(
                    f"{self.label} served a {what} download at {_short_path(url)} that is not "
                    f"an image ({len(data)} bytes); this is usually temporary",
                    service=self.service,
                    status_code=response.status_code,
                    raw=self.scrub(data[:RAW_LIMIT].decode("utf-8", "replace")),
                )
            return data

        return self.call("GET", url, parse=parse, **kw)

    def call(
        self,
        method: str,
        path: str,
        *,
        parse: Callable[[httpx.Response], T],
        json: Any = None,
        data: Mapping[str, Any] | None = None,
        files: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        authenticated: bool = True,
        limited: bool = True,
        accept: Collection[int] = (),
        attempts: int | None = None,
        max_sleep: float | None = None,
        timeout: httpx.Timeout | float | None = None,
        follow_redirects: bool = False,
        count_as: str = "calls",
        paid: bool = False,
        retry_malformed: bool = True,
        max_bytes: int | None = None,
    ) -> T:
        """Send, map errors, retry retryable ones; `parse` runs inside the retry loop.

        `accept` lists error statuses handed back to `parse` instead of raised (e.g. remove.bg's
        400 "unknown_foreground"). `attempts`/`max_sleep` override the client's RetryPolicy.
        `paid`: a create that costs money, sent at most once (see the module docstring).
        `retry_malformed=False` leaves malformed bodies to the caller's own re-ask policy.
        `max_bytes` streams the body and stops past it. Each try counts one `count_as`
        ("calls"; downloads count "downloads") in the usage.
        """
        url = self.url(path)
        tries = max(1, attempts if attempts is not None else self.retry.attempts)
        cap = self.retry.max_sleep if max_sleep is None else max_sleep
        send_headers = dict(headers or {})
        if authenticated and self._auth_header and self._auth_value:
            send_headers[self._auth_header] = self._auth_value
        for attempt in range(1, tries + 1):
            started = time.monotonic()
            try:
                self._usage.add(self.service, **{count_as: 1})
                slot = self._limiter(self.service) if limited else contextlib.nullcontext()
                with slot:
                    request = self._client.build_request(
                        method,
                        url,
                        json=json,
                        data=data,
                        files=files,
                        headers=send_headers,
                        timeout=timeout if timeout is not None else self.timeout,
                    )
                    response = self._send(request, follow_redirects, max_bytes)
                log.debug(
                    "%s %s %s -> %s in %.2f s",
                    self.label,
                    method,
                    _short_path(url),
                    response.status_code,
                    time.monotonic() - started,
                )
                if response.is_success or response.status_code in accept:
                    return parse(response)
                raise self.error_for(response)
            except DownloadTooLarge:
                self._usage.add(self.service, failures=1)
                raise
            except httpx.TimeoutException as exc:
                error: ProviderError = self._timeout_error(exc, url, time.monotonic() - started)
                if paid and not isinstance(exc, _UNSENT_TIMEOUTS):
                    error = self._ambiguous(error)
            except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
                self._usage.add(self.service, failures=1)
                env = BASE_URL_ENV.get(self.service, "the base URL")
                raise BadRequest(
                    f"{self.label} cannot be called at {_origin(url)} ({exc}); check {env}",
                    service=self.service,
                ) from None
            except httpx.TransportError as exc:
                error = self._transport_error(exc, url)
                if paid and not isinstance(exc, httpx.ConnectError):
                    error = self._ambiguous(error)
            except ProviderError as exc:
                error = exc
                if paid and isinstance(exc, RetryableProviderError) and exc.status_code != 429:
                    error = self._ambiguous(error)
            retry_after = getattr(error, "retry_after", None)
            if isinstance(error, RetryableProviderError) and (retry_after or 0) > cap:
                # Waiting longer than the budget helps no one: fail now, naming the limit.
                self._usage.add(self.service, failures=1, rate_limited=1)
                raise self.rate_limited(error, float(retry_after or 0), cap) from None
            if not retry_malformed and isinstance(error, MalformedResponse):
                self._usage.add(self.service, failures=1)
                raise error
            if not isinstance(error, RetryableProviderError) or attempt >= tries:
                self._usage.add(self.service, failures=1)
                raise error
            delay = (
                retry_after if retry_after is not None else self.retry.backoff(attempt, self._rng)
            )
            delay = min(delay, cap)
            self._usage.add(self.service, retries=1)
            log.warning("%s; try %d of %d in %.2f s", error, attempt + 1, tries, delay)
            time.sleep(delay)
        raise AssertionError("unreachable: the loop returns or raises")

    def error_for(self, response: httpx.Response) -> ProviderError:
        """The error an unsuccessful answer stands for, with a message that says what to do."""
        status = response.status_code
        head = f"{self.label} answered {status} {_phrase(status)}"
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
                f"{head}: {_short_path(str(response.request.url))} does not exist{said}; check "
                f"the {self.service} paths and {BASE_URL_ENV.get(self.service, 'the base URL')}",
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
            f"{BASE_URL_ENV.get(self.service, 'the base URL')}",
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

    def scrub(self, text: str) -> str:
        """The text with every known API key masked (ours, every configured one, and every
        secret registered with the log redaction)."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return redact(text)

    def close(self) -> None:
        self._client.close()

    # -- internals -----------------------------------------------------------------------------

    def _send(
        self, request: httpx.Request, follow_redirects: bool, max_bytes: int | None
    ) -> httpx.Response:
        """One exchange; with `max_bytes`, the body is streamed and cut off past the cap."""
        if max_bytes is None:
            return self._client.send(request, follow_redirects=follow_redirects)
        response = self._client.send(request, stream=True, follow_redirects=follow_redirects)
        try:
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise self._too_large(request, f"it announces {int(declared) / 1024**2:.0f} MB")
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise self._too_large(request, "it went on past the cap")
                chunks.append(chunk)
        finally:
            response.close()
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            content=b"".join(chunks),
            request=request,
        )

    def _too_large(self, request: httpx.Request, why: str) -> DownloadTooLarge:
        cap = self.max_download_bytes / 1024**2
        return DownloadTooLarge(
            f"{self.label} served a download at {_short_path(str(request.url))} larger than "
            f"generation.max_download_mb = {cap:g} ({why}); stopped; raise the setting if the "
            "images are really that large",
            service=self.service,
        )

    def _ambiguous(self, error: ProviderError) -> AmbiguousCreate:
        """A failed paid create that the service may have accepted: never sent again.

        Counted as `ambiguous_creates`, which cost estimates treat as charged."""
        self._usage.add(self.service, ambiguous_creates=1)
        what = str(error).split("; retrying usually helps")[0].split("; this is usually")[0]
        return AmbiguousCreate(
            f"{what}, after the request was sent: {self.label} may have created the task and "
            "charged for it, so it is not created again automatically; check the "
            f"{self.label} dashboard, then run the image again on purpose",
            service=self.service,
            status_code=error.status_code,
            raw=error.raw,
        )

    def _parse_json(self, response: httpx.Response) -> Any:
        """The JSON answer with every string scrubbed at once: a key echoed in an answer must
        be masked before any trimming (a cut title) could leave a fragment of it."""
        try:
            return self._scrub_json(response.json())
        except (ValueError, UnicodeDecodeError):
            raise MalformedResponse(
                f"{self.label} answered {response.status_code} {_phrase(response.status_code)} "
                f"with a body that is not JSON ({len(response.content)} bytes, Content-Type "
                f"{response.headers.get('Content-Type', 'none')}); this is usually temporary",
                service=self.service,
                status_code=response.status_code,
                raw=self.scrub(response.text[:RAW_LIMIT]),
            ) from None

    def _scrub_json(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, dict):
            return {key: self._scrub_json(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self._scrub_json(item) for item in value]
        return value

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
            f"{self.label} took too long {phase} ({took:.1f} s on {_short_path(url)}); "
            "generation.http_timeout_seconds bounds every call; retrying usually helps",
            service=self.service,
        )

    def _transport_error(self, exc: httpx.TransportError, url: str) -> ProviderError:
        reason = self.scrub(str(exc)) or type(exc).__name__
        if isinstance(exc, httpx.ConnectError):
            env = BASE_URL_ENV.get(self.service)
            fix = f"check {env} and the network" if env else "check the network"
            message = f"{self.label} could not be reached at {_origin(url)} ({reason}); {fix}"
        else:
            message = (
                f"{self.label} broke off the exchange on {_short_path(url)} ({reason}); "
                "retrying usually helps"
            )
        return RetryableProviderError(message, service=self.service)


class ServiceProvider:
    """Base of the providers that call one HTTP service: the context, the settings and the
    service's client (one connection pool per provider and job).

    No answer is trusted: every role method a subclass defines (`ROLE_METHODS`) is wrapped so
    that its result passes `ServiceClient.scrub` (every known key masked) before it leaves the
    provider, whatever the service wrote into a prompt, reason, title, description or keyword.
    """

    name: str

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        for method in ROLE_METHODS:
            fn = cls.__dict__.get(method)
            if fn is not None and not getattr(fn, "_scrubbed", False):
                setattr(cls, method, _scrubbing(fn))

    def __init__(self, ctx: ProviderContext, http: ServiceClient) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.http = http

    #: Said after "<service> answered with <what>;" when an answer breaks the contract.
    malformed_hint = "this is usually temporary"

    def close(self) -> None:
        """Close the service's connections."""
        self.http.close()

    def malformed(self, what: str, answer: Any) -> MalformedResponse:
        """The retryable error for an answer that breaks the service's contract; the answer
        is kept (trimmed, keys scrubbed) for diagnosis."""
        return MalformedResponse(
            f"{self.http.label} answered with {what}; {self.malformed_hint}",
            service=self.http.service,
            raw=self.http.scrub(str(answer)[:RAW_LIMIT]),
        )

    def decode_image(self, encoded: str, answer: Any) -> bytes:
        """Image bytes from base64 or a data URL, checked to really be an image."""
        try:
            blob = base64.b64decode(encoded.split(",", 1)[-1], validate=True)
        except (binascii.Error, ValueError):
            raise self.malformed("image data that is not base64", answer) from None
        if sniff_media_type(blob) is None:
            raise self.malformed("base64 data that is not an image", answer)
        return blob
