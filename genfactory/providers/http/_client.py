"""`ServiceClient`: one service's base URL, auth header, transport, retry loop and scrubber."""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from pydantic import SecretStr

from genfactory import services
from genfactory.errors import (
    BadRequest,
    DownloadTooLarge,
    MalformedResponse,
    ProviderError,
    RetryableProviderError,
)
from genfactory.logs import redact
from genfactory.media import sniff_media_type
from genfactory.providers.base import MASK
from genfactory.providers.http._errors import ErrorMapping
from genfactory.providers.http._policy import (
    RAW_LIMIT,
    RetryPolicy,
    origin,
    phrase,
    short_path,
)
from genfactory.providers.http._session import new_client, parsed_url

if TYPE_CHECKING:
    from genfactory.providers.registry import ProviderContext

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Timeouts that prove the request never reached the service (nothing can have been created).
_UNSENT_TIMEOUTS = (httpx.ConnectTimeout, httpx.PoolTimeout)


class ServiceClient(ErrorMapping):
    """One service's HTTP client: base URL, auth header, timeouts, error policy and retries.

    `transport` (default: the context's, else the network) is the one seam to the outside
    world: a test passes `httpx.MockTransport(handler)` and sees every request the provider
    sends. One instance per provider instance, shared by concurrent slots: each thread sends
    through its own connection pool (`_client`). `close()` releases every thread's connections.
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
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.service = service
        spec = services.service(service)
        self.label = services.label(service)
        self.base_url = base_url.rstrip("/")
        self.key_env = spec.key_variable if spec else None
        self.base_url_env = spec.base_url_env if spec else None
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
        #: How the client waits between tries (tests replace it to record the waits).
        self.sleep: Callable[[float], None] = time.sleep
        # The context's transport (a test's `httpx.MockTransport`) wins over the network.
        self._transport = transport if transport is not None else ctx.transport
        self._local = threading.local()
        self._clients: list[httpx.Client] = []
        self._clients_lock = threading.Lock()

    @property
    def _client(self) -> httpx.Client:
        """This thread's `httpx.Client` (`_session.new_client`). One pool per thread, not
        one shared by every slot: a shared pool checks each idle connection at every request (a
        `poll()` each, each releasing the GIL), ~7.5 syscalls per request for a job's 32 slot
        threads. A thread's own pool holds the one connection it reuses; the connection count
        is the same either way."""
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None:
            client = new_client(self.timeout, self._transport)
            self._local.client = client
            with self._clients_lock:
                self._clients.append(client)
        return client

    @classmethod
    def for_service(cls, ctx: ProviderContext, service: str, **kw: Any) -> ServiceClient:
        """The client of the table's `service`: the base URL of its settings section and its
        API key (if it takes one); `kw` as for the constructor (auth header, retries ...)."""
        spec = services.service(service)
        if spec is None:
            raise KeyError(f"no service {service!r} in the table")
        section = getattr(ctx.settings, spec.options_section)
        secret = getattr(ctx.credentials, spec.key_field) if spec.key_field else None
        return cls(ctx, service, base_url=section.base_url, secret=secret, **kw)

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
                    f"{self.label} served a {what} download at {short_path(url)} that is not "
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
        before_send: Callable[[], object] | None = None,
    ) -> T:
        """Send, map errors, retry retryable ones; `parse` runs inside the retry loop.

        `accept` lists error statuses handed back to `parse` instead of raised (e.g. remove.bg's
        400 "unknown_foreground"). `attempts`/`max_sleep` override the client's RetryPolicy.
        `paid`: a create that costs money, sent at most once (see the module docstring).
        `retry_malformed=False` leaves malformed bodies to the caller's own re-ask policy.
        `max_bytes` streams the body and stops past it. Each try counts one `count_as`
        ("calls"; downloads count "downloads") in the usage. `before_send` runs right before
        each try goes out, past the service's concurrency limit (Runware records its task id
        there, so a slot still waiting for the limit has sent nothing and recorded nothing).
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
                        parsed_url(url),
                        json=json,
                        data=data,
                        files=files,
                        headers=send_headers,
                        timeout=timeout if timeout is not None else self.timeout,
                    )
                    if before_send is not None:
                        before_send()
                    response = self._send(request, follow_redirects, max_bytes)
                log.debug(
                    "%s %s %s -> %s in %.2f s",
                    self.label,
                    method,
                    short_path(url),
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
            except httpx.LocalProtocolError as exc:
                # The request itself is not valid HTTP (a header with a line break): refused
                # before a byte went out, so neither worth a retry nor a possible charge.
                self._usage.add(self.service, failures=1)
                raise BadRequest(
                    f"{self.label}: {self.scrub(str(exc))}", service=self.service
                ) from None
            except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
                self._usage.add(self.service, failures=1)
                env = self.base_url_env or "the base URL"
                raise BadRequest(
                    f"{self.label} cannot be called at {origin(url)} ({exc}); check {env}",
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
            self.sleep(delay)
        raise AssertionError("unreachable: the loop returns or raises")

    def scrub(self, text: str) -> str:
        """The text with every known API key masked (ours, every configured one, and every
        secret registered with the log redaction)."""
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return redact(text)

    def close(self) -> None:
        """Release every thread's connections."""
        with self._clients_lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()
        self._local = threading.local()

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

    def _parse_json(self, response: httpx.Response) -> Any:
        """The JSON answer with every string scrubbed at once: a key echoed in an answer must
        be masked before any trimming (a cut title) could leave a fragment of it."""
        try:
            return self._scrub_json(response.json())
        except (ValueError, UnicodeDecodeError):
            raise MalformedResponse(
                f"{self.label} answered {response.status_code} {phrase(response.status_code)} "
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
