"""Settings: one pydantic model for every setting (docs/SPEC.md §10), loaded from TOML, then
the environment, then CLI overrides.

Rooms: `values` (setting value types and their parsers), `sections` (the job's sections and
`providers.<role>`), `service_sections` (each service's options, `[concurrency]`, `[pricing]`),
`settings` (`Settings`, `Credentials`), `loading` (TOML, environment, overrides, messages, the
settings template). What the settings know of each service (the choices of `providers.<role>`,
the concurrency caps, the key and base-URL variables) derives from `genfactory.services`.
"""

from __future__ import annotations

from genfactory.config import sections, service_sections
from genfactory.config.loading import (
    ENV_PREFIX,
    NON_SETTING_ENV,
    apply_overrides,
    base_url_env,
    describe_validation_error,
    env_overrides,
    load_settings,
    non_setting_env,
    parse_set_option,
    read_toml,
    section_names,
    settings_template,
    validate_settings,
)
from genfactory.config.sections import *  # noqa: F403  (the names of its __all__)
from genfactory.config.service_sections import *  # noqa: F403  (the names of its __all__)
from genfactory.config.settings import Credentials, Settings
from genfactory.config.values import (
    AspectRatio,
    ImageSize,
    Lora,
    StrList,
    fit_size,
    parse_aspect_ratio,
    parse_image_size,
    parse_lora,
)

__all__ = [
    "ENV_PREFIX",
    "NON_SETTING_ENV",
    "AspectRatio",
    "Credentials",
    "ImageSize",
    "Lora",
    "Settings",
    "StrList",
    "apply_overrides",
    "base_url_env",
    "describe_validation_error",
    "env_overrides",
    "fit_size",
    "load_settings",
    "non_setting_env",
    "parse_aspect_ratio",
    "parse_image_size",
    "parse_lora",
    "parse_set_option",
    "read_toml",
    "section_names",
    "settings_template",
    "validate_settings",
]
__all__ += sections.__all__
__all__ += service_sections.__all__
