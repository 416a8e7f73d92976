"""The remote providers over `httpx.MockTransport`: the requests they send (method, path, JSON
body, headers: the key in a header only), what they return, how answers and transport failures
map onto errors, retries (Retry-After, 5xx, 429, ambiguous paid creates), downloads (size limit,
truncated bodies) and secret scrubbing. No socket, no real sleep: waits are recorded.

Real HTTP over a loopback socket, one service after another, is `test_http_providers.py`.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from PIL import Image

from genfactory.errors import (
    AmbiguousCreate,
    AuthenticationError,
    BadRequest,
    ContentRejected,
    DownloadTooLarge,
    MalformedResponse,
    ProviderError,
    QuotaExceeded,
    RateLimited,
    RetryableProviderError,
    UnreadableImage,
)
from genfactory.media import sniff_media_type
from genfactory.providers.base import ImageInput, PromptRequest, QCRequest
from genfactory.providers.openai_chat import OpenAIPrompt, OpenAIVisionQC
from genfactory.providers.openai_images import OpenAIImages
from genfactory.providers.piapi import PiAPIMidjourney
from genfactory.providers.removebg import NO_FOREGROUND_NOTE, RemoveBG
from genfactory.providers.runware import RunwareImages
from genfactory.providers.sdwebui import SDWebUIImages
from tests.fakes.fixtures import gen_request, png
from tests.fakes.server import error_body
from tests.fakes.transport import (
    KEYS,
    Broken,
    Endless,
    Service,
    answer,
    b64,
    body_of,
    build,
    garbage,
    settings,
)

CDN = "https://cdn.example.test/images"


def downloads_of(service: Service) -> list[httpx.Request]:
    return [r for r in service.requests if str(r.url).startswith(CDN)]


# ---------------------------------------------------------------------------------------------
# Scripted services: the success answers of each API


def cdn(request: httpx.Request) -> httpx.Response | None:
    """Image downloads (any URL under CDN): the image named by the path's last part."""
    if not str(request.url).startswith(CDN):
        return None
    return httpx.Response(200, content=png(request.url.path), headers={"Content-Type": "image/png"})


def piapi(status: str = "completed", message: str = "") -> Callable[[httpx.Request], Any]:
    def handle(request: httpx.Request) -> httpx.Response:
        image = cdn(request)
        if image is not None:
            return image
        if request.method == "POST":
            return answer(200, {"code": 200, "data": {"task_id": "task-1", "status": "pending"}})
        data: dict[str, Any] = {"task_id": "task-1", "status": status}
        if status == "failed":
            data["error"] = {"code": 10000, "message": message}
        else:
            data["output"] = {"image_urls": [f"{CDN}/{i}.png" for i in range(4)]}
        return answer(200, {"code": 200, "data": data})

    return handle


def runware(request: httpx.Request) -> httpx.Response:
    image = cdn(request)
    if image is not None:
        return image
    (task,) = body_of(request)
    item = {"taskType": "imageInference", "taskUUID": task["taskUUID"], "seed": 7, "cost": 0.001}
    if task.get("outputType") == "base64Data":
        item["imageBase64Data"] = b64(png(size=(task["width"], task["height"])))
    else:
        item["imageURL"] = f"{CDN}/{task['taskUUID']}.png"
    return answer(200, {"data": [item]})


def sdwebui(request: httpx.Request) -> httpx.Response:
    batch = body_of(request).get("batch_size", 1)
    images = [b64(png(f"fox {i}")) for i in range(batch)]
    info = json.dumps({"all_seeds": list(range(5, 5 + batch))})
    return answer(200, {"images": images, "info": info})


def chat(content: str | None = None, refusal: str | None = None) -> httpx.Response:
    message = {"role": "assistant", "content": content, "refusal": refusal}
    usage = {"prompt_tokens": 10, "completion_tokens": 5}
    return answer(200, {"choices": [{"message": message}], "usage": usage})


def removebg(request: httpx.Request) -> httpx.Response:
    buffer = io.BytesIO()
    Image.new("RGBA", (64, 64), (200, 0, 0, 0)).save(buffer, format="PNG")
    return httpx.Response(
        200,
        content=buffer.getvalue(),
        headers={"Content-Type": "image/png", "X-Credits-Charged": "1"},
    )


# ---------------------------------------------------------------------------------------------
# Requests: method, path, body; the key in its header and nowhere else


@pytest.mark.parametrize(
    ("cls", "handler", "header", "value"),
    [
        (PiAPIMidjourney, piapi(), "X-API-Key", KEYS["piapi"]),
        (RunwareImages, runware, "Authorization", f"Bearer {KEYS['runware']}"),
        (OpenAIImages, None, "Authorization", f"Bearer {KEYS['openai']}"),
    ],
)
def test_the_key_travels_in_its_header_only_and_never_to_the_cdn(
    cls: type, handler: Any, header: str, value: str
) -> None:
    def openai_images(request: httpx.Request) -> httpx.Response:
        return answer(200, {"data": [{"b64_json": b64(png())}]})

    service = Service(handler or openai_images)
    build(cls, service).generate(gen_request())
    key = value.removeprefix("Bearer ")
    api = [r for r in service.requests if not str(r.url).startswith(CDN)]
    assert api and all(r.headers[header] == value for r in api)
    for request in service.requests:
        assert key not in str(request.url) and key.encode() not in request.content
    downloads = downloads_of(service)
    assert all(header not in d.headers for d in downloads)


def test_piapi_creates_polls_and_downloads() -> None:
    service = Service(piapi())
    result = build(PiAPIMidjourney, service).generate(gen_request(aspect_ratio="16:9"))
    create, poll = service.requests[:2]
    assert (create.method, create.url.path) == ("POST", "/api/v1/task")
    assert body_of(create)["input"] == {
        "prompt": "a red fox in snow --v 6.1",
        "aspect_ratio": "16:9",
        "process_mode": "relax",
    }
    assert (poll.method, poll.url.path) == ("GET", "/api/v1/task/task-1")
    assert result.task_id == "task-1" and len(result.images) == 4
    assert len(downloads_of(service)) == 4


def test_cookies_a_service_or_its_cdn_sets_are_never_sent_back() -> None:
    # Services authenticate by key; a cookie (Cloudflare's, a CDN's) is neither kept nor
    # replayed, to the service or to another host.
    plain = piapi()

    def handle(request: httpx.Request) -> httpx.Response:
        response = plain(request)
        response.headers["Set-Cookie"] = "sid=tracking-1; Path=/"
        return response

    service = Service(handle)
    build(PiAPIMidjourney, service).generate(gen_request())
    assert len(service.requests) == 6  # create, poll, 4 downloads: each after a Set-Cookie
    assert all("cookie" not in request.headers for request in service.requests)


# ---------------------------------------------------------------------------------------------
# Retries: Retry-After, 5xx, garbage, resets


def test_429_honours_retry_after() -> None:
    service = Service(runware).then(
        answer(429, error_body("runware", 429, "slow down"), **{"Retry-After": "1"})
    )
    provider = build(RunwareImages, service)
    result = provider.generate(gen_request())
    assert len(result.images) == 1
    assert service.sleeps == [1.0]  # waited what the service asked, no backoff of its own
    assert len(service.sent(method="POST")) == 2
    assert provider.ctx.usage.snapshot()["runware"]["retries"] == 1


def test_429_with_an_http_date() -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=2), usegmt=True)
    service = Service(sdwebui).then(answer(429, {"detail": "busy"}, **{"Retry-After": when}))
    assert len(build(SDWebUIImages, service).generate(gen_request()).images) == 1
    # An HTTP date has whole seconds: 2 s from now is 1-2 s away.
    (waited,) = service.sleeps
    assert 0.9 <= waited <= 2.0


def test_retry_after_beyond_the_cap_fails_at_once_naming_the_rate_limit() -> None:
    service = Service(runware).then(answer(429, {}, **{"Retry-After": "60"}))
    with pytest.raises(RateLimited, match="rate limited by Runware for 60 s") as info:
        build(RunwareImages, service).generate(gen_request())
    assert info.value.retry_after == 60
    assert service.sleeps == []  # did not sit out the 60 s in the call
    assert len(service.requests) == 1


def test_5xx_garbage_and_resets_are_retried_then_succeed() -> None:
    service = Service(sdwebui).then(answer(500, {"detail": "boom"}), garbage())
    provider = build(SDWebUIImages, service)
    assert len(provider.generate(gen_request()).images) == 1
    service.then(httpx.RemoteProtocolError, answer(502, {"detail": "bad gateway"}))
    assert len(provider.generate(gen_request()).images) == 1
    assert len(service.requests) == 6
    assert provider.ctx.usage.snapshot()["sdwebui"]["retries"] == 4
    assert len(service.sleeps) == 4 and all(0 <= s <= 5.0 for s in service.sleeps)


def test_persistent_garbage_is_malformed_with_the_body_kept() -> None:
    service = Service().then(garbage(), garbage(), garbage())
    with pytest.raises(MalformedResponse, match="not JSON") as info:
        build(SDWebUIImages, service).generate(gen_request())
    assert info.value.raw is not None and "<html>" in info.value.raw
    assert len(service.requests) == 3


@pytest.mark.parametrize(
    ("status", "error", "fix"),
    [
        (400, BadRequest, "check the [piapi] settings"),
        (401, AuthenticationError, "the API key in PIAPI_API_KEY was refused"),
        (402, QuotaExceeded, "top up the PiAPI account"),
        (403, AuthenticationError, "PIAPI_API_KEY is not allowed"),
        (404, BadRequest, "PIAPI_BASE_URL"),
    ],
)
def test_client_errors_are_never_retried(status: int, error: type[ProviderError], fix: str) -> None:
    service = Service().then(answer(status, error_body("piapi", status, "refused")))
    provider = build(PiAPIMidjourney, service)
    with pytest.raises(error) as info:
        provider.generate(gen_request())
    assert type(info.value) is error
    assert str(info.value).startswith(f"PiAPI answered {status} ")
    assert fix in str(info.value)
    assert info.value.status_code == status
    assert len(service.requests) == 1 and service.sleeps == []
    assert provider.ctx.usage.snapshot()["piapi"] == {"calls": 1, "failures": 1}


@pytest.mark.parametrize(
    ("cls", "service_name", "env"),
    [
        (PiAPIMidjourney, "piapi", "PIAPI_API_KEY"),
        (RunwareImages, "runware", "RUNWARE_API_KEY"),
        (OpenAIImages, "openai", "OPENAI_API_KEY"),
    ],
)
def test_a_wrong_key_fails_at_once_without_showing_it(
    cls: type, service_name: str, env: str
) -> None:
    wrong = f"wrong-{service_name}-key-3141592"

    def refuse(request: httpx.Request) -> httpx.Response:
        # Real services echo (parts of) the key they got; the client must scrub it.
        got = request.headers.get("x-api-key") or request.headers.get("authorization", "")
        message = f"Invalid API key provided: {got.removeprefix('Bearer ')}"
        return answer(401, error_body(service_name, 401, message, "invalid_api_key"))

    service = Service(refuse)
    provider = build(cls, service, keys={service_name: wrong})
    with pytest.raises(
        AuthenticationError, match=f"answered 401 Unauthorized: the API key in {env}"
    ) as info:
        provider.generate(gen_request())
    assert provider.ctx.usage.snapshot()[service_name]["calls"] == 1
    (received,) = service.requests
    assert wrong in received.headers.get("x-api-key", received.headers.get("authorization", ""))
    assert wrong not in str(info.value) and wrong not in (info.value.raw or "")
    assert "Invalid API key provided: ***" in (info.value.raw or "")


def test_unreachable_service_names_the_base_url_variable() -> None:
    service = Service().then(httpx.ConnectError, httpx.ConnectError)
    provider = build(PiAPIMidjourney, service)
    provider.http.retry = provider.http.retry.__class__(attempts=2, base_delay=0.01)
    with pytest.raises(RetryableProviderError, match=r"could not be reached.*PIAPI_BASE_URL"):
        provider.generate(gen_request())
    assert len(service.requests) == 2  # nothing can have been created: retried


# ---------------------------------------------------------------------------------------------
# Paid creates are sent at most once when the service may have accepted them


@pytest.mark.parametrize(
    "failure", [answer(502, {}), httpx.ReadTimeout, httpx.RemoteProtocolError, garbage()]
)
def test_an_ambiguous_piapi_create_is_never_sent_again(failure: Any) -> None:
    service = Service(piapi()).then(failure)
    provider = build(PiAPIMidjourney, service)
    with pytest.raises(AmbiguousCreate, match="may have created the task"):
        provider.generate(gen_request())
    assert len(service.sent(method="POST")) == 1
    assert provider.ctx.usage.snapshot()["piapi"]["ambiguous_creates"] == 1


@pytest.mark.parametrize(
    "failure", [httpx.ConnectError, httpx.ConnectTimeout, answer(429, {}, **{"Retry-After": "0"})]
)
def test_a_create_that_provably_did_not_arrive_is_retried(failure: Any) -> None:
    service = Service(piapi()).then(failure)
    result = build(PiAPIMidjourney, service).generate(gen_request())
    assert len(result.images) == 4
    assert len(service.sent(method="POST")) == 2


def test_an_ambiguous_runware_create_keeps_its_task_uuid() -> None:
    service = Service(runware).then(httpx.ReadTimeout)
    with pytest.raises(AmbiguousCreate) as info:
        build(RunwareImages, service).generate(gen_request())
    (sent,) = service.requests
    assert info.value.task_id == body_of(sent)[0]["taskUUID"]


# ---------------------------------------------------------------------------------------------
# Task answers: failed tasks, base64 outputs, task errors


def test_piapi_failed_task_is_content_rejected_or_retryable() -> None:
    service = Service(piapi("failed", "Banned prompt detected: gore"))
    with pytest.raises(ContentRejected, match="Banned prompt detected: gore") as info:
        build(PiAPIMidjourney, service).generate(gen_request())
    assert not isinstance(info.value, RetryableProviderError)
    service = Service(piapi("failed", "Midjourney timed out, try again"))
    with pytest.raises(RetryableProviderError, match="timed out"):
        build(PiAPIMidjourney, service).generate(gen_request())


def test_runware_base64_output_and_task_errors() -> None:
    service = Service(runware)
    provider = build(RunwareImages, service, settings(runware={"output_type": "base64Data"}))
    result = provider.generate(gen_request(aspect_ratio="2:3", width=800, height=800))
    assert result.images[0].media_type == "image/png"
    assert not downloads_of(service)
    (sent,) = service.requests
    assert (body_of(sent)[0]["width"], body_of(sent)[0]["height"]) == (576, 832)

    def task_error(code: str, message: str) -> httpx.Response:
        return answer(200, {"data": [], "errors": [{"code": code, "message": message}]})

    service.then(task_error("insufficientCredits", "Top up"))
    with pytest.raises(QuotaExceeded, match="insufficientCredits"):
        provider.generate(gen_request())
    service.then(task_error("timeoutProvider", "The provider timed out"))
    with pytest.raises(RetryableProviderError):
        provider.generate(gen_request())


# ---------------------------------------------------------------------------------------------
# Downloads: the size limit, broken bodies, bodies that are not images


def test_a_download_announcing_more_than_the_cap_is_not_fetched() -> None:
    huge = httpx.Response(
        200, headers={"Content-Length": str(300 * 1024**2)}, stream=httpx.ByteStream(b"\x89PNG")
    )
    calls = {"n": 0}

    def first_download_huge(request: httpx.Request) -> httpx.Response:
        if str(request.url).startswith(CDN):
            calls["n"] += 1
            return huge
        return runware(request)

    service = Service(first_download_huge)
    provider = build(RunwareImages, service, settings(generation={"max_download_mb": 10}))
    with pytest.raises(DownloadTooLarge, match=r"max_download_mb = 10 \(it announces 300 MB\)"):
        provider.generate(gen_request())
    assert calls["n"] == 1  # never retried
    assert provider.ctx.usage.snapshot()["runware"]["failures"] == 1


def test_a_download_going_on_past_the_cap_is_stopped() -> None:
    def endless(request: httpx.Request) -> httpx.Response:
        if str(request.url).startswith(CDN):
            return httpx.Response(200, stream=Endless())
        return runware(request)

    service = Service(endless)
    provider = build(RunwareImages, service, settings(generation={"max_download_mb": 1}))
    with pytest.raises(DownloadTooLarge, match="it went on past the cap"):
        provider.generate(gen_request())
    assert len(downloads_of(service)) == 1


def test_a_truncated_download_is_retried_and_a_persistent_one_fails_retryable() -> None:
    broken = 0

    def breaks_once(request: httpx.Request) -> httpx.Response:
        nonlocal broken
        if str(request.url).startswith(CDN) and broken < limit:
            broken += 1
            return httpx.Response(200, stream=Broken(png()[:100]))
        return runware(request)

    limit = 1
    service = Service(breaks_once)
    provider = build(RunwareImages, service)
    result = provider.generate(gen_request())
    assert sniff_media_type(result.images[0].data) == "image/png"
    assert len(downloads_of(service)) == 2
    assert provider.ctx.usage.snapshot()["runware"]["downloads"] == 2
    limit, broken = 10, 0
    with pytest.raises(RetryableProviderError, match="broke off the exchange"):
        provider.generate(gen_request())


def test_a_download_that_is_not_an_image_is_malformed() -> None:
    def html(request: httpx.Request) -> httpx.Response:
        if str(request.url).startswith(CDN):
            return httpx.Response(200, text="<html>Access denied</html>")
        return runware(request)

    with pytest.raises(MalformedResponse, match="that is not an image") as info:
        build(RunwareImages, Service(html)).generate(gen_request())
    assert "Access denied" in (info.value.raw or "")


# ---------------------------------------------------------------------------------------------
# OpenAI chat: re-asking, refusals, scrubbing answers


def test_malformed_vision_answers_are_asked_again_then_kept_raw() -> None:
    verdict = json.dumps({"passed": True, "reason": "a clean photo"})
    service = Service().then(chat('{"passed": "yes"}'), chat(verdict))
    provider = build(OpenAIVisionQC, service)
    request = QCRequest(image=ImageInput(png(), "image/png"), prompt="a fox")
    assert provider.check(request).passed
    assert len(service.requests) == 2
    text = "Sure! The image looks great to me."
    service = Service(lambda _request: chat(text))
    provider = build(OpenAIVisionQC, service)
    with pytest.raises(MalformedResponse, match="no valid quality check answer in 3 calls") as info:
        provider.check(request)
    assert info.value.raw == text
    assert len(service.requests) == 3


def test_a_refusal_fails_qc_with_the_reason() -> None:
    service = Service().then(chat(refusal="I can't help with that image."))
    verdict = build(OpenAIVisionQC, service).check(
        QCRequest(image=ImageInput(png(), "image/png"), prompt="a fox")
    )
    assert not verdict.passed and "refused" in verdict.reason


def test_a_key_echoed_in_an_answer_never_leaves_the_provider() -> None:
    service = Service().then(chat(f"a red fox, key {KEYS['openai']} and {KEYS['piapi']}"))
    prompt = build(OpenAIPrompt, service).make_prompt(PromptRequest("s", "fox"))
    assert KEYS["openai"] not in prompt and KEYS["piapi"] not in prompt
    assert prompt == "a red fox, key *** and ***"
    (sent,) = service.requests
    assert (sent.method, sent.url.path) == ("POST", "/v1/chat/completions")
    assert body_of(sent)["messages"][1] == {"role": "user", "content": "fox"}


def test_an_error_body_echoing_a_key_is_scrubbed_in_message_and_raw() -> None:
    echo = f"upstream said: {KEYS['openai']} is over quota"
    service = Service().then(answer(400, {"error": {"message": echo}}))
    with pytest.raises(BadRequest) as info:
        build(OpenAIPrompt, service).make_prompt(PromptRequest("s", "fox"))
    assert "upstream said: *** is over quota" in str(info.value)
    assert KEYS["openai"] not in (info.value.raw or "") and "***" in (info.value.raw or "")


# ---------------------------------------------------------------------------------------------
# remove.bg


def test_removebg_sends_the_image_and_records_the_credits() -> None:
    service = Service(removebg)
    provider = build(RemoveBG, service, settings(processing={"remove_bg_size": "50MP"}))
    result = provider.remove_background(ImageInput(png(fmt="JPEG"), "image/png"))
    (sent,) = service.requests
    assert (sent.method, sent.url.path) == ("POST", "/v1.0/removebg")
    assert sent.headers["x-api-key"] == KEYS["removebg"]
    assert b'name="size"\r\n\r\n50MP' in sent.content
    assert b'filename="image.jpg"' in sent.content and b"Content-Type: image/jpeg" in sent.content
    assert result.credits_charged == 1.0 and sniff_media_type(result.data) == "image/png"
    assert provider.ctx.usage.snapshot()["removebg"] == {"calls": 1, "credits": 1.0, "images": 1}


def test_removebg_keeps_an_image_without_foreground() -> None:
    body = error_body(
        "removebg", 400, "Could not identify foreground in image.", "unknown_foreground"
    )
    service = Service().then(answer(400, body))
    provider = build(RemoveBG, service)
    plain = png(fmt="JPEG")
    result = provider.remove_background(ImageInput(plain, "image/jpeg"))
    assert result.note == NO_FOREGROUND_NOTE
    assert sniff_media_type(result.data) == "image/png"
    assert "failures" not in provider.ctx.usage.snapshot()["removebg"]


def test_removebg_out_of_credits_stops_at_once() -> None:
    service = Service().then(answer(402, error_body("removebg", 402, "Insufficient credits")))
    with pytest.raises(QuotaExceeded, match=r"remove\.bg answered 402 Payment Required"):
        build(RemoveBG, service).remove_background(ImageInput(png(), "image/png"))
    assert len(service.requests) == 1


def test_removebg_wrong_key_is_403_authentication() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        message = f"Invalid API key provided: {request.headers['x-api-key']}"
        return answer(403, error_body("removebg", 403, message, "invalid_api_key"))

    provider = build(RemoveBG, Service(refuse), removebg="wrong-removebg-key-2718")
    with pytest.raises(AuthenticationError, match="REMOVE_BG_API_KEY") as info:
        provider.remove_background(ImageInput(png(), "image/png"))
    assert info.value.status_code == 403
    assert "wrong-removebg-key-2718" not in (info.value.raw or "")


# ---------------------------------------------------------------------------------------------
# Undecodable images: one error, raised by processing, before anything is sent


@pytest.mark.parametrize(
    ("cls", "call"),
    [
        (RemoveBG, lambda p, image: p.remove_background(image)),
        (OpenAIVisionQC, lambda p, image: p.check(QCRequest(image, "a fox"))),
    ],
)
def test_an_undecodable_image_is_unreadable_and_nothing_is_sent(
    cls: type, call: Callable[[Any, ImageInput], Any]
) -> None:
    service = Service()
    with pytest.raises(UnreadableImage, match="not an image"):
        call(build(cls, service), ImageInput(b"<html>not found</html>", "image/png"))
    assert service.requests == []
