"""The HTTP providers end to end, over real HTTP on a loopback socket (the fake services): what
each service receives and answers, real timeouts and hangs, concurrency caps, and that keys
never leak anywhere. Request shapes, error mapping, retries, downloads and scrubbing are unit
tested without a socket, over `httpx.MockTransport`, in `test_provider_requests.py`."""

from __future__ import annotations

import io
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from PIL import Image

from genfactory.config import Settings, fit_size
from genfactory.errors import (
    ProviderTimeout,
    RetryableProviderError,
)
from genfactory.media import sniff_media_type
from genfactory.providers.base import (
    ImageInput,
    LocalLimiter,
    MetadataRequest,
    PromptRequest,
    QCRequest,
)
from genfactory.providers.http import RetryPolicy, parse_retry_after
from genfactory.providers.no_background import KeepBackground
from genfactory.providers.openai_answers import normalize_metadata
from genfactory.providers.openai_chat import (
    OpenAIPrompt,
    OpenAIVisionMetadata,
    OpenAIVisionQC,
)
from genfactory.providers.openai_images import OpenAIImages
from genfactory.providers.piapi import PiAPIMidjourney, split_grid, with_version
from genfactory.providers.registry import (
    PROVIDERS,
    ProviderContext,
    build_provider,
    check_credentials,
)
from genfactory.providers.removebg import RemoveBG
from genfactory.providers.runware import RunwareImages
from genfactory.providers.sdwebui import SDWebUIImages
from tests.fakes.fixtures import (
    FAST_RETRY,
    fake_context,
    fake_credentials,
    fake_services,
    fake_settings,
    gen_request,
    png,
)
from tests.fakes.server import FakeServices, render

__all__ = ["fake_services"]  # the fixture, imported for pytest


@pytest.fixture
def make(fake_services: FakeServices) -> Iterator[Callable[..., Any]]:
    """Build a provider class against the fakes (fast retries); closed after the test."""
    built: list[Any] = []

    def build(cls: type, settings: Settings | None = None, **kw: Any) -> Any:
        provider = cls(fake_context(fake_services, settings, **kw))
        provider.http.retry = FAST_RETRY
        built.append(provider)
        return provider

    yield build
    for provider in built:
        provider.close()


# ---------------------------------------------------------------------------------------------
# Pure helpers


def test_retry_after_seconds_and_http_date() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert (
        parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now) == 30
    )
    assert (
        parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now=now) == 0
    )
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_fit_size_and_sniffing() -> None:
    assert fit_size("16:9", 1024, multiple=64) == (1024, 576)
    assert fit_size("9:16", 1000, multiple=8) == (560, 1000)
    assert fit_size("1:1", 4096, multiple=64) == (2048, 2048)
    assert fit_size("8:1", 1024, multiple=64) == (1024, 128)
    assert sniff_media_type(png(fmt="JPEG")) == "image/jpeg"
    assert sniff_media_type(png(fmt="WEBP")) == "image/webp"
    assert sniff_media_type(b"<html>") is None


def test_midjourney_version_suffix() -> None:
    assert with_version("a fox", "6.1") == "a fox --v 6.1"
    assert with_version("a fox", "niji 6") == "a fox --niji 6"
    assert with_version("a fox --v 5.2", "6.1") == "a fox --v 5.2"
    assert with_version("a fox --niji 5 --ar 2:3", "6.1") == "a fox --niji 5 --ar 2:3"


def test_metadata_normalisation() -> None:
    answer = {
        "title": "Red fox, snowy forest, winter morning, golden light over the quiet hills, pines",
        "description": "word " * 80,
        "keywords": ["Fox", "fox", " Snow ", "Nike shoes", "winter, forest", "#wildlife", ""],
    }
    meta = normalize_metadata(answer, min_keywords=3, max_keywords=49, strict_count=True)
    assert "," not in meta.title and len(meta.title) <= 70
    assert meta.title.startswith("Red fox snowy forest")
    assert len(meta.description) <= 200
    assert meta.keywords == ["fox", "snow", "winter", "forest", "wildlife"]
    with pytest.raises(ValueError):
        normalize_metadata(answer, min_keywords=25, max_keywords=49, strict_count=True)
    assert (
        len(
            normalize_metadata(answer, min_keywords=25, max_keywords=3, strict_count=False).keywords
        )
        == 3
    )


# ---------------------------------------------------------------------------------------------
# PiAPI (Midjourney)


def test_piapi_sends_the_task_polls_and_downloads_four_sniffed_images(
    fake_services: FakeServices, make: Callable[..., Any]
) -> None:
    provider = make(PiAPIMidjourney)
    created: list[str] = []
    result = provider.generate(gen_request(aspect_ratio="16:9", on_task_created=created.append))

    (create,) = fake_services.requests("piapi", method="POST")
    assert create.headers["x-api-key"] == fake_services.keys["piapi"]
    assert create.json == {
        "model": "midjourney",
        "task_type": "imagine",
        "input": {
            "prompt": "a red fox in snow --v 6.1",
            "aspect_ratio": "16:9",
            "process_mode": "relax",
        },
    }
    assert created == [result.task_id]
    assert len(fake_services.requests("piapi", method="GET")) == fake_services.polls_until_done
    assert result.final_prompt == "a red fox in snow --v 6.1"
    assert len(result.images) == 4
    # The CDN labels JPEG bytes as .png / image/png: the provider trusts only the bytes.
    assert {image.media_type for image in result.images} == {"image/jpeg"}
    assert len({image.data for image in result.images}) == 4
    with Image.open(io.BytesIO(result.images[0].data)) as first:
        assert first.size == (512, 288)
    downloads = fake_services.requests("cdn")
    assert len(downloads) == 4
    assert all("x-api-key" not in r.headers and "authorization" not in r.headers for r in downloads)
    assert provider.ctx.usage.snapshot()["piapi"] == {"calls": 3, "downloads": 4, "tasks": 1}


def test_piapi_niji_version_and_process_mode(
    fake_services: FakeServices, make: Callable[..., Any]
) -> None:
    settings = fake_settings(
        fake_services, generation={"midjourney_version": "niji 6", "process_mode": "fast"}
    )
    make(PiAPIMidjourney, settings).generate(gen_request())
    (create,) = fake_services.requests("piapi", method="POST")
    assert create.json["input"]["prompt"] == "a red fox in snow --niji 6"
    assert create.json["input"]["process_mode"] == "fast"


def test_piapi_single_grid_is_cropped_into_four(
    fake_services: FakeServices, make: Callable[..., Any]
) -> None:
    fake_services.add_fault("piapi", "grid")
    result = make(PiAPIMidjourney).generate(gen_request(aspect_ratio="9:16"))
    assert len(fake_services.requests("cdn")) == 1
    assert len(result.images) == 4
    sizes = set()
    for image in result.images:
        assert image.media_type == "image/png"
        with Image.open(io.BytesIO(image.data)) as opened:
            sizes.add(opened.size)
    assert sizes == {(288, 512)}
    assert len({image.data for image in result.images}) == 4
    # The crops are the four rendered variants, in reading order.
    expected = render("a red fox in snow --v 6.1", 288, 512, variant=2).getpixel((0, 0))
    with Image.open(io.BytesIO(result.images[2].data)) as third:
        got = third.convert("RGB").getpixel((0, 0))
    assert isinstance(got, tuple) and isinstance(expected, tuple)
    assert max(abs(a - b) for a, b in zip(got, expected, strict=True)) < 12


def test_split_grid_handles_odd_sizes() -> None:
    parts = split_grid(png(size=(101, 61)))
    assert [Image.open(io.BytesIO(p)).size for p in parts] == [(50, 30)] * 4


def test_piapi_resumes_a_task_instead_of_creating_one(
    fake_services: FakeServices, make: Callable[..., Any]
) -> None:
    provider = make(PiAPIMidjourney)
    first = provider.generate(gen_request())
    again = provider.generate(gen_request(resume_task_id=first.task_id))
    assert again.task_id == first.task_id
    assert len(fake_services.requests("piapi", method="POST")) == 1
    # A task the service no longer knows is created anew (and reported).
    created: list[str] = []
    fresh = provider.generate(gen_request(resume_task_id="gone", on_task_created=created.append))
    assert created == [fresh.task_id] and fresh.task_id != "gone"
    assert len(fake_services.requests("piapi", method="POST")) == 2


def test_piapi_polling_stops_at_the_generation_timeout(
    fake_services: FakeServices, make: Callable[..., Any]
) -> None:
    settings = fake_settings(fake_services, generation={"polling_timeout_minutes": 1 / 60})
    fake_services.add_fault("piapi", "slow_task", extra_polls=10_000)
    started = time.monotonic()
    with pytest.raises(ProviderTimeout, match="polling_timeout_minutes"):
        make(PiAPIMidjourney, settings).generate(gen_request())
    # Stops at the 1 s budget, not at the 10,000 polls the task would need.
    assert 0.9 < time.monotonic() - started < 5.0


def test_piapi_rides_out_poll_errors_but_not_too_many(
    fake_services: FakeServices, make: Callable[..., Any]
) -> None:
    provider = make(PiAPIMidjourney)
    fake_services.add_fault("piapi", "500", times=2, path="/api/v1/task/")
    assert len(provider.generate(gen_request()).images) == 4
    fake_services.add_fault("piapi", "502", times=3, path="/api/v1/task/")
    with pytest.raises(RetryableProviderError, match="3 polls in a row failed"):
        provider.generate(gen_request())


def test_piapi_hung_polls_never_outlast_the_timeout(
    fake_services: FakeServices, make: Callable[..., Any]
) -> None:
    settings = fake_settings(
        fake_services,
        generation={"http_timeout_seconds": 0.3, "polling_timeout_minutes": 1 / 60},
    )
    fake_services.add_fault("piapi", "hang", times=-1, path="/api/v1/task/", seconds=10)
    started = time.monotonic()
    with pytest.raises(ProviderTimeout):
        make(PiAPIMidjourney, settings).generate(gen_request())
    assert time.monotonic() - started < 5.0  # the poll hangs 10 s each


# ---------------------------------------------------------------------------------------------
# Timeouts on the wire


def test_hung_call_times_out_and_is_retried_within_bounds(
    fake_services: FakeServices, make: Callable[..., Any]
) -> None:
    settings = fake_settings(fake_services, generation={"http_timeout_seconds": 0.3})
    provider = make(OpenAIPrompt, settings)
    provider.http.retry = RetryPolicy(attempts=2, base_delay=0.05)
    fake_services.add_fault("openai", "hang", times=-1, seconds=10)
    started = time.monotonic()
    with pytest.raises(ProviderTimeout, match="took too long to answer"):
        provider.make_prompt(PromptRequest(system_prompt="Write a prompt.", keyword="fox"))
    took = time.monotonic() - started
    assert 0.6 <= took < 5.0  # two 0.3 s timeouts, not two 10 s hangs
    assert len(fake_services.requests("openai")) == 2
    assert provider.ctx.usage.snapshot()["openai"] == {"calls": 2, "retries": 1, "failures": 1}


# ---------------------------------------------------------------------------------------------
# Runware, OpenAI Images, SD WebUI


def test_runware_task_and_cost(fake_services: FakeServices, make: Callable[..., Any]) -> None:
    settings = fake_settings(
        fake_services,
        generation={"loras": ["civitai:58390@62833:0.8", "runware:12@1:1.5"]},
        runware={"output_format": "WEBP", "steps": 20},
    )
    provider = make(RunwareImages, settings)
    result = provider.generate(
        gen_request(aspect_ratio="16:9", count=3, seed=42, negative_prompt="blurry")
    )
    (sent,) = fake_services.requests("runware")
    assert sent.headers["authorization"] == f"Bearer {fake_services.keys['runware']}"
    (task,) = sent.json
    assert task == {
        "taskType": "imageInference",
        "taskUUID": result.task_id,
        "model": "runware:100@1",
        "positivePrompt": "a red fox in snow",
        "negativePrompt": "blurry",
        "width": 1024,
        "height": 576,
        "numberResults": 3,
        "outputType": "URL",
        "outputFormat": "WEBP",
        "includeCost": True,
        "steps": 20,
        "seed": 42,
        "lora": [
            {"model": "civitai:58390@62833", "weight": 0.8},
            {"model": "runware:12@1", "weight": 1.5},
        ],
    }
    assert [image.seed for image in result.images] == [42, 43, 44]
    assert {image.media_type for image in result.images} == {"image/webp"}
    assert result.cost == pytest.approx(0.0039)
    assert provider.ctx.usage.snapshot()["runware"]["cost"] == pytest.approx(0.0039)


@pytest.mark.parametrize(
    ("model", "ratio", "size", "requests"),
    [
        ("gpt-image-1", "16:9", "1536x1024", 1),
        ("gpt-image-1", "9:16", "1024x1536", 1),
        ("gpt-image-1", "1:1", "1024x1024", 1),
        ("dall-e-3", "16:9", "1792x1024", 2),
        ("dall-e-3", "4:5", "1024x1024", 2),
    ],
)
def test_openai_images_picks_the_closest_size(
    fake_services: FakeServices,
    make: Callable[..., Any],
    model: str,
    ratio: str,
    size: str,
    requests: int,
) -> None:
    settings = fake_settings(fake_services, openai={"image_model": model})
    provider = make(OpenAIImages, settings)
    result = provider.generate(gen_request(aspect_ratio=ratio, count=2))
    sent = fake_services.requests("openai")
    assert len(sent) == requests
    assert {r.json["size"] for r in sent} == {size}
    assert {r.json["n"] for r in sent} == {2 if requests == 1 else 1}
    assert ("response_format" in sent[0].json) == model.startswith("dall-e")
    assert len(result.images) == 2
    with Image.open(io.BytesIO(result.images[0].data)) as first:
        assert f"{first.width}x{first.height}" == size
    assert provider.ctx.usage.snapshot()["openai"]["images"] == 2


def test_sdwebui_request_and_seeds(fake_services: FakeServices, make: Callable[..., Any]) -> None:
    settings = fake_settings(fake_services, sdwebui={"steps": 12, "sampler": "DPM++ 2M"})
    provider = make(SDWebUIImages, settings)
    result = provider.generate(gen_request(aspect_ratio="3:2", width=900, height=900, count=2))
    (sent,) = fake_services.requests("sdwebui")
    body = sent.json
    assert (body["width"], body["height"]) == (904, 600)
    assert body["seed"] == -1 and body["batch_size"] == 2 and body["steps"] == 12
    assert body["sampler_name"] == "DPM++ 2M" and body["cfg_scale"] == 7.0
    assert "authorization" not in sent.headers
    seeds = [image.seed for image in result.images]
    assert seeds[0] is not None and seeds == [seeds[0], seeds[0] + 1]


# ---------------------------------------------------------------------------------------------
# OpenAI chat: prompt, QC, metadata


def test_prompt_provider_sends_system_prompt_and_keyword(
    fake_services: FakeServices, make: Callable[..., Any]
) -> None:
    provider = make(OpenAIPrompt)
    prompt = provider.make_prompt(
        PromptRequest(
            system_prompt="You write Midjourney prompts about red fox.", keyword="red fox"
        )
    )
    assert prompt.startswith("red fox, professional stock photo")
    (sent,) = fake_services.requests("openai")
    assert sent.headers["authorization"] == f"Bearer {fake_services.keys['openai']}"
    assert sent.json["model"] == "gpt-4o"
    assert sent.json["messages"] == [
        {"role": "system", "content": "You write Midjourney prompts about red fox."},
        {"role": "user", "content": "red fox"},
    ]
    assert "response_format" not in sent.json
    usage = provider.ctx.usage.snapshot()["openai"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0


def test_vision_qc_sends_schema_rules_and_the_real_media_type(
    fake_services: FakeServices, make: Callable[..., Any]
) -> None:
    settings = fake_settings(
        fake_services, qc={"rules": "- any cats"}, openai={"vision_model": "gpt-4o-mini"}
    )
    provider = make(OpenAIVisionQC, settings)
    jpeg = png(fmt="JPEG")
    # The caller says PNG; the bytes are JPEG: the data URL must say JPEG (docs/SPEC.md §11).
    verdict = provider.check(
        QCRequest(image=ImageInput(jpeg, "image/png"), prompt="a red fox", aspect_ratio="1:1")
    )
    assert verdict.passed and verdict.reason
    (sent,) = fake_services.requests("openai")
    body = sent.json
    assert body["model"] == "gpt-4o-mini" and body["temperature"] == 0.0
    assert body["response_format"]["type"] == "json_schema"
    schema_block = body["response_format"]["json_schema"]
    assert schema_block["strict"] is True and schema_block["name"] == "quality_check"
    assert set(schema_block["schema"]["properties"]) == {"passed", "reason"}
    system = body["messages"][0]["content"]
    for rule in ("text, letters", "logos", "famous people", "copyrighted", "hands", "artifacts"):
        assert rule in system
    assert "- any cats" in system
    image_part = body["messages"][1]["content"][1]
    assert image_part["image_url"]["url"].startswith("data:image/jpeg;base64,")
    rejected = provider.check(QCRequest(image=ImageInput(jpeg, "image/jpeg"), prompt="a logo"))
    assert not rejected.passed and "logo" in rejected.reason


def test_formats_vision_does_not_take_are_sent_as_png(
    fake_services: FakeServices, make: Callable[..., Any]
) -> None:
    tiff = png(fmt="TIFF")
    assert make(OpenAIVisionQC).check(QCRequest(image=ImageInput(tiff, "image/tiff"), prompt="x"))
    (sent,) = fake_services.requests("openai")
    assert sent.json["messages"][1]["content"][1]["image_url"]["url"].startswith(
        "data:image/png;base64,"
    )


def test_vision_metadata_is_normalised_stock_metadata(
    fake_services: FakeServices, make: Callable[..., Any]
) -> None:
    provider = make(OpenAIVisionMetadata)
    meta = provider.describe(
        MetadataRequest(
            image=ImageInput(png(), "image/png"), prompt="A red fox, Snow", keyword="fox"
        )
    )
    assert meta.title and "," not in meta.title and len(meta.title) <= 70
    assert 25 <= len(meta.keywords) <= 49
    assert meta.keywords == [k.lower() for k in meta.keywords]
    assert len(set(meta.keywords)) == len(meta.keywords)
    (sent,) = fake_services.requests("openai")
    schema = sent.json["response_format"]["json_schema"]
    assert set(schema["schema"]["required"]) == {"title", "description", "keywords"}
    assert "25 to 49" in sent.json["messages"][0]["content"]


def test_combined_qc_and_metadata_in_one_call(
    fake_services: FakeServices, make: Callable[..., Any]
) -> None:
    # The QC provider itself offers the combined call; the QC task uses it when configured.
    provider = make(OpenAIVisionQC)
    verdict, meta = provider.check_and_describe(
        QCRequest(image=ImageInput(png(), "image/png"), prompt="a red fox"), "fox"
    )
    assert verdict.passed and meta is not None and "fox" in meta.keywords
    verdict, meta = provider.check_and_describe(
        QCRequest(image=ImageInput(png(), "image/png"), prompt="a fox logo"), "fox"
    )
    assert not verdict.passed and meta is None
    assert len(fake_services.requests("openai")) == 2


# ---------------------------------------------------------------------------------------------
# remove.bg


def test_removebg_sends_50mp_verbatim_and_returns_alpha(
    fake_services: FakeServices, make: Callable[..., Any]
) -> None:
    settings = fake_settings(fake_services, processing={"remove_bg_size": "50MP"})
    provider = make(RemoveBG, settings)
    result = provider.remove_background(ImageInput(png(fmt="JPEG"), "image/png"))
    (sent,) = fake_services.requests("removebg")
    assert sent.headers["x-api-key"] == fake_services.keys["removebg"]
    assert sent.form == {"size": "50MP", "format": "png"}
    filename, content_type, _ = sent.files["image_file"]
    assert (filename, content_type) == ("image.jpg", "image/jpeg")
    assert result.credits_charged == 1.0 and result.note is None
    with Image.open(io.BytesIO(result.data)) as cut:
        assert cut.format == "PNG" and cut.mode == "RGBA"
        alpha = cut.getchannel("A")
        assert alpha.getextrema() == (0, 255)
    assert provider.ctx.usage.snapshot()["removebg"] == {"calls": 1, "credits": 1.0, "images": 1}


# ---------------------------------------------------------------------------------------------
# Concurrency caps, registry, credentials


def test_the_limiter_caps_calls_in_flight_per_service(
    fake_services: FakeServices, make: Callable[..., Any]
) -> None:
    fake_services.set_latency("openai", 0.15)
    provider = make(OpenAIPrompt, limiter=LocalLimiter({"openai": 2}))
    threads = [
        threading.Thread(
            target=provider.make_prompt, args=(PromptRequest(system_prompt="s", keyword=f"k{i}"),)
        )
        for i in range(8)
    ]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert fake_services.peak("openai") == 2
    assert time.monotonic() - started >= 4 * 0.15
    assert len(fake_services.requests("openai")) == 8


def test_each_thread_keeps_its_own_connection_and_close_ends_them(
    fake_services: FakeServices, make: Callable[..., Any]
) -> None:
    # Slots share one provider; each slot thread reuses one kept-alive connection of its own
    # (a pool per thread: a pool shared by 32 threads scanned every connection per request).
    fake_services.set_latency("openai", 0.05)
    provider = make(OpenAIPrompt)
    ports: dict[int, list[int]] = {}

    def slot(n: int) -> None:
        for i in range(3):
            provider.make_prompt(PromptRequest(system_prompt="s", keyword=f"k{n}-{i}"))

    threads = [threading.Thread(target=slot, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for request in fake_services.requests("openai"):
        found = re.search(r"k(\d)-\d", str(request.json["messages"]))
        assert found, request.json
        ports.setdefault(int(found.group(1)), []).append(request.peer_port)
    assert sorted(ports) == [0, 1, 2, 3]
    assert all(len(seen) == 3 and len(set(seen)) == 1 for seen in ports.values()), ports
    assert len({seen[0] for seen in ports.values()}) == 4  # four threads, four connections

    provider.close()
    # Closed: the next call opens a fresh connection instead of a dead pooled one.
    provider.make_prompt(PromptRequest(system_prompt="s", keyword="after"))
    assert fake_services.requests("openai")[-1].peer_port not in {p[0] for p in ports.values()}


def test_the_piapi_slot_is_held_for_a_whole_task(
    fake_services: FakeServices, make: Callable[..., Any]
) -> None:
    fake_services.polls_until_done = 3
    provider = make(PiAPIMidjourney, limiter=LocalLimiter({"piapi": 1}))
    tasks = fake_services.tasks
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            provider.generate(gen_request(prompt=f"fox {i}"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(tasks()) == 3
    # With one slot, each task was created only after the previous one completed.
    events = [(r.started, r.method) for r in fake_services.requests("piapi")]
    assert [method for _, method in sorted(events)] == ["POST", "GET", "GET", "GET"] * 3


def test_registry_builds_every_remote_provider(fake_services: FakeServices) -> None:
    expected: dict[tuple[str, str], type[Any]] = {
        ("image", "piapi"): PiAPIMidjourney,
        ("image", "runware"): RunwareImages,
        ("image", "openai"): OpenAIImages,
        ("image", "sdwebui"): SDWebUIImages,
        ("prompt", "openai"): OpenAIPrompt,
        ("qc", "openai"): OpenAIVisionQC,
        ("metadata", "openai"): OpenAIVisionMetadata,
        ("background", "removebg"): RemoveBG,
        ("background", "none"): KeepBackground,
    }
    assert set(expected) <= set(PROVIDERS)
    for (role, name), cls in expected.items():
        settings = fake_settings(fake_services, providers={role: name})
        provider = build_provider(role, fake_context(fake_services, settings))
        assert type(provider) is cls
        provider.close()
    kept = KeepBackground(fake_context(fake_services)).remove_background(
        ImageInput(png(fmt="JPEG"), "image/jpeg")
    )
    assert sniff_media_type(kept.data) == "image/png" and kept.note


def test_keys_required_except_openai_compatible_local_servers(
    fake_services: FakeServices,
) -> None:
    from genfactory.config import Credentials
    from genfactory.errors import ConfigError

    remote = {"image": "piapi", "qc": "openai", "background": "removebg"}
    settings = fake_settings(fake_services, providers=remote)
    check_credentials(settings, fake_credentials(fake_services))
    # A local OpenAI-compatible server (the fake) needs no key; PiAPI and remove.bg do.
    with pytest.raises(ConfigError, match=r"PIAPI_API_KEY.*REMOVE_BG_API_KEY") as info:
        check_credentials(settings, Credentials())
    assert "OPENAI_API_KEY" not in str(info.value)
    official = fake_settings(
        fake_services, providers={"qc": "openai"}, openai={"base_url": "https://api.openai.com/v1"}
    )
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        check_credentials(official, Credentials())
    # Without a key, no Authorization header is sent at all.
    provider = OpenAIPrompt(ProviderContext(settings=settings))
    try:
        fake_services.keys["openai"] = None
        provider.make_prompt(PromptRequest(system_prompt="s", keyword="fox"))
    finally:
        provider.close()
    assert "authorization" not in fake_services.requests("openai")[-1].headers


# ---------------------------------------------------------------------------------------------
# Secrets


def test_keys_appear_only_in_the_request_headers(
    fake_services: FakeServices, caplog: pytest.LogCaptureFixture
) -> None:
    """Run every provider, successes and failures, then look for the keys everywhere."""
    # Measure our own code, not the log redaction that genfactory.logs may have installed.
    factory = logging.getLogRecordFactory()
    logging.setLogRecordFactory(logging.LogRecord)
    caplog.set_level(logging.DEBUG)
    good: dict[str, str | None] = dict(fake_services.keys)
    wrong: dict[str, str | None] = {
        s: f"wrong-{s}-key-1618033" for s in ("piapi", "runware", "openai", "removebg")
    }
    secrets = [v for v in [*good.values(), *wrong.values()] if v]
    seen: list[str] = []
    settings = fake_settings(
        fake_services, generation={"http_timeout_seconds": 0.2, "polling_timeout_minutes": 1 / 60}
    )
    image = ImageInput(png(), "image/png")
    calls: list[tuple[type, Callable[[Any], Any]]] = [
        (PiAPIMidjourney, lambda p: p.generate(gen_request())),
        (RunwareImages, lambda p: p.generate(gen_request())),
        (OpenAIImages, lambda p: p.generate(gen_request())),
        (SDWebUIImages, lambda p: p.generate(gen_request())),
        (OpenAIPrompt, lambda p: p.make_prompt(PromptRequest("s", "fox"))),
        (OpenAIVisionQC, lambda p: p.check(QCRequest(image, "fox"))),
        (OpenAIVisionMetadata, lambda p: p.describe(MetadataRequest(image, "fox"))),
        (RemoveBG, lambda p: p.remove_background(image)),
    ]
    scenarios = [(good, None), (good, "500"), (good, "hang"), (good, "401"), (wrong, None)]
    try:
        for keys, fault in scenarios:
            for cls, call in calls:
                if fault == "hang" and cls in (RunwareImages, OpenAIImages, SDWebUIImages):
                    continue  # their long generation read timeout (1 s here) adds nothing new
                if fault is not None:
                    for service in ("piapi", "runware", "openai", "sdwebui", "removebg"):
                        fake_services.add_fault(service, fault, seconds=2)
                ctx = fake_context(fake_services, settings, keys=keys)
                provider = cls(ctx)
                attempts = 1 if fault == "hang" else 2
                provider.http.retry = RetryPolicy(attempts=attempts, base_delay=0.01)
                try:
                    seen.append(repr(call(provider)))
                except Exception as exc:
                    chain: BaseException | None = exc
                    while chain is not None:
                        seen += [str(chain), repr(chain), repr(chain.args)]
                        seen.append(str(getattr(chain, "raw", "")))
                        chain = chain.__cause__ or chain.__context__
                finally:
                    provider.close()
                seen.append(repr(ctx.usage.snapshot()))
                seen.append(repr(ctx))
                fake_services.clear_faults()
    finally:
        logging.setLogRecordFactory(factory)
    seen += [record.getMessage() for record in caplog.records]
    seen += [repr(record.args) for record in caplog.records]
    assert any("HTTP Request" in text for text in seen), "httpx logging was not captured"
    assert any("Invalid API key provided" in text for text in seen), "no key was echoed back"
    for secret in secrets:
        assert not [text for text in seen if secret in text], f"{secret} leaked"
    received = fake_services.requests()
    assert len(received) > 40  # paid creates are not retried after a 500
    for request in received:
        for secret in secrets:
            assert secret not in request.path and secret not in str(request.query)
            assert secret.encode() not in request.body
    carrying = [r for r in received if any(s in str(r.headers) for s in secrets)]
    assert {r.service for r in carrying} == {"piapi", "runware", "openai", "removebg"}


def test_make_limiter_picks_the_scope(monkeypatch: pytest.MonkeyPatch) -> None:
    from genfactory.engine import limits

    settings = Settings.model_validate({"concurrency": {"openai": 3, "scope": "auto"}})
    assert limits.service_caps(settings)["openai"] == 3
    assert "scope" not in limits.service_caps(settings)
    monkeypatch.setattr(limits, "prefect_server_configured", lambda: False)
    assert isinstance(limits.make_limiter(settings), LocalLimiter)
    monkeypatch.setattr(limits, "prefect_server_configured", lambda: True)
    assert isinstance(limits.make_limiter(settings), limits.PrefectLimiter)
    process = Settings.model_validate({"concurrency": {"scope": "process"}})
    assert isinstance(limits.make_limiter(process), LocalLimiter)
