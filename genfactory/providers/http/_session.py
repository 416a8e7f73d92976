"""How each thread of a `ServiceClient` gets its `httpx.Client`: one verified TLS context per
process, `HTTP11Transport` unless a test injected a transport or the environment names a proxy,
no cookie jar, and service URLs parsed once."""

from __future__ import annotations

import functools
import ssl
import urllib.request
from typing import Any

import httpx

from genfactory.providers.http._policy import USER_AGENT
from genfactory.providers.http._transport import HTTP11Transport


@functools.cache
def ssl_context() -> ssl.SSLContext:
    """One verified TLS context per process: building one per client costs ~70 ms."""
    return httpx.create_ssl_context()


def environment_proxies() -> bool:
    """True when the environment names a proxy (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, or the
    system's settings): httpx reads those only when it builds the client's transports itself,
    so such a client keeps httpx's own instead of `HTTP11Transport`."""
    proxies = urllib.request.getproxies()
    if proxies.get("no", "").strip() == "*":
        return False  # httpx then ignores every proxy
    return any(scheme in ("http", "https", "all") for scheme in proxies)


@functools.lru_cache(maxsize=1024)
def parsed_url(url: str) -> httpx.URL:
    """`url` parsed once: httpx parses a string URL on every request (~10 % of a request's
    CPU), and a job sends the same few (a task's poll, a service's endpoint) again and again.
    `httpx.URL` is immutable, so one parsed URL serves every thread."""
    return httpx.URL(url)


class _NoCookies(httpx.Cookies):
    """A cookie jar that keeps nothing: the services authenticate by key, and a CDN's cookie
    has no business in the next request. httpx reads every answer's cookies into the client's
    jar otherwise, at ~20 % of a request's CPU (through `http.cookiejar`)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None

    def set(self, name: str, value: str, domain: str = "", path: str = "/") -> None:
        return None  # shared by every client: nothing may be put in it


class _Client(httpx.Client):
    """`httpx.Client` without cookies (see `_NoCookies`)."""

    _no_cookies = _NoCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        return self._no_cookies

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        raise AttributeError("the services' clients keep no cookies")


def new_client(timeout: httpx.Timeout, transport: httpx.BaseTransport | None) -> httpx.Client:
    """A client for one thread: over `transport` when one is given (a test's
    `httpx.MockTransport`), else `HTTP11Transport`, else (a proxy in the environment) httpx's."""
    if transport is None and not environment_proxies():
        transport = HTTP11Transport(ssl_context())
    return _Client(
        timeout=timeout,
        headers={"User-Agent": USER_AGENT},
        follow_redirects=False,
        transport=transport,
        verify=ssl_context(),  # for httpx's own transports, the proxies' among them
    )
