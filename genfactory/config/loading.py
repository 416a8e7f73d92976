"""Loading settings (docs/SPEC.md §10): a TOML file, then the environment, then command-line
overrides; every mistake is one ConfigError naming the setting, the value and what is allowed."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from genfactory import services
from genfactory.config.settings import Settings
from genfactory.errors import ConfigError

ENV_PREFIX = "GENFACTORY_"

# ---------------------------------------------------------------------------------------------
# Loading: TOML file, then environment, then CLI overrides


def base_url_env() -> dict[str, tuple[str, str]]:
    """Plain env vars (the services' own names, `ServiceSpec.base_url_env`) -> the setting
    (section, "base_url") each one sets."""
    return {
        spec.base_url_env: (spec.options_section, "base_url")
        for spec in services.SERVICES.values()
        if spec.base_url_env
    }


#: GENFACTORY_* variables of genfactory that are not settings (the API key variables are
#: added from the service table). Others (a test harness's own) need no entry: only names that
#: look like a setting are checked.
NON_SETTING_ENV = frozenset(
    {"GENFACTORY_DATABASE_URL", "GENFACTORY_DATA_DIR", "GENFACTORY_PROCESS_POOL"}
)


def non_setting_env() -> frozenset[str]:
    """Every GENFACTORY_* variable that is not a setting: NON_SETTING_ENV and the keys'."""
    keys = {name for spec in services.keyed() for name in spec.key_env}
    return NON_SETTING_ENV | keys


def section_names() -> list[str]:
    return list(Settings.model_fields)


def _set_dotted(target: dict[str, Any], dotted: str, value: Any, source: str) -> None:
    parts = dotted.split(".")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(
            f"{source}: setting {dotted!r} must be written section.name "
            f"(sections: {', '.join(section_names())})"
        )
    section, name = parts
    if section not in Settings.model_fields:
        raise ConfigError(
            f"{source}: unknown settings section {section!r} in {dotted!r}; "
            f"known sections: {', '.join(section_names())}"
        )
    known = _section_model(section).model_fields
    if name not in known:
        raise ConfigError(
            f"{source}: unknown setting {dotted!r}; settings in [{section}]: {', '.join(known)}"
        )
    target.setdefault(section, {})[name] = value


def _section_model(section: str) -> type[BaseModel]:
    annotation = Settings.model_fields[section].annotation
    assert isinstance(annotation, type) and issubclass(annotation, BaseModel)
    return annotation


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = {key: dict(value) if isinstance(value, dict) else value for key, value in base.items()}
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def read_toml(path: Path) -> dict[str, Any]:
    """Read a settings file; every problem is a ConfigError naming the file."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"settings file {path} does not exist; check the --config path") from None
    except OSError as exc:
        raise ConfigError(f"settings file {path} cannot be read: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"settings file {path} is not valid TOML: {exc}") from None
    checked: dict[str, Any] = {}
    for section, values in data.items():
        if not isinstance(values, dict):
            raise ConfigError(
                f"settings file {path}: {section!r} must be a [section] table; "
                f"known sections: {', '.join(section_names())}"
            )
        for name, value in values.items():
            _set_dotted(checked, f"{section}.{name}", value, f"settings file {path}")
    # Relative paths in a settings file are relative to the file, as users expect.
    for section, name in (("job", "keywords_file"), ("prompts", "template")):
        value = checked.get(section, {}).get(name)
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            checked[section][name] = str((path.parent / value).resolve())
    return checked


def env_overrides(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Settings from GENFACTORY_<SECTION>__<NAME> and the services' *_BASE_URL variables."""
    env = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    for name, (section, field) in base_url_env().items():
        if env.get(name, "").strip():
            out.setdefault(section, {})[field] = env[name].strip()
    ignored = non_setting_env()
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name in ignored:
            continue
        rest = name[len(ENV_PREFIX) :]
        if "__" in rest:
            section, _, field = rest.partition("__")
            _set_dotted(out, f"{section.lower()}.{field.lower()}", value, f"environment {name}")
        elif any(rest.lower().startswith(s + "_") for s in section_names()):
            raise ConfigError(
                f"environment {name}: settings use a double underscore, e.g. "
                f"GENFACTORY_PROCESSING__JPG_QUALITY=90"
            )
    return out


def parse_set_option(item: str) -> tuple[str, Any]:
    """'processing.jpg_quality=90' -> ('processing.jpg_quality', 90): values parse as TOML."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(
            f"--set {item!r} must look like section.name=value, e.g. processing.jpg_quality=90"
        )
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # bare words: relax, png, 16:9,1:1 ...
    return key.strip(), value


def load_settings(
    config_file: Path | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build Settings from a TOML file, then the environment, then dotted-name overrides."""
    data: dict[str, Any] = read_toml(config_file) if config_file else {}
    data = _merge(data, env_overrides(environ))
    cli: dict[str, Any] = {}
    for dotted, value in (overrides or {}).items():
        _set_dotted(cli, dotted, value, "option")
    data = _merge(data, cli)
    return validate_settings(data)


def validate_settings(data: Mapping[str, Any]) -> Settings:
    """Validate a settings mapping, turning pydantic's report into one clear ConfigError."""
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, data)) from None


def describe_validation_error(exc: ValidationError, data: Mapping[str, Any]) -> str:
    messages = []
    for err in exc.errors():
        loc = ".".join(str(part) for part in err["loc"] if not isinstance(part, int))
        value = _lookup(data, [p for p in err["loc"]])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            messages.append(f"unknown setting {loc!r}")
        elif loc:
            shown = "" if value is _MISSING else f" = {value!r}"
            messages.append(f"setting {loc}{shown}: {msg}")
        else:
            messages.append(msg)
    return "invalid settings: " + "; ".join(messages)


_MISSING = object()


def _lookup(data: Any, path: list[Any]) -> Any:
    for part in path:
        if (isinstance(data, Mapping) and part in data) or (
            isinstance(data, list) and isinstance(part, int) and part < len(data)
        ):
            data = data[part]
        else:
            return _MISSING
    return data


def apply_overrides(settings: Settings, overrides: Mapping[str, Any]) -> Settings:
    """A copy of settings with dotted-name overrides applied and validated."""
    data = settings.model_dump(mode="json")
    extra: dict[str, Any] = {}
    for dotted, value in overrides.items():
        _set_dotted(extra, dotted, value, "override")
    return validate_settings(_merge(data, extra))


def settings_template() -> str:
    """A TOML document listing every setting with its default and description."""
    lines = ["# genfactory job settings: every setting with its default.", ""]
    for section in section_names():
        model = _section_model(section)
        lines.append(f"[{section}]")
        for name, field in model.model_fields.items():
            if field.description:
                lines.append(f"# {field.description}")
            default = field.get_default(call_default_factory=True)
            if default is None:
                lines.append(f"# {name} = ")
            else:
                lines.append(f"{name} = {_toml_value(default)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
