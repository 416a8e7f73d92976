"""Spend each paid call once and trust no answer: the providers against misbehaving fakes.

Every test runs real HTTP over loopback; what counts is what the fake services received
(tasks created, calls made, bytes streamed) and what the providers hand back.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from PIL import Image

from genfactory.config import Settings
from genfactory.errors import (
    AmbiguousCreate,
    DownloadTooLarge,
    ImageRejected,
    MalformedResponse,
    RateLimited,
    TooFewKeywords,
    error_code,
)
from genfactory.providers.base import (
    GenerationRequest,
    ImageInput,
    ImageMetadata,
    MetadataRequest,
    PromptRequest,
    QCRequest,
)
from genfactory.providers.http import RetryPolicy
from genfactory.providers.openai_answers import short_keywords_policy
from genfactory.providers.openai_chat import (
    OpenAIPrompt,
    OpenAIVisionMetadata,
    OpenAIVisionQC,
)
from genfactory.providers.openai_images import OpenAIImages
from genfactory.providers.piapi import PiAPIMidjourney, split_grid
from genfactory.providers.runware import RunwareImages
from genfactory.providers.sdwebui import SDWebUIImages
from tests.fakes.fixtures import fake_context, fake_services, fake_settings
from tests.fakes.server import FakeServices, encode, render

__all__ = ["fake_services"]

#: Three tries per call, short sleeps: room for a retry to happen if the code allowed one.
TRIES = RetryPolicy(attempts=3, base_delay=0.01, max_sleep=5.0)


@pytest.fixture
def make(fake_services: FakeServices) -> Iterator[Callable[..., Any]]:
    built: list[Any] = []

    def build(cls: type, settings: Settings | None = None) -> Any:
        provider = cls(fake_context(fake_services, settings))
        provider.http.retry = TRIES
        built.append(provider)
        return provider

    yield build
    for provider in built:
        provider.close()


def request(**kw: Any) -> GenerationRequest:
    values: dict[str, Any] = {"prompt": "a red fox", "aspect_ratio": "1:1", "width": 512}
    return GenerationRequest(**{"height": 512, **values, **kw})


def image() -> ImageInput:
    return ImageInput(encode(render("a red fox", 256, 256), "PNG"), "image/png")


# ---------------------------------------------------------------------------------------------
# 1. Paid creates at most once


CREATES: dict[type, tuple[str, str, str]] = {
    PiAPIMidjourney: ("piapi", "/api/v1/task", "POST"),
    RunwareImages: ("runware", "", "POST"),
    OpenAIImages: ("openai", "/images/generations", "POST"),
}


@pytest.mark.parametrize("cls", list(CREATES), ids=lambda c: c.__name__)
@pytest.mark.parametrize("fault", ["late_answer", "502_after", "reset_after"])
def test_an_ambiguous_create_is_sent_once_and_says_a_charge_may_have_happened(
    fake_services: FakeServices, make: Callable[..., Any], cls: type, fault: str
) -> None:
    service, path, method = CREATES[cls]
    settings = fake_settings(fake_services, generation={"http_timeout_seconds": 0.5})
    provider = make(cls, settings)
    fake_services.add_fault(service, fault, times=-1, path=path or None, seconds=3)
    recorded: list[str] = []
    with pytest.raises(AmbiguousCreate, match="may have created the task and charged") as info:
        provider.generate(request(on_task_created=recorded.append))
    assert error_code(info.value) == "ambiguous_create"
    creates = [
        r for r in fake_services.requests(service, method=method) if r.path.endswith(path or "/v1")
    ]
    assert len(creates) == 1, f"{len(creates)} paid creates for one image"
    if cls is PiAPIMidjourney:
        assert len(fake_services.tasks()) == 1
    if cls is RunwareImages:
        # The taskUUID was reported before sending: the user can look the task up.
        assert recorded == [creates[0].json[0]["taskUUID"]] == [info.value.task_id]


def test_a_runware_task_reported_before_an_interruption_is_not_created_again(
    fake_services: FakeServices, make: Callable[..., Any]
) -> None:
    # Runware's taskUUID is recorded before the POST: a resumed slot holding one cannot tell
    # whether the interrupted attempt sent it, so it is not sent again.
    provider = make(RunwareImages)
    with pytest.raises(AmbiguousCreate, match="never charged twice") as info:
        provider.generate(request(resume_task_id="0b6c7a36-1d5e-4c55-9d3e-7f0e7f4c2a11"))
    assert error_code(info.value) == "ambiguous_create"
    assert info.value.task_id == "0b6c7a36-1d5e-4c55-9d3e-7f0e7f4c2a11"
    assert fake_services.requests("runware") == []
    assert provider.ctx.usage.snapshot()["runware"]["ambiguous_creates"] == 1  # maybe charged


def test_a_runware_task_id_is_recorded_only_once_its_request_may_go_out(
    fake_services: FakeServices,
) -> None:
    # A slot waiting for Runware's concurrency limit has sent nothing: it must not hold a task
    # id then, or a resume would fail it as ambiguous.
    events: list[str] = []

    @contextlib.contextmanager
    def limiter(service: str) -> Iterator[None]:
        events.append(f"limit {service}")
        yield

    provider = RunwareImages(fake_context(fake_services, limiter=limiter))
    try:
        result = provider.generate(request(on_task_created=lambda t: events.append(f"id {t}")))
    finally:
        provider.close()
    (sent,) = fake_services.requests("runware")
    assert events == ["limit runware", f"id {sent.json[0]['taskUUID']}"]
    assert result.task_id == sent.json[0]["taskUUID"]


@pytest.mark.parametrize("cls", list(CREATES), ids=lambda c: c.__name__)
@pytest.mark.parametrize("fault", ["429", "503"])
def test_failures_that_prove_nothing_was_created_are_retried(
    fake_services: FakeServices, make: Callable[..., Any], cls: type, fault: str
) -> None:
    service, path, _ = CREATES[cls]
    provider = make(cls)
    fake_services.add_fault(service, fault, path=path or None, retry_after=0)
    if fault == "429":
        result = provider.generate(request())
        assert result.images
    else:  # a 5xx may come after the task was created: not sent again
        with pytest.raises(AmbiguousCreate):
            provider.generate(request())


def test_sd_webui_is_free_so_its_5xx_are_retried(
    fake_services: FakeServices, make: Callable[..., Any]
) -> None:
    provider = make(SDWebUIImages)
    fake_services.add_fault("sdwebui", "502_after")
    assert provider.generate(request()).images
    assert len(fake_services.requests("sdwebui")) == 2


def test_a_refused_connection_is_retried_for_a_paid_create(make: Callable[..., Any]) -> None:
    """Nothing listens on the port: nothing can have been created, so the client tries again."""
    fake = FakeServices()
    settings = Settings.model_validate(
        {"piapi": {"base_url": "http://127.0.0.1:9"}, "generation": {"http_timeout_seconds": 1}}
    )
    provider = PiAPIMidjourney(fake_context(fake, settings))
    provider.http.retry = TRIES
    with pytest.raises(Exception) as info:
        provider.generate(request())
    assert not isinstance(info.value, AmbiguousCreate)
    assert provider.ctx.usage.snapshot()["piapi"]["calls"] == 3
    provider.close()


# ---------------------------------------------------------------------------------------------
# 2. Re-asking after a malformed answer: at most openai.max_attempts calls


@pytest.mark.parametrize("fault", ["malformed", "garbage"])
@pytest.mark.parametrize("max_attempts", [1, 3])
def test_a_malformed_answer_costs_at_most_max_attempts_calls(
    fake_services: FakeServices, make: Callable[..., Any], fault: str, max_attempts: int
) -> None:
    settings = fake_settings(fake_services, openai={"max_attempts": max_attempts})
    qc = make(OpenAIVisionQC, settings)
    fake_services.add_fault("openai", fault, times=-1)
    with pytest.raises(MalformedResponse, match=f"in {max_attempts} calls"):
        qc.check(QCRequest(image(), "a red fox"))
    assert len(fake_services.requests("openai")) == max_attempts


def test_an_empty_prompt_answer_is_asked_again_within_the_bound(
    fake_services: FakeServices, make: Callable[..., Any]
) -> None:
    prompt = make(OpenAIPrompt, fake_settings(fake_services, openai={"max_attempts": 2}))
    fake_services.add_fault("openai", "garbage", times=1)
    assert prompt.make_prompt(PromptRequest("write a prompt", "red fox")).startswith("red fox")
    assert len(fake_services.requests("openai")) == 2


@pytest.mark.parametrize(("policy", "expected"), [("accept", 3), ("pad", 8)], ids=["accept", "pad"])
def test_too_few_keywords_are_padded_or_accepted_without_another_call(
    policy: str, expected: int
) -> None:
    short = ImageMetadata(
        "Red fox in a snowy forest", "A red fox walks through snow.", ["a", "b", "c"]
    )
    padded = short_keywords_policy(short, policy, min_keywords=8, max_keywords=49)
    assert len(padded.keywords) == expected
    assert padded.keywords[:3] == ["a", "b", "c"]
    if policy == "pad":
        assert {"red", "fox", "snowy", "forest"} <= set(padded.keywords)
        assert "the" not in padded.keywords


def test_too_few_keywords_can_fail_the_image_after_one_call(
    fake_services: FakeServices, make: Callable[..., Any]
) -> None:
    settings = fake_settings(
        fake_services, metadata={"min_keywords": 45, "too_few_keywords": "fail"}
    )
    describe = make(OpenAIVisionMetadata, settings)
    with pytest.raises(TooFewKeywords, match="fewer than metadata.min_keywords = 45"):
        describe.describe(MetadataRequest(image(), "a red fox", "fox"))
    assert len(fake_services.requests("openai")) == 1


def test_metadata_with_too_few_keywords_is_not_asked_again_by_default(
    fake_services: FakeServices, make: Callable[..., Any]
) -> None:
    describe = make(
        OpenAIVisionMetadata, fake_settings(fake_services, metadata={"min_keywords": 45})
    )
    metadata = describe.describe(MetadataRequest(image(), "a red fox", "fox"))
    assert len(fake_services.requests("openai")) == 1
    assert len(metadata.keywords) >= 30


# ---------------------------------------------------------------------------------------------
# 3. No answer is trusted (provider level; the whole job is in test_cost_echo.py)


def test_every_answer_that_echoes_the_key_leaves_the_provider_scrubbed(
    fake_services: FakeServices, make: Callable[..., Any]
) -> None:
    fake_services.echo_key = True
    key = str(fake_services.keys["openai"])
    settings = fake_settings(fake_services, openai={"image_model": "dall-e-2"})
    results = [
        make(OpenAIPrompt).make_prompt(PromptRequest("write a prompt", "red fox")),
        make(OpenAIVisionQC).check(QCRequest(image(), "a red fox")),
        make(OpenAIVisionQC).check_and_describe(QCRequest(image(), "a red fox"), "fox"),
        make(OpenAIVisionMetadata).describe(MetadataRequest(image(), "a red fox", "fox")),
        make(OpenAIImages, settings).generate(request()).final_prompt,
    ]
    answers = [r.json for r in fake_services.requests("openai")]
    assert answers  # the fake did echo: its answers carried the key it received
    for result in results:
        assert key not in repr(result), result
    metadata = results[3]
    assert isinstance(metadata, ImageMetadata)
    assert metadata.title.endswith("***") and all("***" not in k for k in metadata.keywords)


# ---------------------------------------------------------------------------------------------
# 4. Bounded downloads


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_200_mb_download_stops_at_the_cap(
    fake_services: FakeServices, make: Callable[..., Any], chunked: bool
) -> None:
    settings = fake_settings(fake_services, generation={"max_download_mb": 2})
    provider = make(PiAPIMidjourney, settings)
    fake_services.add_fault("cdn", "huge", times=-1, mb=200, chunked=chunked)
    with pytest.raises(DownloadTooLarge, match="generation.max_download_mb = 2") as info:
        provider.generate(request())
    assert error_code(info.value) == "download_too_large"
    downloads = fake_services.requests("cdn")
    assert len(downloads) == 1  # not retried
    # The fake stops writing when the client hangs up (its thread notices a moment later),
    # far below 200 MB.
    for _ in range(200):
        if "bytes_sent" in downloads[0].form:
            break
        time.sleep(0.05)
    assert int(downloads[0].form["bytes_sent"]) < 50 * 1024**2


def test_a_bomb_grid_is_refused_before_it_is_decoded() -> None:
    buffer = io.BytesIO()
    Image.new("L", (12_000, 12_000)).save(buffer, format="PNG")
    with pytest.raises(ImageRejected, match="max_image_pixels = 100000000"):
        split_grid(buffer.getvalue(), max_pixels=100_000_000)
    with pytest.raises(ImageRejected, match="cannot be read"):
        split_grid(buffer.getvalue()[:5000], max_pixels=200_000_000)


# ---------------------------------------------------------------------------------------------
# 5. Rate limits named and bounded


def test_a_429_with_retry_after_3600_on_a_poll_fails_at_once_naming_the_limit(
    fake_services: FakeServices, make: Callable[..., Any]
) -> None:
    settings = fake_settings(fake_services, generation={"polling_timeout_minutes": 15})
    provider = make(PiAPIMidjourney, settings)
    fake_services.add_fault("piapi", "429", times=-1, path="/api/v1/task/", retry_after=3600)
    with pytest.raises(RateLimited, match="rate limited by PiAPI for 3600 s") as info:
        provider.generate(request())
    assert error_code(info.value) == "rate_limited"
    polls = fake_services.requests("piapi", method="GET")
    assert len(polls) == 1  # no second poll: it failed on the first answer


def test_retries_come_from_the_settings() -> None:
    settings = Settings.model_validate({"generation": {"retries": 4, "retry_backoff_seconds": 0.5}})
    policy = RetryPolicy.from_settings(settings)
    assert (policy.attempts, policy.base_delay, policy.max_sleep) == (5, 0.5, 60.0)
