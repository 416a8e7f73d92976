"""Builds the provider chosen for each role from the settings (`providers.<role>`).

What provider serves a role, the key it needs and where a missing key is looked up all come from
the service table (`genfactory.services`). What a provider does differently (images per task, a
create that costs nothing to repeat, a fixed render size) is stated on its class and read here
without building it (`ImageProviderFacts` in `providers.base`).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit

import httpx

from genfactory import services
from genfactory.config import Credentials, Settings
from genfactory.errors import ConfigError
from genfactory.providers.base import (
    BackgroundRemover,
    CombinedQCMetadata,
    ImageProvider,
    ImageProviderFacts,
    Limiter,
    MetadataProvider,
    PromptProvider,
    QCProvider,
    Usage,
    no_limit,
)

ROLES = services.ROLES


class _RoleTable(Mapping[tuple[str, str], str]):
    """(role, name) -> "module:Class", read from the service table on every use."""

    def _table(self) -> dict[tuple[str, str], str]:
        return {
            (role, spec.name): target
            for spec in services.SERVICES.values()
            for role, target in spec.roles.items()
        }

    def __getitem__(self, key: tuple[str, str]) -> str:
        return self._table()[key]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())


#: (role, name) -> "module:Class" of every service's roles: a read-only view of the table.
PROVIDERS: Mapping[tuple[str, str], str] = _RoleTable()


@dataclass
class ProviderContext:
    """Everything a provider may use: settings, keys, usage counters, concurrency limiter."""

    settings: Settings
    credentials: Credentials = field(default_factory=Credentials)
    usage: Usage = field(default_factory=Usage)
    limiter: Limiter = no_limit
    #: Runs a picklable top-level function with its arguments: the task layer passes its
    #: process pool (`engine.pool.run_in_pool`) so model inference uses every core.
    run_heavy: Callable[..., Any] = field(default=lambda fn, *args: fn(*args), compare=False)
    #: The HTTP transport of every remote provider (None: the network); tests pass an
    #: `httpx.MockTransport` to see and answer each request.
    transport: httpx.BaseTransport | None = field(default=None, compare=False)


def provider_name(settings: Settings, role: str) -> str:
    return str(getattr(settings.providers, role))


# ---------------------------------------------------------------------------------------------
# Keys


def key_required(settings: Settings, role: str, name: str) -> bool:
    """Whether the provider `name` for `role` needs its key: a service with a key field does,
    except one with `key_only_for_host` pointed at another host (OpenAI-compatible servers such
    as Ollama, LM Studio or vLLM run without one, so no key is sent when none is set)."""
    spec = services.service(name)
    if spec is None or spec.key_field is None or role not in spec.roles:
        return False
    if spec.key_only_for_host is None:
        return True
    options = getattr(settings, spec.options_section, None)
    base_url = str(getattr(options, "base_url", "") or "")
    return urlsplit(base_url).hostname == spec.key_only_for_host


def required_keys(settings: Settings) -> dict[str, tuple[str, str]]:
    """`providers.<role> = <name>` -> (Credentials field, environment variable) for every key
    the configured providers need."""
    needed = {}
    for role in ROLES:
        name = provider_name(settings, role)
        spec = services.service(name)
        if spec and spec.key_field and spec.key_variable and key_required(settings, role, name):
            needed[f"providers.{role} = {name}"] = (spec.key_field, spec.key_variable)
    return needed


def needed_services(settings: Settings) -> list[services.ServiceSpec]:
    """The services whose keys the configured providers need, each once."""
    specs = {}
    for role in ROLES:
        name = provider_name(settings, role)
        spec = services.service(name)
        if spec is not None and key_required(settings, role, name):
            specs[spec.name] = spec
    return list(specs.values())


def check_credentials(settings: Settings, credentials: Credentials) -> None:
    """Fail before any work when a chosen remote provider has no key."""
    missing = [
        f"{choice} needs {env}"
        for choice, (field_name, env) in required_keys(settings).items()
        if getattr(credentials, field_name) is None
    ]
    if missing:
        raise ConfigError(
            "missing API key: " + "; ".join(missing) + ". Set it in the environment "
            "(or a Prefect Secret block), or choose the `local` provider."
        )


# ---------------------------------------------------------------------------------------------
# Classes and their facts


def provider_class(role: str, name: str) -> type[Any]:
    """The class serving `role` for the service `name` (imported, not built)."""
    spec = services.service(name)
    target = spec.roles.get(role) if spec else None
    if target is None:
        raise ConfigError(
            f"providers.{role} = {name!r} is not available; "
            f"choose one of {', '.join(sorted(services.names_for(role)))}"
        )
    module_name, _, class_name = target.partition(":")
    cls: type[Any] = getattr(importlib.import_module(module_name), class_name)
    return cls


def _image_class(settings: Settings) -> type[Any]:
    return provider_class("image", settings.providers.image)


def _fact(settings: Settings, name: str) -> Any:
    """One of `ImageProviderFacts` as the configured image provider's class states it."""
    return getattr(_image_class(settings), name, getattr(ImageProviderFacts, name))


def images_per_slot(settings: Settings) -> int:
    """Images one generation returns: the image provider's `images_per_task` when it returns a
    fixed number (Midjourney's grid of 4), else `job.variations`."""
    fixed = _fact(settings, "images_per_task")
    return int(fixed) if fixed else settings.job.variations


def repeatable_create(settings: Settings) -> bool:
    """True when a generation can be created again without paying again (local engines, a
    self-hosted SD WebUI): a slot interrupted during its create call is simply run again."""
    return bool(_fact(settings, "repeatable_create"))


def fixed_long_side(settings: Settings) -> int | None:
    """The long side the image provider renders at whatever the size settings say (the local
    renderer: `generation.local_long_side`), or None."""
    value = _fact(settings, "fixed_long_side")(settings)
    return int(value) if value else None


def check_prompt_template(settings: Settings, template: str) -> None:
    """Let the prompt provider refuse a template it cannot use (the local provider: one of
    instructions to a model), before anything is created; its `check_template(template, path)`."""
    check = getattr(provider_class("prompt", settings.providers.prompt), "check_template", None)
    if callable(check):
        check(template, settings.prompts.template)


def build_provider(role: str, ctx: ProviderContext) -> Any:
    """Instantiate the provider configured for `role`."""
    return provider_class(role, provider_name(ctx.settings, role))(ctx)


# ---------------------------------------------------------------------------------------------
# The providers of one job


class ProviderSet:
    """The job's provider of each role, typed by its Protocol, each built on first use (a role
    the job never calls costs nothing).

    `qc_metadata` is the QC provider when it also writes metadata in the same call
    (`CombinedQCMetadata`), else None. Which class serves a role is the service table's
    (tests swap one with `services.overridden`).
    """

    def __init__(self, ctx: ProviderContext) -> None:
        self.ctx = ctx
        self._built: dict[str, object] = {}
        self._lock = threading.Lock()

    def _get(self, role: str) -> object:
        with self._lock:
            if role not in self._built:
                self._built[role] = build_provider(role, self.ctx)
            return self._built[role]

    @property
    def prompt(self) -> PromptProvider:
        return cast(PromptProvider, self._get("prompt"))

    @property
    def image(self) -> ImageProvider:
        return cast(ImageProvider, self._get("image"))

    @property
    def qc(self) -> QCProvider:
        return cast(QCProvider, self._get("qc"))

    @property
    def qc_metadata(self) -> CombinedQCMetadata | None:
        qc = self._get("qc")
        return qc if isinstance(qc, CombinedQCMetadata) else None

    @property
    def background(self) -> BackgroundRemover:
        return cast(BackgroundRemover, self._get("background"))

    @property
    def metadata(self) -> MetadataProvider:
        return cast(MetadataProvider, self._get("metadata"))

    def close(self) -> None:
        """Close every provider built so far (their connection pools)."""
        with self._lock:
            for provider in self._built.values():
                close = getattr(provider, "close", None)
                if callable(close):
                    close()
            self._built.clear()
