"""The options of each service (base URL, models ...), the concurrency caps and the prices.

`[concurrency]` has one cap per service of the table (`genfactory.services`) with a concurrency
default, named after the service, and `scope`.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, create_model

from genfactory import services
from genfactory.config.sections import _Section
from genfactory.config.values import StrList


def _env_of(service: str) -> str:
    """`<service>.base_url`'s description: the variable that sets it, from the service table."""
    spec = services.service(service)
    return f"Env {spec.base_url_env}." if spec and spec.base_url_env else ""


class OpenAISection(_Section):
    base_url: str = Field("https://api.openai.com/v1", description=_env_of("openai"))
    model: str = "gpt-4o"
    vision_model: str | None = Field(None, description="Default: model.")
    image_model: str = "gpt-image-1"
    image_quality: str = Field("auto", description="gpt-image-1: low|medium|high|auto.")
    temperature: float = Field(0.7, ge=0, le=2)
    max_attempts: int = Field(
        3,
        ge=1,
        le=10,
        description="Calls in all per image and step when answers are malformed (the re-ask "
        "policy); malformed bodies are not also retried by the HTTP layer.",
    )


class PiAPISection(_Section):
    base_url: str = Field("https://api.piapi.ai", description=_env_of("piapi"))
    create_path: str = "/api/v1/task"
    poll_path: str = "/api/v1/task/{task_id}"
    model: str = "midjourney"
    task_type: str = "imagine"
    auth_header: str = "X-API-Key"
    output_fields: Annotated[list[str], StrList] = Field(
        default_factory=lambda: ["temporary_image_urls", "image_urls", "image_url"],
        description="Where images are found in data.output, in order of preference.",
    )


class RunwareSection(_Section):
    base_url: str = Field("https://api.runware.ai/v1", description=_env_of("runware"))
    model: str = "runware:100@1"
    steps: int | None = Field(None, ge=1, le=100)
    output_type: Literal["URL", "base64Data"] = "URL"
    output_format: Literal["PNG", "JPG", "WEBP"] = "PNG"


class SDWebUISection(_Section):
    base_url: str = Field("http://127.0.0.1:7860", description=_env_of("sdwebui"))
    steps: int = Field(30, ge=1, le=150)
    sampler: str = "Euler a"
    cfg_scale: float = Field(7.0, ge=1, le=30)


class RemoveBGSection(_Section):
    base_url: str = Field("https://api.remove.bg", description=_env_of("removebg"))


#: Where the caps hold (`concurrency.scope`).
Scope = Literal["process", "prefect", "auto"]


class _Concurrency(_Section):
    """In-flight calls per service, across all slots of a job."""

    def cap(self, service: str) -> int | None:
        """`concurrency.<service>`, or None for a service without a cap setting."""
        value = getattr(self, service, None)
        return value if isinstance(value, int) and not isinstance(value, bool) else None


def _concurrency_fields() -> dict[str, Any]:
    fields: dict[str, Any] = {
        spec.name: (int, Field(spec.concurrency, ge=1, le=64)) for spec in services.capped()
    }
    fields["scope"] = (
        Scope,
        Field(
            "process",
            description="Where the caps hold: process = this process (fast; one machine), "
            "prefect = Prefect global concurrency limits across workers and jobs (each acquire "
            "costs 0.1-5 s on a busy server), auto = prefect when PREFECT_API_URL is set.",
        ),
    )
    return fields


if TYPE_CHECKING:
    # What mypy sees of the model built below: the per-service caps are read with `cap()`.
    class ConcurrencySection(_Concurrency):
        scope: Scope = "process"

else:
    ConcurrencySection = create_model(
        "ConcurrencySection",
        __base__=_Concurrency,
        __module__=__name__,
        __doc__=_Concurrency.__doc__,
        **_concurrency_fields(),
    )


def _pricing_fields() -> dict[str, Any]:
    """The `[pricing]` settings, from `genfactory/data/prices.toml` (the published prices)."""
    text = resources.files("genfactory").joinpath("data/prices.toml").read_text("utf-8")
    return {
        name: (
            type(entry["default"]),
            Field(entry["default"], ge=0, description=entry["description"]),
        )
        for name, entry in tomllib.loads(text).items()
    }


class _Pricing(_Section):
    """Prices in USD for cost estimates (`--dry-run`, `jobs show`, `job.max_cost`).

    Defaults as published, retrieved 2026-12-01; prices change: edit them for your plan.
    """


if TYPE_CHECKING:
    # What mypy sees of the model built below (the names and types of data/prices.toml; every
    # setting has its default there).
    class PricingSection(_Pricing):
        def __init__(self, **values: float) -> None: ...

        piapi_relax_per_task: float
        piapi_fast_per_task: float
        piapi_turbo_per_task: float
        runware_per_image: float
        openai_image_per_image: float
        openai_image_output_per_million: float
        openai_input_per_million: float
        openai_output_per_million: float
        openai_vision_input_tokens: int
        openai_vision_output_tokens: int
        openai_prompt_input_tokens: int
        openai_prompt_output_tokens: int
        removebg_per_credit: float
        sdwebui_per_image: float

else:
    PricingSection = create_model(
        "PricingSection",
        __base__=_Pricing,
        __module__=__name__,
        __doc__=_Pricing.__doc__,
        **_pricing_fields(),
    )


__all__ = [
    "ConcurrencySection",
    "OpenAISection",
    "PiAPISection",
    "PricingSection",
    "RemoveBGSection",
    "RunwareSection",
    "SDWebUISection",
]
