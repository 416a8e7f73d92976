"""Scripted services behind `httpx.MockTransport`: provider unit tests without a socket.

A `Service` is the transport handler: it records every request the provider sends and answers
it, first from the answers queued with `then(...)` (in order; an `httpx.TransportError` class is
raised instead, as the network would), then from the test's own `handler`. `build` makes a
provider over it with fast retries whose sleeps are recorded in `service.sleeps` instead of
slept. Real HTTP over a loopback socket stays covered by the fakes in `tests.fakes.server`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from genfactory.config import Credentials, Settings
from genfactory.providers.base import Limiter, Usage, no_limit
from genfactory.providers.registry import ProviderContext
from tests.fakes.fixtures import FAST_GENERATION, FAST_RETRY, credentials_for

#: Keys of the scripted services: long and distinctive, so a leak is easy to find, and shaped
#: like no real provider's key, so no secret scanner takes them for one.
KEYS = {
    "piapi": "fake-piapi-key-for-tests-27182818",
    "runware": "fake-runware-key-for-tests-31415926",
    "openai": "fake-openai-key-for-tests-16180339",
    "removebg": "fake-removebg-key-for-tests-14142135",
}

Answer = httpx.Response | type[httpx.TransportError] | Callable[[httpx.Request], httpx.Response]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def answer(status: int = 200, body: Any = None, **headers: str) -> httpx.Response:
    """A JSON answer (`body` None: an empty object)."""
    return httpx.Response(status, json={} if body is None else body, headers=headers)


def garbage() -> httpx.Response:
    """What a proxy in front of a service answers when it fails: HTML with a 200."""
    return httpx.Response(200, text="<html><body>502 Bad Gateway</body></html>")


class Broken(httpx.SyncByteStream):
    """A body that breaks off after `head` (the connection dropped mid-download)."""

    def __init__(self, head: bytes) -> None:
        self.head = head

    def __iter__(self) -> Iterator[bytes]:
        yield self.head
        raise httpx.RemoteProtocolError("peer closed connection without sending complete body")


class Endless(httpx.SyncByteStream):
    """A body that never ends (no Content-Length): an image header, then zeros."""

    def __iter__(self) -> Iterator[bytes]:
        yield b"\x89PNG\r\n\x1a\n"
        while True:
            yield b"\0" * 65536


class Service:
    """The transport handler: records requests; queued answers first, then `handler`."""

    def __init__(self, handler: Callable[[httpx.Request], httpx.Response] | None = None) -> None:
        self.handler = handler
        self.queued: list[Answer] = []
        self.requests: list[httpx.Request] = []
        self.sleeps: list[float] = []

    def then(self, *answers: Answer) -> Service:
        self.queued.extend(answers)
        return self

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        if self.queued:
            next_answer = self.queued.pop(0)
        elif self.handler is not None:
            next_answer = self.handler
        else:
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        if isinstance(next_answer, httpx.Response):
            return next_answer
        if isinstance(next_answer, type):
            raise next_answer("scripted transport failure", request=request)
        return next_answer(request)

    def sent(self, path: str | None = None, method: str | None = None) -> list[httpx.Request]:
        """Requests so far whose path contains `path` (and with `method`)."""
        return [
            r
            for r in self.requests
            if (path is None or path in r.url.path) and (method is None or r.method == method)
        ]


def body_of(request: httpx.Request) -> Any:
    return json.loads(request.content)


def settings(**sections: dict[str, Any]) -> Settings:
    """The default settings (real base URLs: nothing leaves the mock), fast budgets."""
    data: dict[str, Any] = {"generation": dict(FAST_GENERATION)}
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return Settings.model_validate(data)


def credentials(**override: str | None) -> Credentials:
    return credentials_for({**KEYS, **override})


def build(
    cls: type,
    service: Service,
    config: Settings | None = None,
    *,
    limiter: Limiter = no_limit,
    keys: dict[str, str | None] | None = None,
    **key_override: str | None,
) -> Any:
    """A provider of `cls` over `service`: fast retries, sleeps recorded in `service.sleeps`;
    `keys` / `key_override` replace keys (piapi="wrong")."""
    ctx = ProviderContext(
        settings=config or settings(),
        credentials=credentials(**{**(keys or {}), **key_override}),
        usage=Usage(),
        limiter=limiter,
        transport=httpx.MockTransport(service),
    )
    provider = cls(ctx)
    provider.http.retry = FAST_RETRY
    provider.http.sleep = service.sleeps.append
    return provider
