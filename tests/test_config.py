"""Settings: TOML → environment → CLI precedence, clear errors, secrets kept out."""

from __future__ import annotations

from pathlib import Path

import pytest

from genfactory.config import (
    Credentials,
    Settings,
    load_settings,
    parse_set_option,
    settings_template,
)
from genfactory.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_precedence_file_then_env_then_cli(tmp_path: Path) -> None:
    config = tmp_path / "job.toml"
    config.write_text("[processing]\njpg_quality = 70\nsaturation = 1.2\n[job]\ncount = 2\n")
    settings = load_settings(
        config,
        environ={"GENFACTORY_PROCESSING__JPG_QUALITY": "80", "GENFACTORY_JOB__COUNT": "5"},
        overrides={"job.count": 7},
    )
    assert settings.processing.jpg_quality == 80  # env beats file
    assert settings.processing.saturation == 1.2  # file beats default
    assert settings.job.count == 7  # CLI beats env


def test_defaults_match_the_original_app() -> None:
    s = Settings()
    assert (s.job.count, s.job.variations, s.generation.retries) == (1, 1, 1)
    assert s.processing.sharpening == 5 and s.processing.saturation == 1.4
    assert (s.processing.jpg_quality, s.processing.webp_quality) == (85, 85)
    assert s.processing.remove_bg_size == "auto" and s.processing.jpg_background == "white"
    assert s.generation.aspect_ratios == ["1:1", "16:9", "9:16"]
    assert s.generation.polling_timeout_minutes == 15 and s.generation.http_timeout_seconds == 30
    assert s.openai.model == "gpt-4o" and s.generation.midjourney_version == "6.1"
    assert all(getattr(s.providers, role) == "local" for role in s.providers.model_fields)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"generation.aspect_ratios": "16-9"}, "'16-9' must look like W:H"),
        ({"generation.aspect_ratios": "0:1"}, "'0:1' has a zero side"),
        ({"processing.jpg_quality": 0}, "processing.jpg_quality = 0"),
        ({"processing.jpg_quality": 101}, "processing.jpg_quality = 101"),
        ({"job.count": 0}, "job.count = 0"),
        ({"providers.image": "dalle"}, "providers.image = 'dalle'"),
        ({"processing.remove_bg_size": "huge"}, "'auto', 'preview', 'full' or '50MP'"),
        ({"generation.image_sizes": "1020x1024"}, "multiple of 8"),
        ({"generation.loras": "model:11"}, "weight must be between 0 and 10"),
        ({"job.count": 5000, "job.variations": 3}, "at most 10,000 images"),
        ({"processing.sharpening": 3.3}, "processing.sharpening"),
    ],
)
def test_bad_values_name_the_setting_and_the_rule(overrides: dict, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(overrides=overrides, environ={})
    assert fragment in str(info.value)


def test_unknown_keys_are_errors_everywhere(tmp_path: Path) -> None:
    config = tmp_path / "job.toml"
    config.write_text("[processing]\njpeg_quality = 90\n")
    with pytest.raises(ConfigError, match="unknown setting 'processing.jpeg_quality'"):
        load_settings(config, environ={})
    with pytest.raises(ConfigError, match="unknown settings section 'procesing'"):
        load_settings(environ={"GENFACTORY_PROCESING__JPG_QUALITY": "9"})
    with pytest.raises(ConfigError, match="double underscore"):
        load_settings(environ={"GENFACTORY_PROCESSING_JPG_QUALITY": "9"})
    with pytest.raises(ConfigError, match="section.name"):
        load_settings(overrides={"jpg_quality": 9}, environ={})


def test_broken_or_missing_settings_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", environ={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[job\ncount = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(bad, environ={})


def test_set_option_values_parse_as_toml() -> None:
    assert parse_set_option("processing.jpg_quality=90") == ("processing.jpg_quality", 90)
    assert parse_set_option("processing.remove_bg=true") == ("processing.remove_bg", True)
    assert parse_set_option("generation.aspect_ratios=1:1,16:9") == (
        "generation.aspect_ratios",
        "1:1,16:9",
    )
    with pytest.raises(ConfigError):
        parse_set_option("novalue")


def test_relative_paths_in_a_settings_file_are_relative_to_it() -> None:
    settings = load_settings(EXAMPLES / "job.toml", environ={})
    assert settings.job.keywords_file == EXAMPLES / "keywords.txt"


def test_example_job_toml_lists_every_setting() -> None:
    text = (EXAMPLES / "job.toml").read_text()
    for section, model in Settings.model_fields.items():
        assert f"[{section}]" in text
        for name in model.annotation.model_fields:  # type: ignore[union-attr]
            assert f"{name} =" in text, f"{section}.{name} missing from examples/job.toml"
    assert settings_template().count("[") >= len(Settings.model_fields)


def test_example_job_toml_shows_the_real_defaults() -> None:
    """Every value not marked as changed for the example is the model's default."""
    changed = set()
    section = ""
    for line in (EXAMPLES / "job.toml").read_text().splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif "# example value" in line:
            changed.add((section, line.split("=")[0].strip()))
    example = load_settings(EXAMPLES / "job.toml", environ={}).model_dump()
    defaults = Settings().model_dump()
    for section_name, values in defaults.items():
        for name, default in values.items():
            if (section_name, name) not in changed:
                assert example[section_name][name] == default, f"{section_name}.{name}"


def test_secrets_come_from_the_environment_and_never_serialise() -> None:
    creds = Credentials.from_env(
        {"OPENAI_API_KEY": "fake-openai-key-abcdef123456", "PIAPI_API_KEY": " "}
    )
    assert creds.openai_api_key is not None and creds.piapi_api_key is None
    assert "fake-openai-key-abcdef123456" not in repr(creds)
    assert "fake-openai-key-abcdef123456" not in creds.model_dump_json()
    # Settings have no field that could carry a key.
    assert "api_key" not in Settings().model_dump_json()


def test_service_facts_come_from_the_service_table() -> None:
    from genfactory import services
    from genfactory.config import base_url_env

    for role in services.ROLES:
        assert Settings().providers.model_fields[role].default == "local"
        with pytest.raises(ConfigError) as info:
            load_settings(overrides={f"providers.{role}": "nope"}, environ={})
        for name in services.names_for(role):
            assert repr(name) in str(info.value)  # the message lists every valid choice
    caps = Settings().concurrency
    for spec in services.capped():
        assert caps.cap(spec.name) == spec.concurrency
    assert set(type(caps).model_fields) == {s.name for s in services.capped()} | {"scope"}
    for spec in services.keyed():
        env = {spec.key_env[-1]: "fake-key-value-123"}
        assert getattr(Credentials.from_env(env), str(spec.key_field)) is not None
        load_settings(environ=env)  # GENFACTORY_<KEY> variables are not settings
    for name, (section, field) in base_url_env().items():
        assert field in Settings.model_fields[section].annotation.model_fields  # type: ignore[union-attr]
        settings = load_settings(environ={name: "http://127.0.0.1:9/x"})
        assert getattr(getattr(settings, section), field) == "http://127.0.0.1:9/x"
    names = {"PIAPI_BASE_URL", "OPENAI_BASE_URL", "REMOVE_BG_BASE_URL", "SDWEBUI_BASE_URL"}
    assert names | {"RUNWARE_BASE_URL"} == set(base_url_env())


def test_non_settings_variables_are_ignored_and_settings_typos_are_not() -> None:
    from genfactory.config import non_setting_env

    # Production config lists no test harness variable and no dead one; they are ignored.
    listed = non_setting_env()
    for name in (
        "GENFACTORY_TEST_POSTGRES_URL",
        "GENFACTORY_REQUIRE_POSTGRES",
        "GENFACTORY_LOG_LEVEL",
    ):
        assert name not in listed
    env = {"GENFACTORY_TEST_POSTGRES_URL": "postgresql://x", "GENFACTORY_REQUIRE_POSTGRES": "1"}
    assert load_settings(environ=env) == Settings()
    with pytest.raises(ConfigError, match="double underscore"):
        load_settings(environ={"GENFACTORY_PIAPI_BASE_URL": "http://x"})
    with pytest.raises(ConfigError, match="unknown setting 'piapi.api_key'"):
        load_settings(environ={"GENFACTORY_PIAPI__API_KEY": "x"})


def test_credentials_copy_and_compare_by_their_keys() -> None:
    import copy
    import pickle

    creds = Credentials(piapi_api_key="fake-piapi-key-abcdef")
    assert pickle.loads(pickle.dumps(creds)) == creds == copy.deepcopy(creds)
    assert creds != Credentials()
    with pytest.raises(AttributeError):
        creds.piapi_api_key = None
    with pytest.raises(AttributeError):
        _ = creds.piapi_key  # a typo is an error, not a missing key


def test_the_typed_view_of_pricing_names_every_price_of_the_table() -> None:
    # mypy reads the `PricingSection` stub; the model is built from data/prices.toml. A price
    # added, renamed or retyped in one and not the other must fail here, not in a user's run.
    import ast
    import inspect

    from genfactory.config import service_sections

    tree = ast.parse(inspect.getsource(service_sections))
    (stub,) = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef) and node.name == "PricingSection"
    ]
    typed = {
        node.target.id: ast.unparse(node.annotation)
        for node in stub.body
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
    }
    built = {
        name: field.annotation.__name__
        for name, field in service_sections.PricingSection.model_fields.items()
    }
    assert typed == built
