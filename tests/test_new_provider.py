"""Adding a provider is its module plus one `ServiceSpec` entry.

A second SD-WebUI-compatible image service behind an API key, written here as its module would
be, and added by one entry (`services.registered`): `providers.image = webui2` validates, its
key and base-URL variables work, and a real job produces images through it (the fake SD WebUI).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from genfactory import services
from genfactory.config import Credentials, load_settings
from genfactory.engine.limits import service_caps
from genfactory.engine.secrets import load_credentials
from genfactory.errors import ConfigError
from genfactory.flows import generate_job
from genfactory.providers.http import ServiceClient, ServiceProvider
from genfactory.providers.registry import (
    ProviderContext,
    build_provider,
    check_credentials,
    images_per_slot,
    repeatable_create,
)
from genfactory.providers.sdwebui import SDWebUIImages
from genfactory.statuses import ImageStatus, JobStatus
from genfactory.storage import repository
from tests.fakes.server import FakeServices

KEY = "fake-webui2-key-5e1d77"


class SecondWebUI(SDWebUIImages):
    """An SD WebUI behind a reverse proxy that wants a bearer key: the SD WebUI API, the
    `[sdwebui]` options, its own name, key and base-URL variable."""

    name = "webui2"
    malformed_hint = "check WEBUI2_BASE_URL and that the WebUI runs with --api"

    def __init__(self, ctx: ProviderContext) -> None:
        self.config = ctx.settings.sdwebui
        client = ServiceClient(
            ctx,
            "webui2",
            base_url=self.config.base_url,
            secret=ctx.credentials.webui2_api_key,
            auth_header="Authorization",
            auth_prefix="Bearer ",
        )
        ServiceProvider.__init__(self, ctx, client)


#: The one entry that adds it.
WEBUI2 = services.ServiceSpec(
    name="webui2",
    label="second WebUI",
    roles={"image": f"{__name__}:SecondWebUI"},
    key_field="webui2_api_key",
    key_env=("WEBUI2_API_KEY", "GENFACTORY_WEBUI2_API_KEY"),
    secret_block="genfactory-webui2-api-key",
    base_url_env="WEBUI2_BASE_URL",
    concurrency=2,
    section="sdwebui",
)


@pytest.fixture
def webui2() -> Iterator[services.ServiceSpec]:
    with services.registered(WEBUI2):
        yield WEBUI2


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServices]:
    """The fakes; the new service's variables point at the fake SD WebUI, as a user sets them."""
    fake = FakeServices(image_long_side=192).start()
    monkeypatch.setenv("WEBUI2_BASE_URL", fake.urls["sdwebui"])
    monkeypatch.setenv("WEBUI2_API_KEY", KEY)
    try:
        yield fake
    finally:
        fake.stop()


def test_the_name_is_a_choice_only_while_its_entry_exists(webui2: services.ServiceSpec) -> None:
    settings = load_settings(overrides={"providers.image": "webui2"}, environ={})
    assert settings.providers.image == "webui2"
    with pytest.raises(ConfigError) as info:
        load_settings(overrides={"providers.image": "webui3"}, environ={})
    assert "'sdwebui', 'files' or 'webui2'" in str(info.value)  # the choices list it
    schema = type(settings).model_json_schema()["$defs"]["ProvidersSection"]
    assert "webui2" in schema["properties"]["image"]["enum"]
    # Its facts come from its class: one image per requested variation, creates repeatable.
    assert images_per_slot(settings) == settings.job.variations
    assert repeatable_create(settings)
    assert service_caps(settings)["webui2"] == 2


def test_unknown_without_its_entry() -> None:
    with pytest.raises(ConfigError, match="providers.image = 'webui2'"):
        load_settings(overrides={"providers.image": "webui2"}, environ={})
    with pytest.raises(TypeError, match="unknown API key field webui2_api_key"):
        Credentials(webui2_api_key="x")


def test_its_key_and_base_url_variables(webui2: services.ServiceSpec) -> None:
    environ = {"WEBUI2_BASE_URL": "http://127.0.0.1:9/webui", "GENFACTORY_WEBUI2_API_KEY": KEY}
    settings = load_settings(overrides={"providers.image": "webui2"}, environ=environ)
    assert settings.sdwebui.base_url == "http://127.0.0.1:9/webui"
    credentials = Credentials.from_env(environ)
    assert credentials.webui2_api_key is not None
    assert credentials.webui2_api_key.get_secret_value() == KEY
    assert KEY in credentials.secret_values() and KEY not in repr(credentials)
    check_credentials(settings, credentials)
    with pytest.raises(ConfigError, match=r"providers.image = webui2 needs WEBUI2_API_KEY"):
        check_credentials(settings, Credentials())
    # A GENFACTORY_ key variable is not mistaken for a setting.
    load_settings(environ={"GENFACTORY_WEBUI2_API_KEY": KEY})


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_harness")
def test_a_job_produces_images_through_it(
    tmp_path: Path, fake: FakeServices, webui2: services.ServiceSpec
) -> None:
    keywords = tmp_path / "keywords.txt"
    keywords.write_text("red fox in a snowy forest\nripe lemon on a white table\n")
    values: dict[str, Any] = {
        "job.keywords_file": str(keywords),
        "job.output_dir": str(tmp_path / "out"),
        "job.temp_dir": str(tmp_path / "tmp"),
        "job.count": 2,
        "job.variations": 2,
        "providers.image": "webui2",
        "qc.run_quality_check": False,
        "generation.http_timeout_seconds": 2.0,
        "concurrency.scope": "process",
    }
    settings = load_settings(overrides=values)  # WEBUI2_BASE_URL from the environment
    assert settings.sdwebui.base_url == fake.urls["sdwebui"]
    assert load_credentials(settings).webui2_api_key is not None

    summary = generate_job(settings)

    execution = repository.get_execution(summary["execution_id"])
    assert execution.status == JobStatus.COMPLETED
    images = repository.list_images(execution_id=execution.id)
    assert len(images) == 4 and {i.status for i in images} == {ImageStatus.APPROVED}
    for image in images:
        assert Path(str(image.final_image_path)).is_file()
    calls = fake.requests("sdwebui", path="/sdapi/v1/txt2img")
    assert len(calls) == 2 and all(c.json["batch_size"] == 2 for c in calls)
    assert {c.headers.get("authorization") for c in calls} == {f"Bearer {KEY}"}


def test_the_registry_builds_it(webui2: services.ServiceSpec, fake: FakeServices) -> None:
    settings = load_settings(overrides={"providers.image": "webui2"})
    provider = build_provider("image", ProviderContext(settings=settings))
    try:
        assert isinstance(provider, SecondWebUI)
    finally:
        provider.close()


def test_the_provider_set_builds_each_role_once_on_first_use() -> None:
    from genfactory.providers.base import CombinedQCMetadata
    from genfactory.providers.local_qc import LocalQC
    from genfactory.providers.openai_chat import OpenAIVisionQC
    from genfactory.providers.registry import ProviderSet

    local = ProviderSet(ProviderContext(settings=load_settings(environ={})))
    assert not local._built  # nothing built before it is asked for
    assert isinstance(local.qc, LocalQC) and local.qc is local.qc
    assert local.qc_metadata is None  # the local QC writes no metadata
    assert set(local._built) == {"qc"}
    local.close()
    vision = ProviderSet(
        ProviderContext(settings=load_settings(overrides={"providers.qc": "openai"}, environ={}))
    )
    try:
        assert isinstance(vision.qc, OpenAIVisionQC)
        assert (
            isinstance(vision.qc_metadata, CombinedQCMetadata) and vision.qc_metadata is vision.qc
        )
    finally:
        vision.close()
