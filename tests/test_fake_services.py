"""The fake services themselves: realistic answers, auth checks, faults and the control API."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.fakes.fixtures import fake_services
from tests.fakes.server import FakeServices, encode, parse_multipart, render

__all__ = ["fake_services"]


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5) as c:
        yield c


def piapi_headers(fake: FakeServices) -> dict[str, str]:
    return {"X-API-Key": str(fake.keys["piapi"])}


def bearer(fake: FakeServices, service: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {fake.keys[service]}"}


def test_piapi_task_moves_from_pending_to_completed(
    fake_services: FakeServices, client: httpx.Client
) -> None:
    fake_services.polls_until_done = 3
    base = fake_services.urls["piapi"]
    created = client.post(
        f"{base}/api/v1/task",
        headers=piapi_headers(fake_services),
        json={
            "model": "midjourney",
            "task_type": "imagine",
            "input": {"prompt": "a fox", "aspect_ratio": "2:3"},
        },
    ).json()
    task_id = created["data"]["task_id"]
    assert created["code"] == 200 and created["data"]["status"] == "pending"
    statuses = []
    for _ in range(3):
        data = client.get(f"{base}/api/v1/task/{task_id}", headers=piapi_headers(fake_services))
        statuses.append(data.json()["data"]["status"])
    assert statuses == ["pending", "processing", "completed"]
    output = data.json()["data"]["output"]
    assert len(output["image_urls"]) == 4 and output["image_url"]
    grid = client.get(output["image_url"]).content
    with Image.open(io.BytesIO(grid)) as opened:
        assert opened.format == "JPEG" and opened.size == (2 * 341, 2 * 512)
    missing = client.get(f"{base}/api/v1/task/nope", headers=piapi_headers(fake_services))
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("service", "path", "status"),
    [
        ("piapi", "/api/v1/task", 401),
        ("runware", "", 401),
        ("openai", "/chat/completions", 401),
        ("removebg", "/v1.0/removebg", 403),
    ],
)
def test_wrong_keys_are_refused_with_the_key_echoed(
    fake_services: FakeServices, client: httpx.Client, service: str, path: str, status: int
) -> None:
    headers = {"X-API-Key": "nope-key", "Authorization": "Bearer nope-key"}
    answer = client.post(fake_services.urls[service] + path, headers=headers, json={})
    assert answer.status_code == status
    assert "nope-key" in answer.text
    assert fake_services.requests(service)[0].status == status


def test_sdwebui_needs_no_key_and_checks_sizes(
    fake_services: FakeServices, client: httpx.Client
) -> None:
    url = fake_services.urls["sdwebui"] + "/sdapi/v1/txt2img"
    answer = client.post(url, json={"prompt": "a fox", "width": 320, "height": 200, "seed": 7})
    body = answer.json()
    assert json.loads(body["info"])["all_seeds"] == [7]
    with Image.open(io.BytesIO(base64.b64decode(body["images"][0]))) as opened:
        assert opened.size == (320, 200)
    assert client.post(url, json={"prompt": "x", "width": 321, "height": 200}).status_code == 422


def test_images_are_distinct_per_prompt_and_sized() -> None:
    fox, cat = render("a fox", 64, 48), render("a cat", 64, 48)
    assert fox.size == (64, 48) and fox.tobytes() != cat.tobytes()
    assert render("a fox", 64, 48).tobytes() == fox.tobytes()


def test_removebg_cuts_out_the_foreground(
    fake_services: FakeServices, client: httpx.Client
) -> None:
    answer = client.post(
        fake_services.urls["removebg"] + "/v1.0/removebg",
        headers={"X-Api-Key": str(fake_services.keys["removebg"])},
        files={"image_file": ("x.png", encode(render("a fox", 200, 100), "PNG"), "image/png")},
        data={"size": "preview"},
    )
    assert answer.status_code == 200 and answer.headers["X-Credits-Charged"] == "0.25"
    with Image.open(io.BytesIO(answer.content)) as cut:
        assert cut.mode == "RGBA"
        assert cut.getpixel((0, 0))[3] == 0  # type: ignore[index]
        assert cut.getpixel((100, 50))[3] == 255  # type: ignore[index]


def test_multipart_uploads_are_recorded_byte_for_byte(
    fake_services: FakeServices, client: httpx.Client
) -> None:
    # Bytes that look like line ends and delimiters must survive the fake's boundary split.
    payload = b"\x89PNG\r\n\x1a\n" + b"\r\n--\r\n\r\n" + bytes(range(256)) * 64 + b"\r\n"
    client.post(
        fake_services.urls["removebg"] + "/v1.0/removebg",
        headers={"X-Api-Key": str(fake_services.keys["removebg"])},
        files={"image_file": ("cat; dog.png", payload, "image/png")},
        data={"size": "full", "note": "été"},
    )
    (record,) = fake_services.requests("removebg")
    assert record.files["image_file"] == ("cat; dog.png", "image/png", payload)
    assert record.form == {"size": "full", "note": "été"}


def test_a_boundary_inside_a_line_is_payload() -> None:
    body = (
        b"--b0\r\n"
        b'Content-Disposition: form-data; name="f"; filename="x.png"\r\n'
        b"Content-Type: Image/PNG\r\n\r\n"
        b"xx--b0yy\r\n--b0-not-a-delimiter\r\n"
        b"--b0--\r\n"
    )
    ((headers, payload),) = parse_multipart("multipart/form-data; boundary=b0", body)
    assert payload == b"xx--b0yy\r\n--b0-not-a-delimiter"
    assert headers["content-type"] == "Image/PNG"
    assert parse_multipart("multipart/form-data", body) == []


def test_vision_answers_follow_the_schema_sent(
    fake_services: FakeServices, client: httpx.Client
) -> None:
    schema = {
        "type": "object",
        "properties": {
            "passed": {"type": "boolean"},
            "score": {"type": "number"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "nested": {"type": "object", "properties": {"n": {"type": "integer"}}},
        },
    }
    image = base64.b64encode(encode(render("x", 32, 32), "PNG")).decode()
    body: dict[str, Any] = {
        "model": "gpt-4o",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Check it"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image}"}},
                ],
            }
        ],
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
    }
    url = fake_services.urls["openai"] + "/chat/completions"
    answer = client.post(url, headers=bearer(fake_services, "openai"), json=body).json()
    content = json.loads(answer["choices"][0]["message"]["content"])
    assert content["passed"] is True and isinstance(content["score"], float)
    assert isinstance(content["tags"], list) and content["nested"] == {"n": 1}
    assert answer["usage"]["prompt_tokens"] > 85
    # A data URL that lies about its type is refused, as the real API does.
    body["messages"][0]["content"][1]["image_url"]["url"] = f"data:image/jpeg;base64,{image}"
    refused = client.post(url, headers=bearer(fake_services, "openai"), json=body)
    assert refused.status_code == 400 and "image/png" in refused.text


def test_control_endpoint_injects_faults_and_lists_requests(
    fake_services: FakeServices, client: httpx.Client
) -> None:
    control = fake_services.base_url + "/_control"
    fault = {"service": "runware", "kind": "429", "times": 2, "params": {"retry_after": 3}}
    assert client.post(f"{control}/faults", json=fault).json() == {"ok": True}
    url = fake_services.urls["runware"]
    answers = [
        client.post(url, headers=bearer(fake_services, "runware"), json=[]) for _ in range(3)
    ]
    assert [a.status_code for a in answers] == [429, 429, 400]
    assert answers[0].headers["Retry-After"] == "3"
    listing = client.get(f"{control}/requests").json()
    assert [r["fault"] for r in listing] == ["429", "429", None]
    client.post(f"{control}/reset")
    assert client.get(f"{control}/requests").json() == []


def test_a_seeded_fault_rate_is_reproducible(
    fake_services: FakeServices, client: httpx.Client
) -> None:
    def run() -> list[int]:
        fake_services.reset()
        fake_services.set_fault_rate(0.2, kinds=("500", "502", "503"), seed=7)
        url = fake_services.urls["sdwebui"] + "/sdapi/v1/txt2img"
        body = {"prompt": "x", "width": 64, "height": 64}
        return [client.post(url, json=body).status_code for _ in range(100)]

    first = run()
    assert first == run()
    assert 10 <= sum(code >= 500 for code in first) <= 30


def test_a_hang_is_released_when_the_server_stops(client: httpx.Client) -> None:
    fake = FakeServices().start()
    fake.add_fault("sdwebui", "hang", seconds=30)
    with pytest.raises(httpx.ReadTimeout):
        client.post(fake.urls["sdwebui"] + "/sdapi/v1/txt2img", json={}, timeout=0.2)
    started = time.monotonic()
    fake.stop()
    assert time.monotonic() - started < 10  # not the 30 s hang


def test_runnable_by_hand_prints_what_to_export() -> None:
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.server", "--port", "0"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines: list[str] = []
        while not lines or lines[-1] not in ("", "# Ctrl+C stops.\n"):  # "" is EOF
            lines.append(process.stdout.readline())
    finally:
        process.terminate()
        process.wait(timeout=5)
    exports: dict[str, str] = {}
    for line in lines:
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").strip().partition("=")
            exports[name] = value
    assert exports["PIAPI_BASE_URL"].startswith("http://127.0.0.1:")
    assert exports["PIAPI_BASE_URL"].endswith("/piapi")
    assert exports["OPENAI_BASE_URL"].endswith("/openai/v1")
    assert exports["REMOVE_BG_API_KEY"] == "fake-removebg-key-0b8e6c"


IMAGINE = {"model": "midjourney", "task_type": "imagine", "input": {"prompt": "a fox"}}


def test_faults_after_the_work_leave_the_task_created(
    fake_services: FakeServices, client: httpx.Client
) -> None:
    base = fake_services.urls["piapi"]
    fake_services.add_fault("piapi", "502_after")
    fake_services.add_fault("piapi", "reset_after")
    answer = client.post(f"{base}/api/v1/task", headers=piapi_headers(fake_services), json=IMAGINE)
    assert answer.status_code == 502
    with pytest.raises(httpx.TransportError):
        client.post(f"{base}/api/v1/task", headers=piapi_headers(fake_services), json=IMAGINE)
    assert len(fake_services.tasks()) == 2  # both were created, neither answer said so


def test_a_random_fault_rate_can_spare_a_path(
    fake_services: FakeServices, client: httpx.Client
) -> None:
    base = fake_services.urls["piapi"]
    fake_services.set_fault_rate(1.0, kinds=["500"], spare=[("piapi", "/api/v1/task")])
    for _ in range(5):
        answer = client.post(
            f"{base}/api/v1/task", headers=piapi_headers(fake_services), json=IMAGINE
        )
        assert answer.status_code == 200
    task_id = answer.json()["data"]["task_id"]
    poll = client.get(f"{base}/api/v1/task/{task_id}", headers=piapi_headers(fake_services))
    assert poll.status_code == 500


def test_an_echoing_fake_writes_the_key_it_received_into_its_answers(
    fake_services: FakeServices, client: httpx.Client
) -> None:
    fake_services.echo_key = True
    key = str(fake_services.keys["openai"])
    answer = client.post(
        f"{fake_services.urls['openai']}/chat/completions",
        headers=bearer(fake_services, "openai"),
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "red fox"}]},
    ).json()
    assert key in answer["choices"][0]["message"]["content"]


def test_a_huge_download_streams_until_the_client_hangs_up(
    fake_services: FakeServices, client: httpx.Client
) -> None:
    fake_services.add_fault("cdn", "huge", mb=200)
    with client.stream("GET", f"{fake_services.base_url}/cdn/anything.png") as response:
        assert response.headers["Content-Length"] == str(200 * 1024**2)
        first = next(response.iter_bytes())
    assert first.startswith(b"\x89PNG")
