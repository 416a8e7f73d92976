"""Builds the provider chosen for each role from the settings (`providers.<role>`)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from genfactory.config import Credentials, Settings
from genfactory.errors import ConfigError
from genfactory.providers.base import Limiter, Usage, no_limit

#: (role, name) -> "module:Class". Classes take a ProviderContext and nothing else.
PROVIDERS: dict[tuple[str, str], str] = {
    ("prompt", "local"): "genfactory.providers.local_prompt:TemplatePromptProvider",
    ("image", "local"): "genfactory.providers.local_image:LocalRenderer",
    ("qc", "local"): "genfactory.providers.local_qc:LocalQC",
    ("background", "local"): "genfactory.providers.local_background:LocalBackgroundRemover",
    ("metadata", "local"): "genfactory.providers.local_metadata:LocalMetadata",
}

#: Which key each remote provider needs: (Credentials field, environment variable).
REQUIRED_KEYS: dict[tuple[str, str], tuple[str, str]] = {}

ROLES = ("prompt", "image", "qc", "background", "metadata")


@dataclass
class ProviderContext:
    """Everything a provider may use: settings, keys, usage counters, concurrency limiter."""

    settings: Settings
    credentials: Credentials = field(default_factory=Credentials)
    usage: Usage = field(default_factory=Usage)
    limiter: Limiter = no_limit


def provider_name(settings: Settings, role: str) -> str:
    return str(getattr(settings.providers, role))


def check_credentials(settings: Settings, credentials: Credentials) -> None:
    """Fail before any work when a chosen remote provider has no key."""
    missing = []
    for role in ROLES:
        need = REQUIRED_KEYS.get((role, provider_name(settings, role)))
        if need and getattr(credentials, need[0]) is None:
            missing.append(f"providers.{role} = {provider_name(settings, role)} needs {need[1]}")
    if missing:
        raise ConfigError(
            "missing API key: " + "; ".join(missing) + ". Set it in the environment "
            "(or a Prefect Secret block), or choose the `local` provider."
        )


def build_provider(role: str, ctx: ProviderContext) -> Any:
    """Instantiate the provider configured for `role`."""
    name = provider_name(ctx.settings, role)
    target = PROVIDERS.get((role, name))
    if target is None:
        known = sorted(n for r, n in PROVIDERS if r == role)
        raise ConfigError(
            f"providers.{role} = {name!r} is not available; choose one of {', '.join(known)}"
        )
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(ctx)
