"""Every service and engine genfactory can use, stated once.

One `ServiceSpec` per service: its name (the value of `providers.<role>`, the settings section
of its options and the `concurrency.<name>` cap), how messages name it, the API key it needs
(Credentials field, environment variables, Prefect Secret block), the variable that points it
at another server, and the provider class that serves each role. Config, the provider registry,
the HTTP layer and secrets loading all derive from this table: adding a provider is its module
plus one entry in the table's data file, `genfactory/data/services.toml` (read once, here).
Facts about one provider's behaviour (how many images a Midjourney task returns, which creates
can be repeated for free) live with that provider, not here.

This module imports nothing of genfactory: every other layer may read it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType
from typing import Any

#: The roles a job fills, in pipeline order.
ROLES = ("prompt", "image", "qc", "background", "metadata")


@dataclass(frozen=True)
class ServiceSpec:
    """One service or local engine, and everything the project states about it."""

    name: str
    label: str
    #: role -> "module:Class"; each class takes a ProviderContext and nothing else.
    roles: Mapping[str, str]
    #: Credentials field holding its API key; None for services that need none.
    key_field: str | None = None
    #: Environment variables holding the key, the first set wins.
    key_env: tuple[str, ...] = ()
    #: Name of the Prefect Secret block a missing key is looked up in.
    secret_block: str | None = None
    #: Environment variable that sets `<name>.base_url`.
    base_url_env: str | None = None
    #: Default of `concurrency.<name>` (calls in flight across a job); None = not capped.
    concurrency: int | None = None
    #: The key is needed only when `<name>.base_url` is on this host (OpenAI-compatible servers
    #: such as Ollama or vLLM run without one).
    key_only_for_host: str | None = None
    #: Settings section of its options (`<section>.base_url` ...); None = a section of its own
    #: name. A provider compatible with another service's API may share that service's section.
    section: str | None = None

    def __post_init__(self) -> None:
        unknown = sorted(set(self.roles) - set(ROLES))
        if not self.roles or unknown:
            raise ValueError(
                f"service {self.name!r}: roles must be some of {', '.join(ROLES)}"
                + (f"; unknown: {', '.join(unknown)}" if unknown else "")
            )
        if bool(self.key_field) != bool(self.key_env):
            raise ValueError(f"service {self.name!r}: key_field and key_env go together")

    @property
    def options_section(self) -> str:
        """The settings section holding its options."""
        return self.section or self.name

    @property
    def key_variable(self) -> str | None:
        """The environment variable messages tell the user to set."""
        return self.key_env[0] if self.key_env else None


def _load_specs() -> tuple[ServiceSpec, ...]:
    """The shipped table, `genfactory/data/services.toml`, in its order."""
    text = resources.files("genfactory").joinpath("data/services.toml").read_text("utf-8")
    return tuple(
        ServiceSpec(**{**entry, "key_env": tuple(entry.get("key_env", ()))})
        for entry in tomllib.loads(text)["service"]
    )


_SPECS: tuple[ServiceSpec, ...] = _load_specs()
_entries: dict[str, ServiceSpec] = {spec.name: spec for spec in _SPECS}
_lock = threading.Lock()

#: name -> spec, in the order of the table (a live, read-only view: entries added with `registered`
#: show here while they are registered).
SERVICES: Mapping[str, ServiceSpec] = MappingProxyType(_entries)


def service(name: str) -> ServiceSpec | None:
    """The spec of `name`, or None for a name no entry has."""
    return SERVICES.get(name)


def names_for(role: str) -> tuple[str, ...]:
    """The values `providers.<role>` accepts, in table order."""
    return tuple(spec.name for spec in SERVICES.values() if role in spec.roles)


def keyed() -> tuple[ServiceSpec, ...]:
    """Services that take an API key."""
    return tuple(spec for spec in SERVICES.values() if spec.key_field)


def key_fields() -> tuple[str, ...]:
    """The Credentials fields: one per key, in table order (services may share a key)."""
    return tuple(dict.fromkeys(spec.key_field for spec in keyed() if spec.key_field))


def capped() -> tuple[ServiceSpec, ...]:
    """Services with a `concurrency.<name>` cap."""
    return tuple(spec for spec in SERVICES.values() if spec.concurrency is not None)


def label(name: str) -> str:
    """How messages name the service `name` (the name itself when no entry has it)."""
    spec = SERVICES.get(name)
    return spec.label if spec else name


@contextlib.contextmanager
def registered(*specs: ServiceSpec) -> Iterator[tuple[ServiceSpec, ...]]:
    """Add service entries for the duration of a with-block: every reader of the table (the
    choices of `providers.<role>`, keys and Secret blocks, base-URL variables, the registry)
    sees them. For tests and experiments; a shipped provider is an entry of `data/services.toml`.

    Settings models are built from the table when `genfactory.config` is imported, so an entry
    added here has no `concurrency.<name>` setting (its cap is its `concurrency` default) and
    no settings section of its own (give it `section=` of a service whose options it shares).
    """
    with _lock:
        taken = [spec.name for spec in specs if spec.name in _entries]
        if taken:
            raise ValueError(f"service {', '.join(taken)} is already in the table")
        for spec in specs:
            _entries[spec.name] = spec
    try:
        yield specs
    finally:
        with _lock:
            for spec in specs:
                _entries.pop(spec.name, None)


@contextlib.contextmanager
def overridden(name: str, **changes: Any) -> Iterator[ServiceSpec]:
    """Replace fields of the entry `name` for the duration of a with-block (e.g. the class of
    one of its roles, to run a job against a scripted provider); restored afterwards."""
    with _lock:
        before = _entries[name]
        roles = changes.pop("roles", None)
        spec = dataclasses.replace(before, **changes, roles={**before.roles, **(roles or {})})
        _entries[name] = spec
    try:
        yield spec
    finally:
        with _lock:
            _entries[name] = before


__all__ = [
    "ROLES",
    "SERVICES",
    "ServiceSpec",
    "capped",
    "key_fields",
    "keyed",
    "label",
    "names_for",
    "overridden",
    "registered",
    "service",
]
