"""Pytest fixtures and helpers for tests that talk to the fake services over loopback.

Import the fixture where it is needed (`from tests.fakes.fixtures import fake_services`) or from
the main conftest. Helpers build Settings, Credentials and a ProviderContext aimed at the fakes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pytest
from pydantic import SecretStr

from genfactory import services
from genfactory.config import Credentials, Settings
from genfactory.providers.base import GenerationRequest, Limiter, Usage, no_limit
from genfactory.providers.http import RetryPolicy
from genfactory.providers.registry import ProviderContext
from tests.fakes.server import FakeServices, encode, render

#: Small budgets so a hung or slow fake costs tests fractions of a second.
FAST_GENERATION: dict[str, Any] = {
    "http_timeout_seconds": 2.0,
    "polling_interval_seconds": 0.05,
    "polling_timeout_minutes": 0.5,
    "max_poll_errors": 3,
}

#: In-call retries for tests: three tries, short backoff.
FAST_RETRY = RetryPolicy(attempts=3, base_delay=0.05, max_sleep=5.0)


def png(prompt: str = "a red fox", size: tuple[int, int] = (256, 256), fmt: str = "PNG") -> bytes:
    """A rendered test image (`fmt`: any Pillow format name)."""
    return encode(render(prompt, *size), fmt)


def gen_request(**kw: Any) -> GenerationRequest:
    """A generation request for a red fox, 1:1, 1024 px; `kw` overrides."""
    values: dict[str, Any] = {
        "prompt": "a red fox in snow",
        "aspect_ratio": "1:1",
        "width": 1024,
        "height": 1024,
    }
    return GenerationRequest(**{**values, **kw})


@pytest.fixture
def fake_services() -> Iterator[FakeServices]:
    """The fake services on a free 127.0.0.1 port, stopped after the test."""
    fake = FakeServices().start()
    try:
        yield fake
    finally:
        fake.stop()


@contextmanager
def exported_fakes(monkeypatch: pytest.MonkeyPatch, **options: Any) -> Iterator[FakeServices]:
    """The fake services (`FakeServices(**options)`) running, with the environment a user would
    export for them (base URLs and keys) set for the test; stopped afterwards."""
    fake = FakeServices(**options).start()
    for name, value in fake.env().items():
        monkeypatch.setenv(name, value)
    try:
        yield fake
    finally:
        fake.stop()


def fake_settings(fake: FakeServices, **sections: dict[str, Any]) -> Settings:
    """Settings whose service base URLs point at the fakes, with fast generation budgets;
    `sections` are merged over that (e.g. providers={"image": "piapi"})."""
    data: dict[str, Any] = {**fake.settings_data(), "generation": dict(FAST_GENERATION)}
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return Settings.model_validate(data)


def credentials_for(keys: Mapping[str, str | None]) -> Credentials:
    """Credentials holding `keys` (service name -> key; None or "" leaves a key unset), each
    in the field the service table names for it."""
    fields = {spec.key_field: keys.get(spec.name) for spec in services.keyed() if spec.key_field}
    return Credentials(**{k: SecretStr(v) for k, v in fields.items() if v})


def fake_credentials(fake: FakeServices, **override: str | None) -> Credentials:
    """Credentials holding the fakes' keys (override per service: piapi="wrong")."""
    return credentials_for({**fake.keys, **override})


def fake_context(
    fake: FakeServices,
    settings: Settings | None = None,
    *,
    limiter: Limiter = no_limit,
    keys: Mapping[str, str | None] | None = None,
    **key_override: str | None,
) -> ProviderContext:
    """A context with the fakes' settings and keys; `keys`/`key_override` replace keys."""
    return ProviderContext(
        settings=settings or fake_settings(fake),
        credentials=fake_credentials(fake, **{**(keys or {}), **key_override}),
        usage=Usage(),
        limiter=limiter,
    )
