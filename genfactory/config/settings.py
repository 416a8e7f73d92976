"""The settings model of a job, and the API keys kept apart from it.

`Settings` holds no secret, so it can travel as a Prefect flow parameter and be stored as the
execution's snapshot. API keys live in `Credentials` (``SecretStr``), read from the environment
at run time and never serialised; its fields are the key fields of the service table.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from genfactory import services
from genfactory.config.sections import (
    GenerationSection,
    JobSection,
    MetadataSection,
    ProcessingSection,
    PromptSection,
    ProvidersSection,
    QualitySection,
)
from genfactory.config.service_sections import (
    ConcurrencySection,
    OpenAISection,
    PiAPISection,
    PricingSection,
    RemoveBGSection,
    RunwareSection,
    SDWebUISection,
)


class Settings(BaseModel):
    """Every setting of a job. Secret-free: safe as a flow parameter and as a stored snapshot."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    job: JobSection = Field(default_factory=JobSection)
    prompts: PromptSection = Field(default_factory=PromptSection)
    generation: GenerationSection = Field(default_factory=GenerationSection)
    providers: ProvidersSection = Field(default_factory=ProvidersSection)
    processing: ProcessingSection = Field(default_factory=ProcessingSection)
    qc: QualitySection = Field(default_factory=QualitySection)
    metadata: MetadataSection = Field(default_factory=MetadataSection)
    openai: OpenAISection = Field(default_factory=OpenAISection)
    piapi: PiAPISection = Field(default_factory=PiAPISection)
    runware: RunwareSection = Field(default_factory=RunwareSection)
    sdwebui: SDWebUISection = Field(default_factory=SDWebUISection)
    removebg: RemoveBGSection = Field(default_factory=RemoveBGSection)
    concurrency: ConcurrencySection = Field(default_factory=ConcurrencySection)
    pricing: PricingSection = Field(default_factory=PricingSection)

    @model_validator(mode="after")
    def _cross_checks(self) -> Settings:
        total = self.job.count * self.job.variations
        if total > 10_000:
            raise ValueError(f"job.count x job.variations = {total}; at most 10,000 images per job")
        if self.metadata.min_keywords > self.metadata.max_keywords:
            raise ValueError("metadata.min_keywords must not exceed metadata.max_keywords")
        return self


class Credentials:
    """API keys. Never part of Settings, never logged, stored or passed as a parameter.

    One attribute per key field of the service table (`ServiceSpec.key_field`, e.g.
    `piapi_api_key`): the key as a `SecretStr`, or None when it is not set.
    """

    __slots__ = ("_keys",)
    _keys: dict[str, SecretStr]

    def __init__(self, **keys: SecretStr | str | None) -> None:
        known = services.key_fields()
        unknown = sorted(set(keys) - set(known))
        if unknown:
            raise TypeError(
                f"unknown API key field {', '.join(unknown)}; known: {', '.join(known)}"
            )
        values = {
            name: value if isinstance(value, SecretStr) else SecretStr(value)
            for name, value in keys.items()
            if value is not None
        }
        object.__setattr__(self, "_keys", values)

    def __getattr__(self, name: str) -> SecretStr | None:
        if name.startswith("_") or name not in services.key_fields():
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return self._keys.get(name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Credentials are read only")

    def __reduce__(self) -> tuple[Any, tuple[dict[str, SecretStr]]]:
        # Copies and pickles rebuild through __init__ (read only: no state to set afterwards).
        return (_credentials, (dict(self._keys),))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Credentials) and self._keys == other._keys

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._keys)))

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}=SecretStr('**********')" for name in sorted(self._keys))
        return f"Credentials({shown})"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Credentials:
        """Read every key from the environment (blank values count as missing); each key's
        variables are its service's `key_env`, the first set wins."""
        env = os.environ if environ is None else environ
        values: dict[str, SecretStr | str | None] = {}
        for spec in services.keyed():
            if spec.key_field is None or spec.key_field in values:
                continue
            for name in spec.key_env:
                if env.get(name, "").strip():
                    values[spec.key_field] = env[name].strip()
                    break
        return cls(**values)

    def with_keys(self, **keys: SecretStr | str | None) -> Credentials:
        """A copy with `keys` added (None values are ignored)."""
        merged: dict[str, SecretStr | str | None] = dict(self._keys)
        merged.update({name: value for name, value in keys.items() if value is not None})
        return Credentials(**merged)

    def model_dump_json(self) -> str:
        """Which keys are set, each masked: what a serialised Credentials may show."""
        return json.dumps(
            {name: "**********" if name in self._keys else None for name in services.key_fields()}
        )

    def secret_values(self) -> list[str]:
        """The raw key strings, for the log redaction filter only."""
        return [
            value.get_secret_value() for value in self._keys.values() if value.get_secret_value()
        ]


def _credentials(keys: dict[str, SecretStr]) -> Credentials:
    return Credentials(**keys)
