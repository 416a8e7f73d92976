"""Builds the provider chosen for each role from the settings (`providers.<role>`)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from genfactory.config import Credentials, Settings
from genfactory.errors import ConfigError
from genfactory.providers.base import Limiter, Usage, no_limit

#: (role, name) -> "module:Class". Classes take a ProviderContext and nothing else.
PROVIDERS: dict[tuple[str, str], str] = {
    ("prompt", "local"): "genfactory.providers.local_prompt:TemplatePromptProvider",
    ("image", "local"): "genfactory.providers.local_image:LocalRenderer",
    ("image", "files"): "genfactory.providers.local_files:LocalFiles",
    ("qc", "local"): "genfactory.providers.local_qc:LocalQC",
    ("background", "local"): "genfactory.providers.local_background:LocalBackgroundRemover",
    ("metadata", "local"): "genfactory.providers.local_metadata:LocalMetadata",
    ("image", "piapi"): "genfactory.providers.piapi:PiAPIMidjourney",
    ("image", "runware"): "genfactory.providers.runware:RunwareImages",
    ("image", "openai"): "genfactory.providers.openai_images:OpenAIImages",
    ("image", "sdwebui"): "genfactory.providers.sdwebui:SDWebUIImages",
    ("prompt", "openai"): "genfactory.providers.openai_chat:OpenAIPrompt",
    ("qc", "openai"): "genfactory.providers.openai_chat:OpenAIVisionQC",
    ("metadata", "openai"): "genfactory.providers.openai_chat:OpenAIVisionMetadata",
    ("background", "removebg"): "genfactory.providers.removebg:RemoveBG",
    # "none": no background removal; the entry keeps build_provider total (image kept as is).
    ("background", "none"): "genfactory.providers.no_background:KeepBackground",
}

#: Which key each remote provider needs: (Credentials field, environment variable).
#: OpenAI roles need OPENAI_API_KEY only on api.openai.com: local OpenAI-compatible servers
#: (Ollama, LM Studio, vLLM) run without one, so no key is sent when none is set.
#: Image providers a generation can be repeated at without paying again (local engines, a
#: self-hosted SD WebUI): a slot interrupted during its create call is simply run again.
REPEATABLE_IMAGE_PROVIDERS = frozenset({"local", "sdwebui", "files"})

REQUIRED_KEYS: dict[tuple[str, str], tuple[str, str]] = {
    ("image", "piapi"): ("piapi_api_key", "PIAPI_API_KEY"),
    ("image", "runware"): ("runware_api_key", "RUNWARE_API_KEY"),
    ("image", "openai"): ("openai_api_key", "OPENAI_API_KEY"),
    ("prompt", "openai"): ("openai_api_key", "OPENAI_API_KEY"),
    ("qc", "openai"): ("openai_api_key", "OPENAI_API_KEY"),
    ("metadata", "openai"): ("openai_api_key", "OPENAI_API_KEY"),
    ("background", "removebg"): ("remove_bg_api_key", "REMOVE_BG_API_KEY"),
}


def key_required(settings: Settings, role: str, name: str) -> bool:
    """False for OpenAI roles pointed at a server other than api.openai.com."""
    if name == "openai":
        return urlsplit(settings.openai.base_url).hostname == "api.openai.com"
    return (role, name) in REQUIRED_KEYS


ROLES = ("prompt", "image", "qc", "background", "metadata")


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


def provider_name(settings: Settings, role: str) -> str:
    return str(getattr(settings.providers, role))


def required_keys(settings: Settings) -> dict[str, tuple[str, str]]:
    """`providers.<role>` -> (Credentials field, environment variable) for every key the
    configured providers need."""
    needed = {}
    for role in ROLES:
        name = provider_name(settings, role)
        need = REQUIRED_KEYS.get((role, name))
        if need and key_required(settings, role, name):
            needed[f"providers.{role} = {name}"] = need
    return needed


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
