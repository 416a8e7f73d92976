"""`ServiceProvider`: the base of every provider that calls one HTTP service."""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from genfactory.errors import MalformedResponse
from genfactory.media import sniff_media_type
from genfactory.providers.base import ROLE_METHODS, scrub_answer
from genfactory.providers.http._client import ServiceClient
from genfactory.providers.http._policy import RAW_LIMIT

if TYPE_CHECKING:
    from genfactory.providers.registry import ProviderContext

T = TypeVar("T")


def _scrubbing(fn: Callable[..., T]) -> Callable[..., T]:
    """`fn` (a provider's role method) with its result scrubbed of every known secret."""

    @functools.wraps(fn)
    def wrapper(self: ServiceProvider, *args: Any, **kw: Any) -> T:
        result: T = scrub_answer(fn(self, *args, **kw), self.http.scrub)
        return result

    wrapper._scrubbed = True  # type: ignore[attr-defined]
    return wrapper


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
