"""A real HTTP server on 127.0.0.1 speaking the six APIs genfactory calls, for tests and demos.

One port, one path prefix per service (base URLs from `FakeServices.urls`):

    /piapi      PiAPI task API: POST /api/v1/task, GET /api/v1/task/{id}   header X-API-Key
    /runware/v1 Runware: POST a JSON array of tasks                         Authorization: Bearer
    /openai/v1  OpenAI: POST /chat/completions, POST /images/generations    Authorization: Bearer
    /sdwebui    SD WebUI: POST /sdapi/v1/txt2img                            (no key)
    /removebg   remove.bg: POST /v1.0/removebg (multipart)                  X-Api-Key
    /cdn        image downloads (never needs a key)
    /_control   faults, fault rate, reset, recorded requests (JSON), for use by hand

Images are real (Pillow), distinct per prompt, of the requested size or aspect ratio. A wrong
key gets 401 (remove.bg: 403, as the real one) with a body that echoes the key it received, so
clients must scrub error bodies. The CDN serves Midjourney images as JPEG under `.png` URLs with
`Content-Type: image/png`, as misconfigured CDNs do: clients must sniff the bytes.

Faults, from Python (`add_fault`, `set_fault_rate`, `set_latency`) or `POST /_control/...`:

    any service: "429" (retry_after=s | retry_after_date=True), "500", "502", "503", "400",
                 "401", "402", "403", "404", "hang" (seconds; the connection is then closed
                 unanswered), "reset" (connection dropped), "garbage" (200 with a non-JSON body),
                 "latency" (seconds, then the normal answer)
    after the work is done (the task exists, the charge is made), any service:
                 "late_answer" (seconds: the answer is held back, then the connection closed),
                 "502_after" (a 502 instead of the answer), "reset_after" (connection dropped)
    cdn:         "huge" (mb; chunked=True streams without Content-Length)
    piapi:       "fail_task" (message), "slow_task" (extra_polls), "grid" (only one grid URL)
    runware:     "task_error" (code, message: a 200 answer with errors[])
    openai:      "malformed" (variant="text"|"schema"), "refusal", "qc_fail" (reason)
    removebg:    "unknown_foreground"

`FakeServices.echo_key = True` makes every successful answer echo the key it received (in
prompts, QC reasons, titles, descriptions, keywords, revised prompts): no answer is trusted.

Run by hand: `python -m tests.fakes.server --port 8765` prints the variables to export.
"""

from __future__ import annotations

import argparse
import base64
import email.parser
import hashlib
import io
import json
import random
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from PIL import Image, ImageChops, ImageDraw, ImageStat

SERVICES = ("piapi", "runware", "openai", "sdwebui", "removebg")
#: Fake keys; deliberately unlike real key formats so no secret scanner mistakes them.
DEFAULT_KEYS: dict[str, str | None] = {
    "piapi": "fake-piapi-key-7f3a21",
    "runware": "fake-runware-key-91c2e8",
    "openai": "fake-openai-key-44d0b5",
    "removebg": "fake-removebg-key-0b8e6c",
}
PREFIXES = {
    "piapi": "/piapi",
    "runware": "/runware/v1",
    "openai": "/openai/v1",
    "sdwebui": "/sdwebui",
    "removebg": "/removebg",
}
ENV_NAMES = {
    "piapi": ("PIAPI_BASE_URL", "PIAPI_API_KEY"),
    "runware": ("RUNWARE_BASE_URL", "RUNWARE_API_KEY"),
    "openai": ("OPENAI_BASE_URL", "OPENAI_API_KEY"),
    "sdwebui": ("SDWEBUI_BASE_URL", None),
    "removebg": ("REMOVE_BG_BASE_URL", "REMOVE_BG_API_KEY"),
}
GENERIC_FAULTS = {
    "429", "500", "502", "503", "400", "401", "402", "403", "404",
    "hang", "reset", "garbage", "latency",
}  # fmt: skip
#: Faults that strike after the request was handled: the task exists and was charged.
AFTER_FAULTS = {"late_answer", "502_after", "reset_after"}
#: What a random fault rate draws from: transient faults a client must ride out.
TRANSIENT_FAULTS = ("429", "500", "502", "503", "garbage", "reset")
OPENAI_IMAGE_SIZES = {
    "gpt-image-1": {"1024x1024", "1536x1024", "1024x1536", "auto"},
    "dall-e-3": {"1024x1024", "1792x1024", "1024x1792"},
    "dall-e-2": {"256x256", "512x512", "1024x1024"},
}
REMOVEBG_SIZES = {"auto", "preview", "small", "regular", "medium", "hd", "full", "4k", "50MP"}
#: QC answers fail prompts naming what stock sites refuse (deterministic verdicts).
QC_REJECT_WORDS = ("lettering", "logo", "watermark", "celebrity")
RUNWARE_COST_PER_IMAGE = 0.0013


@dataclass
class RecordedRequest:
    """One request as the fake received it (header names lowercased)."""

    service: str
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    json: Any = None
    form: dict[str, str] = field(default_factory=dict)
    files: dict[str, tuple[str, str, bytes]] = field(default_factory=dict)
    status: int = 0
    fault: str | None = None
    started: float = 0.0
    ended: float = 0.0
    #: When the answer may go out: a service's latency counts from arrival and includes the
    #: fake's own work, as a remote service's does (its CPU is not the client's critical path).
    answer_at: float = 0.0
    #: The client's port: one per TCP connection (which requests shared a kept-alive one).
    peer_port: int = 0


@dataclass
class Fault:
    """`times` answers of `kind` for `service` (-1: until cleared); `path` narrows the match."""

    service: str
    kind: str
    times: int = 1
    params: dict[str, Any] = field(default_factory=dict)
    path: str | None = None


@dataclass
class _Task:
    task_id: str
    prompt: str
    aspect_ratio: str
    process_mode: str
    polls_needed: int
    polls: int = 0
    fail_message: str | None = None
    grid_only: bool = False
    output: dict[str, Any] | None = None


# ---------------------------------------------------------------------------------------------
# Images


def _digest(*parts: object) -> bytes:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()


def render(prompt: str, width: int, height: int, variant: int = 0) -> Image.Image:
    """A distinct, deterministic picture per (prompt, variant): a plain backdrop and shapes."""
    d = _digest(prompt, variant)
    background = (200 + d[0] % 56, 200 + d[1] % 56, 200 + d[2] % 56)
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    for i in range(4):
        b = d[3 + i * 7 : 10 + i * 7]
        color = (b[0] % 180, b[1] % 180, b[2] % 180)
        cx = width * (0.3 + 0.4 * b[3] / 255)
        cy = height * (0.3 + 0.4 * b[4] / 255)
        rx = width * (0.08 + 0.15 * b[5] / 255)
        ry = height * (0.08 + 0.15 * b[6] / 255)
        box = (cx - rx, cy - ry, cx + rx, cy + ry)
        (draw.ellipse if i % 2 == 0 else draw.rectangle)(box, fill=color)
    return image


def encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    fmt = {"JPG": "JPEG"}.get(fmt.upper(), fmt.upper())
    if fmt == "JPEG":
        image.convert("RGB").save(buffer, format="JPEG", quality=90)
    elif fmt == "PNG":
        # Fast compression: the fake stands in for remote services, so its CPU should compete
        # as little as it can with the client it serves on the same machine.
        image.save(buffer, format="PNG", compress_level=1)
    else:
        image.save(buffer, format=fmt)
    return buffer.getvalue()


def size_for_ratio(aspect_ratio: str, long_side: int) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+):(\d+)", aspect_ratio.strip())
    rw, rh = (int(match.group(1)), int(match.group(2))) if match else (1, 1)
    if rw >= rh:
        return long_side, max(1, round(long_side * rh / rw))
    return max(1, round(long_side * rw / rh)), long_side


def sniff(data: bytes) -> str | None:
    """The real type of an image. Deliberately independent of genfactory.media: the fake
    checks what the client declared, so it must not share the client's code."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return None


def cut_out(image: Image.Image) -> Image.Image | None:
    """RGBA with the backdrop (the corners' colour) transparent; None if nothing stands out."""
    rgb = image.convert("RGB")
    w, h = rgb.size
    corners = [rgb.getpixel(p) for p in ((0, 0), (w - 1, 0), (0, h - 1), (w - 1, h - 1))]
    backdrop = tuple(sorted(c[i] for c in corners)[1] for i in range(3))  # type: ignore[index]
    diff = ImageChops.difference(rgb, Image.new("RGB", rgb.size, backdrop)).convert("L")
    mask = diff.point(lambda v: 255 if v > 24 else 0)
    if ImageStat.Stat(mask).mean[0] < 255 * 0.005:
        return None
    out = rgb.convert("RGBA")
    out.putalpha(mask)
    return out


#: Headers only, the default (compat32) policy: the `HTTP` policy's header registry costs more.
_HEADERS = email.parser.HeaderParser()


def parse_multipart(content_type: str, body: bytes) -> list[tuple[Message, bytes]]:
    """The parts of a multipart/form-data body: (headers, payload) each.

    Only the delimiters are found here and only each part's few header lines go through
    `email`: its feed parser read a whole binary upload line by line, at a few hundred KB per
    image a third of the fake's CPU, and the fake shares the machine with the client it serves
    (benchmarks/README.md).
    """
    boundary = _HEADERS.parsestr(f"Content-Type: {content_type}\r\n\r\n").get_boundary()
    if not boundary:
        return []
    # A delimiter is a line of its own: CRLF "--" boundary ["--"] [blanks] CRLF; the first
    # one may open the body without its CRLF. A body cut short keeps its last part as far as
    # it goes. (A literal first lets the regex engine search fast.)
    delimiter = re.compile(rb"\r\n--" + re.escape(boundary.encode()) + rb"(--)?[ \t]*(?:\r\n|\Z)")
    data = b"\r\n" + body
    found = list(delimiter.finditer(data))
    ends = [m.start() for m in found[1:]] + [len(data)]
    parts: list[tuple[Message, bytes]] = []
    for opening, end in zip(found, ends, strict=False):  # with no delimiter, `ends` has one
        if opening.group(1):  # the closing delimiter
            break
        head, blank, payload = data[opening.end() : end].partition(b"\r\n\r\n")
        if blank:  # a part without headers has no name either: it is left out below
            parts.append((_HEADERS.parsestr(head.decode("utf-8", "replace") + "\r\n\r\n"), payload))
    return parts


# ---------------------------------------------------------------------------------------------
# The server


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: FakeServices

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up (timeouts in tests) are expected: no tracebacks on stderr."""


class FakeServices:
    """The fake services; `start()` binds 127.0.0.1 on `port` (0: any free port)."""

    def __init__(
        self,
        *,
        keys: dict[str, str | None] | None = None,
        port: int = 0,
        polls_until_done: int = 2,
        image_long_side: int = 512,
        seed: int = 0,
    ) -> None:
        self.keys: dict[str, str | None] = {**DEFAULT_KEYS, **(keys or {})}
        self.port = port
        self.polls_until_done = polls_until_done
        self.image_long_side = image_long_side
        self.midjourney_grid_only = False
        self.qc_reject_words = QC_REJECT_WORDS
        self.echo_key = False
        self._seed = seed
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._faults: list[Fault] = []
        self._rate: tuple[float, tuple[str, ...], set[str], random.Random, dict[str, Any]] | None
        self._rate = None
        self._spared: set[tuple[str, str]] = set()
        self._latency: dict[str, float] = {}
        self._tasks: dict[str, _Task] = {}
        self._cdn: dict[str, tuple[bytes, str]] = {}
        self._in_flight: dict[str, int] = {}
        self._peak: dict[str, int] = {}
        self._rng = random.Random(seed)
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> FakeServices:
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.fake = self
        self._server = server
        self.port = server.server_address[1]
        self._stopping.clear()
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # releases handlers sleeping in "hang" / "latency"
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeServices:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses -----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def urls(self) -> dict[str, str]:
        """The base URL of each service, as its settings/env variable expects it."""
        return {service: self.base_url + prefix for service, prefix in PREFIXES.items()}

    def env(self) -> dict[str, str]:
        """Environment variables pointing genfactory at the fakes (base URLs and keys)."""
        out = {}
        for service, (url_var, key_var) in ENV_NAMES.items():
            out[url_var] = self.urls[service]
            key = self.keys.get(service)
            if key_var and key:
                out[key_var] = key
        return out

    def settings_data(self) -> dict[str, dict[str, str]]:
        """Settings sections with the fakes' base URLs (for Settings.model_validate)."""
        return {service: {"base_url": url} for service, url in self.urls.items()}

    # -- recorded requests ---------------------------------------------------------------------

    def requests(
        self, service: str | None = None, path: str | None = None, method: str | None = None
    ) -> list[RecordedRequest]:
        """Requests received so far, oldest first; `path` matches a substring."""
        with self._lock:
            items = list(self._requests)
        return [
            r
            for r in items
            if (service is None or r.service == service)
            and (path is None or path in r.path)
            and (method is None or r.method == method)
        ]

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()
            self._peak.clear()

    def peak(self, service: str) -> int:
        """Most requests of `service` handled at the same time so far."""
        with self._lock:
            return self._peak.get(service, 0)

    def tasks(self) -> dict[str, dict[str, Any]]:
        """PiAPI tasks created so far: task_id -> prompt, aspect_ratio, polls, status."""
        with self._lock:
            return {
                t.task_id: {
                    "prompt": t.prompt,
                    "aspect_ratio": t.aspect_ratio,
                    "polls": t.polls,
                    "failed": t.fail_message is not None,
                }
                for t in self._tasks.values()
            }

    # -- faults --------------------------------------------------------------------------------

    def add_fault(
        self, service: str, kind: str, times: int = 1, *, path: str | None = None, **params: Any
    ) -> Fault:
        """Answer the next `times` matching requests with `kind` (see the module docstring)."""
        fault = Fault(service, str(kind), times, params, path)
        with self._lock:
            self._faults.append(fault)
        return fault

    def set_fault_rate(
        self,
        rate: float,
        *,
        kinds: Iterable[str] = TRANSIENT_FAULTS,
        services: Iterable[str] = (*SERVICES, "cdn"),
        seed: int = 0,
        spare: Iterable[tuple[str, str]] = (),
        **params: Any,
    ) -> None:
        """Answer a share `rate` of requests with a random transient fault (seeded); requests
        to the (service, exact path) pairs in `spare` never get one."""
        with self._lock:
            self._rate = (rate, tuple(kinds), set(services), random.Random(seed), params)
            self._spared = set(spare)

    def set_latency(self, service: str, seconds: float) -> None:
        """Every answer of `service` waits `seconds` first (0 turns it off)."""
        with self._lock:
            self._latency[service] = seconds

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._rate = None
            self._latency.clear()

    def reset(self) -> None:
        """Forget requests, faults, tasks and downloads."""
        self.clear_faults()
        with self._lock:
            self._requests.clear()
            self._tasks.clear()
            self._cdn.clear()
            self._peak.clear()
        self.midjourney_grid_only = False

    def take_fault(self, service: str, kinds: Iterable[str], path: str) -> Fault | None:
        """The first queued fault of one of `kinds` for this request (consumed), or None."""
        wanted = set(kinds)
        with self._lock:
            for fault in self._faults:
                if fault.service != service or fault.kind not in wanted or fault.times == 0:
                    continue
                if fault.path is not None and fault.path not in path:
                    continue
                if fault.times > 0:
                    fault.times -= 1
                return Fault(fault.service, fault.kind, 1, dict(fault.params), fault.path)
            if self._rate is not None:
                rate, rate_kinds, services, rng, params = self._rate
                choices = [k for k in rate_kinds if k in wanted]
                spared = (service, path) in self._spared
                if service in services and choices and not spared and rng.random() < rate:
                    return Fault(service, rng.choice(choices), 1, dict(params))
        return None

    # -- internals used by the handler ---------------------------------------------------------

    @contextmanager
    def _track(self, service: str) -> Iterator[None]:
        with self._lock:
            now = self._in_flight.get(service, 0) + 1
            self._in_flight[service] = now
            self._peak[service] = max(self._peak.get(service, 0), now)
        try:
            yield
        finally:
            with self._lock:
                self._in_flight[service] -= 1

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _wait(self, seconds: float) -> None:
        self._stopping.wait(seconds)

    def _store(self, data: bytes, content_type: str, extension: str) -> str:
        token = f"{uuid.uuid4().hex}.{extension}"
        with self._lock:
            self._cdn[token] = (data, content_type)
        return f"{self.base_url}/cdn/{token}"

    def _seeded(self, *parts: object) -> int:
        return int.from_bytes(_digest(self._seed, *parts)[:4], "big") % 2**31


# ---------------------------------------------------------------------------------------------
# Request handling


class _Reply(Exception):
    """Raised by handlers to answer at once."""

    def __init__(
        self, status: int, body: Any, headers: dict[str, str] | None = None, raw: bool = False
    ) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}
        self.raw = raw


def error_body(service: str, status: int, message: str, code: str = "") -> Any:
    """An error in each service's own shape."""
    code = code or HTTPStatus(status).phrase.lower().replace(" ", "_")
    if service == "piapi":
        return {"code": status, "data": None, "message": message}
    if service == "runware":
        return {"errors": [{"code": code, "message": message}]}
    if service == "openai":
        return {"error": {"message": message, "type": "invalid_request_error", "code": code}}
    if service == "removebg":
        return {"errors": [{"title": message, "code": code}]}
    return {"detail": message}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without TCP_NODELAY, delayed ACKs add 40 ms each.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read `FakeServices.requests()` instead."""

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    # -- plumbing ------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        fake = self.server.fake
        split = urlsplit(self.path)
        path = split.path
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        service, rest = self._route(path)
        record = RecordedRequest(
            service=service,
            method=self.command,
            path=path,
            query=parse_qs(split.query),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            started=time.monotonic(),
            peer_port=int(self.client_address[1]),
        )
        self._parse_body(record)
        if service == "control":
            self._control(rest, record)
            return
        fake._record(record)
        with fake._track(service):
            try:
                self._handle(service, rest, record)
            except _Reply as reply:
                self._send(record, reply.status, reply.body, reply.headers, reply.raw)
            except _Drop:
                self.close_connection = True
            except Exception as exc:  # a bug in the fake: answer 500 and say what it was
                self._send(record, 500, error_body(service, 500, f"fake server error: {exc!r}"))
        record.ended = time.monotonic()

    @staticmethod
    def _route(path: str) -> tuple[str, str]:
        if path.startswith("/_control/"):
            return "control", path[len("/_control") :]
        if path.startswith("/cdn/"):
            return "cdn", path[len("/cdn/") :]
        for service, prefix in PREFIXES.items():
            if path == prefix or path.startswith(prefix + "/"):
                return service, path[len(prefix) :]
        return "unknown", path

    def _parse_body(self, record: RecordedRequest) -> None:
        content_type = record.headers.get("content-type", "")
        if not record.body:
            return
        if "json" in content_type:
            try:
                record.json = json.loads(record.body)
            except ValueError:
                record.json = None
        elif content_type.startswith("multipart/form-data"):
            for part, payload in parse_multipart(content_type, record.body):
                name = part.get_param("name", header="content-disposition")
                if not isinstance(name, str):
                    continue
                if filename := part.get_filename():
                    record.files[name] = (filename, part.get_content_type(), payload)
                else:
                    record.form[name] = payload.decode("utf-8", "replace")

    def _send(
        self,
        record: RecordedRequest | None,
        status: int,
        body: Any,
        headers: dict[str, str] | None = None,
        raw: bool = False,
    ) -> None:
        if raw:
            data = body if isinstance(body, bytes) else str(body).encode()
        else:
            data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", **(headers or {})}
        if record is not None:
            record.status = status
            self._hold(record)
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            self.close_connection = True

    def _hold(self, record: RecordedRequest) -> None:
        """Wait out what is left of the service's latency before answering (or hanging up)."""
        delay = record.answer_at - time.monotonic()
        if delay > 0:
            self.server.fake._wait(delay)

    # -- faults and auth -----------------------------------------------------------------------

    def _generic_fault(self, service: str, rest: str, record: RecordedRequest) -> None:
        fake = self.server.fake
        latency = fake._latency.get(service, 0.0)
        fault = fake.take_fault(service, GENERIC_FAULTS, rest)
        if fault is None:
            record.answer_at = record.started + latency
            return
        if latency:
            fake._wait(latency)
        record.fault = fault.kind
        kind, params = fault.kind, fault.params
        if kind == "latency":
            fake._wait(float(params.get("seconds", 1.0)))
            return
        if kind == "hang":
            fake._wait(float(params.get("seconds", 30.0)))
            raise _Drop
        if kind == "reset":
            self.connection.shutdown(socket.SHUT_RDWR)
            raise _Drop
        if kind == "garbage":
            raise _Reply(200, b"<html><body>502 Bad Gateway</body></html>", raw=True)
        status = int(kind)
        headers = {}
        if status == 429:
            if params.get("retry_after_date"):
                when = time.time() + float(params.get("retry_after", 1))
                headers["Retry-After"] = formatdate(when, usegmt=True)
            elif "retry_after" in params:
                headers["Retry-After"] = str(params["retry_after"])
        messages = {
            429: "Too many requests; slow down",
            402: "Insufficient credits",
            401: "Invalid API key",
            403: "Forbidden",
            404: "Not found",
            400: str(params.get("message", "Invalid request")),
        }
        message = messages.get(status, "Internal server error")
        code = {402: "insufficient_credits", 401: "invalid_api_key"}.get(status, "")
        raise _Reply(status, error_body(service, status, message, code), headers)

    def _check_key(self, service: str, record: RecordedRequest) -> None:
        expected = self.server.fake.keys.get(service)
        if service in ("sdwebui", "cdn") or expected is None:
            return
        if service in ("piapi", "removebg"):
            header = "x-api-key"
            received = record.headers.get(header, "")
        else:
            header = "authorization"
            received = record.headers.get(header, "").removeprefix("Bearer ")
        if received == expected:
            return
        # Real services echo (parts of) the key they got; clients must scrub error bodies.
        status = 403 if service == "removebg" else 401
        message = f"Invalid API key provided: {received or '(none)'}"
        raise _Reply(status, error_body(service, status, message, "invalid_api_key"))

    # -- services ------------------------------------------------------------------------------

    def _handle(self, service: str, rest: str, record: RecordedRequest) -> None:
        self._generic_fault(service, rest, record)
        self._check_key(service, record)
        after = self.server.fake.take_fault(service, AFTER_FAULTS, rest)
        if after is None:
            self._serve(service, rest, record)
            return
        record.fault = after.kind
        try:
            self._serve(service, rest, record)
        except _Reply as reply:
            if reply.status >= 400:
                raise
        # The work is done (the task exists); the client never learns it.
        self._hold(record)
        if after.kind == "502_after":
            raise _Reply(502, error_body(service, 502, "Bad gateway"))
        if after.kind == "late_answer":
            self.server.fake._wait(float(after.params.get("seconds", 30.0)))
        else:
            self.connection.shutdown(socket.SHUT_RDWR)
        raise _Drop

    def _key(self, record: RecordedRequest) -> str:
        """What a service echoing its caller's key would write into its answers."""
        if not self.server.fake.echo_key:
            return ""
        header = record.headers.get("authorization") or record.headers.get("x-api-key") or ""
        return header.removeprefix("Bearer ")

    def _serve(self, service: str, rest: str, record: RecordedRequest) -> None:
        method = record.method
        if service == "cdn":
            self._cdn(rest, record)
        elif service == "piapi" and method == "POST" and rest == "/api/v1/task":
            self._piapi_create(record)
        elif service == "piapi" and method == "GET" and rest.startswith("/api/v1/task/"):
            self._piapi_poll(rest.rsplit("/", 1)[-1], record)
        elif service == "runware" and method == "POST" and rest in ("", "/"):
            self._runware(record)
        elif service == "openai" and method == "POST" and rest == "/chat/completions":
            self._chat(record)
        elif service == "openai" and method == "POST" and rest == "/images/generations":
            self._openai_images(record)
        elif service == "sdwebui" and method == "POST" and rest == "/sdapi/v1/txt2img":
            self._txt2img(record)
        elif service == "removebg" and method == "POST" and rest == "/v1.0/removebg":
            self._removebg(record)
        else:
            raise _Reply(404, error_body(service, 404, f"no route for {method} {record.path}"))

    def _cdn(self, token: str, record: RecordedRequest) -> None:
        huge = self.server.fake.take_fault("cdn", {"huge"}, token)
        if huge is not None:
            record.fault = huge.kind
            self._stream_junk(record, int(float(huge.params.get("mb", 200)) * 1024**2), huge)
            raise _Drop
        with self.server.fake._lock:
            found = self.server.fake._cdn.get(token)
        if found is None:
            raise _Reply(404, b"not found", {"Content-Type": "text/plain"}, raw=True)
        data, content_type = found
        raise _Reply(200, data, {"Content-Type": content_type}, raw=True)

    def _stream_junk(self, record: RecordedRequest, size: int, fault: Fault) -> None:
        """A PNG header then `size` bytes, written lazily; stops when the client hangs up."""
        chunked = bool(fault.params.get("chunked"))
        record.status = 200
        chunk = b"\x89PNG\r\n\x1a\n" + b"\0" * (64 * 1024 - 8)
        sent = 0
        self._hold(record)
        try:
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Content-Length", str(size))
            self.end_headers()
            while sent < size:
                part = chunk[: size - sent]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
                sent += len(part)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass
        finally:
            record.form["bytes_sent"] = str(sent)
            self.close_connection = True

    # PiAPI ----------------------------------------------------------------------------------

    def _piapi_create(self, record: RecordedRequest) -> None:
        fake = self.server.fake
        body = record.json if isinstance(record.json, dict) else {}
        task_input = body.get("input") if isinstance(body.get("input"), dict) else None
        if not body.get("model") or not body.get("task_type") or not task_input:
            raise _Reply(400, error_body("piapi", 400, "model, task_type and input are required"))
        prompt = task_input.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise _Reply(400, error_body("piapi", 400, "input.prompt is required"))
        task = _Task(
            task_id=str(uuid.uuid4()),
            prompt=prompt,
            aspect_ratio=str(task_input.get("aspect_ratio") or "1:1"),
            process_mode=str(task_input.get("process_mode") or "relax"),
            polls_needed=fake.polls_until_done,
            grid_only=fake.midjourney_grid_only,
        )
        for kind in ("fail_task", "slow_task", "grid"):
            fault = fake.take_fault("piapi", {kind}, "")
            if fault is None:
                continue
            record.fault = fault.kind
            if fault.kind == "fail_task":
                task.fail_message = str(
                    fault.params.get("message", "Banned prompt detected: the prompt was refused")
                )
            elif fault.kind == "slow_task":
                task.polls_needed += int(fault.params.get("extra_polls", 5))
            else:
                task.grid_only = True
        with fake._lock:
            fake._tasks[task.task_id] = task
        raise _Reply(
            200, {"code": 200, "data": self._task_view(task, "pending"), "message": "success"}
        )

    def _piapi_poll(self, task_id: str, record: RecordedRequest) -> None:
        fake = self.server.fake
        with fake._lock:
            task = fake._tasks.get(task_id)
            if task is not None:
                task.polls += 1
        if task is None:
            raise _Reply(404, error_body("piapi", 404, f"task {task_id} not found"))
        if task.polls < task.polls_needed:
            status = "pending" if task.polls == 1 else "processing"
            if task.polls == task.polls_needed - 1 and task.fail_message is None:
                # Drawn one poll early: a real service has its pictures ready when it says
                # "completed", so drawing them must not delay that answer. The client polls at
                # a fixed rate counted from each poll's start, so this earlier answer's delay
                # costs it nothing.
                self._draw_once(task)
        elif task.fail_message is not None:
            status = "failed"
        else:
            status = "completed"
            self._draw_once(task)
        raise _Reply(
            200, {"code": 200, "data": self._task_view(task, status), "message": "success"}
        )

    def _draw_once(self, task: _Task) -> None:
        """The task's pictures, drawn by whichever poll comes first; later polls see the same
        URLs (two polls of one task may overlap when a client gave up on the first)."""
        if task.output is not None:
            return
        output = self._midjourney_output(task)
        with self.server.fake._lock:
            if task.output is None:
                task.output = output

    def _task_view(self, task: _Task, status: str) -> dict[str, Any]:
        error = {"code": 0, "message": ""}
        if status == "failed":
            error = {"code": 10000, "message": task.fail_message or "failed"}
        output = task.output if status == "completed" else None
        return {
            "task_id": task.task_id,
            "model": "midjourney",
            "task_type": "imagine",
            "status": status,
            "input": {"prompt": task.prompt, "aspect_ratio": task.aspect_ratio},
            "output": output or {"image_url": "", "image_urls": None, "temporary_image_urls": None},
            "meta": {"process_mode": task.process_mode},
            "error": error,
        }

    def _midjourney_output(self, task: _Task) -> dict[str, Any]:
        fake = self.server.fake
        width, height = size_for_ratio(task.aspect_ratio, fake.image_long_side)
        parts = [render(task.prompt, width, height, variant=i) for i in range(4)]
        grid = Image.new("RGB", (width * 2, height * 2))
        for i, part in enumerate(parts):
            grid.paste(part, ((i % 2) * width, (i // 2) * height))
        # JPEG bytes under .png URLs labelled image/png: clients must sniff.
        grid_url = fake._store(encode(grid, "JPEG"), "image/png", "png")
        if task.grid_only:
            return {"image_url": grid_url, "image_urls": None, "temporary_image_urls": None}
        urls = [fake._store(encode(p, "JPEG"), "image/png", "png") for p in parts]
        return {"image_url": grid_url, "image_urls": urls, "temporary_image_urls": urls}

    # Runware --------------------------------------------------------------------------------

    def _runware(self, record: RecordedRequest) -> None:
        fake = self.server.fake
        tasks = record.json
        if not isinstance(tasks, list) or not tasks:
            raise _Reply(400, error_body("runware", 400, "the body must be a JSON array of tasks"))
        data: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for task in tasks:
            if not isinstance(task, dict) or task.get("taskType") != "imageInference":
                raise _Reply(
                    400, error_body("runware", 400, "unsupported taskType", "invalidTaskType")
                )
            uuid_ = str(task.get("taskUUID", ""))
            fault = fake.take_fault("runware", {"task_error"}, "")
            if fault is not None:
                record.fault = fault.kind
                errors.append(
                    {
                        "code": fault.params.get("code", "timeoutProvider"),
                        "message": fault.params.get("message", "The provider timed out"),
                        "taskUUID": uuid_,
                    }
                )
                continue
            problem = self._runware_problem(task)
            if problem:
                raise _Reply(400, {"errors": [{**problem, "taskUUID": uuid_}]})
            width, height = int(task["width"]), int(task["height"])
            fmt = str(task.get("outputFormat", "JPG")).upper()
            output_type = task.get("outputType", "URL")
            output_type = output_type[0] if isinstance(output_type, list) else output_type
            base_seed = task.get("seed")
            for i in range(int(task.get("numberResults", 1))):
                seed = (
                    int(base_seed) + i
                    if base_seed is not None
                    else fake._seeded(task["positivePrompt"], i)
                )
                blob = encode(render(task["positivePrompt"], width, height, variant=seed), fmt)
                item: dict[str, Any] = {
                    "taskType": "imageInference",
                    "taskUUID": uuid_,
                    "imageUUID": str(uuid.uuid4()),
                    "seed": seed,
                }
                media = {
                    "PNG": "image/png",
                    "JPG": "image/jpeg",
                    "JPEG": "image/jpeg",
                    "WEBP": "image/webp",
                }[fmt]
                if output_type == "base64Data":
                    item["imageBase64Data"] = base64.b64encode(blob).decode()
                elif output_type == "dataURI":
                    item["imageDataURI"] = f"data:{media};base64,{base64.b64encode(blob).decode()}"
                else:
                    item["imageURL"] = fake._store(blob, media, fmt.lower())
                if task.get("includeCost"):
                    item["cost"] = RUNWARE_COST_PER_IMAGE
                data.append(item)
        raise _Reply(200, {"data": data, "errors": errors} if errors else {"data": data})

    @staticmethod
    def _runware_problem(task: dict[str, Any]) -> dict[str, str] | None:
        if not isinstance(task.get("positivePrompt"), str) or len(task["positivePrompt"]) < 2:
            return {"code": "invalidPositivePrompt", "message": "positivePrompt is required"}
        if not task.get("model"):
            return {"code": "invalidModel", "message": "model is required"}
        for side in ("width", "height"):
            value = task.get(side)
            if not isinstance(value, int) or value % 64 or not 128 <= value <= 2048:
                return {
                    "code": f"invalid{side.title()}",
                    "message": f"{side} must be a multiple of 64 between 128 and 2048",
                }
        count = task.get("numberResults", 1)
        if not isinstance(count, int) or not 1 <= count <= 20:
            return {"code": "invalidNumberResults", "message": "numberResults must be 1-20"}
        if str(task.get("outputFormat", "JPG")).upper() not in ("PNG", "JPG", "JPEG", "WEBP"):
            return {
                "code": "invalidOutputFormat",
                "message": "outputFormat must be PNG, JPG or WEBP",
            }
        for lora in task.get("lora") or []:
            if not isinstance(lora, dict) or "model" not in lora:
                return {"code": "invalidLora", "message": "lora entries need a model"}
        return None

    # OpenAI ---------------------------------------------------------------------------------

    def _chat(self, record: RecordedRequest) -> None:
        fake = self.server.fake
        body = record.json if isinstance(record.json, dict) else None
        if body is None or not body.get("model") or not isinstance(body.get("messages"), list):
            raise _Reply(400, error_body("openai", 400, "model and messages are required"))
        text_parts: list[str] = []
        images: list[bytes] = []
        for sent in body["messages"]:
            if not isinstance(sent, dict):
                continue
            content = sent.get("content")
            if sent.get("role") != "user":
                continue
            if isinstance(content, str):
                text_parts.append(content)
                continue
            for part in content if isinstance(content, list) else []:
                if part.get("type") == "text":
                    text_parts.append(str(part.get("text", "")))
                elif part.get("type") == "image_url":
                    images.append(
                        self._data_url_image(str(part.get("image_url", {}).get("url", "")))
                    )
        user_text = "\n".join(text_parts)
        schema = None
        response_format = body.get("response_format")
        if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
            schema = (response_format.get("json_schema") or {}).get("schema")
        message: dict[str, Any] = {"role": "assistant"}
        # Prompt requests (no schema) can only be refused; vision answers can go wrong too.
        kinds = {"malformed", "refusal", "qc_fail"} if schema is not None else {"refusal"}
        fault = fake.take_fault("openai", kinds, "")
        if fault is not None:
            record.fault = fault.kind
        if fault is not None and fault.kind == "refusal":
            message.update(content=None, refusal="I'm sorry, I can't help with that request.")
        elif fault is not None and fault.kind == "malformed":
            if fault.params.get("variant") == "schema":
                message["content"] = json.dumps({"verdict": "looks fine", "score": 0.9})
            else:
                message["content"] = "Sure! The image looks great to me."
        elif schema is not None:
            answer = self._answer(schema, user_text, images, fault, self._key(record))
            message["content"] = json.dumps(answer)
        else:
            keyword = (text_parts[-1] if text_parts else "an image").strip()
            echo = f" {self._key(record)}" if self._key(record) else ""
            message["content"] = (
                f"{keyword}, professional stock photo, soft natural light, sharp focus, "
                f"clean composition{echo}"
            )
        completion = message.get("content") or message.get("refusal") or ""
        prompt_tokens = len(user_text) // 4 + 85 * len(images) + 20
        raise _Reply(
            200,
            {
                "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": len(completion) // 4 + 1,
                    "total_tokens": prompt_tokens + len(completion) // 4 + 1,
                },
            },
        )

    @staticmethod
    def _data_url_image(url: str) -> bytes:
        match = re.fullmatch(r"data:([\w/+.-]+);base64,(.*)", url, re.DOTALL)
        if not match:
            raise _Reply(400, error_body("openai", 400, "image_url must be a base64 data URL here"))
        declared, encoded = match.group(1), match.group(2)
        try:
            data = base64.b64decode(encoded, validate=True)
        except ValueError:
            raise _Reply(400, error_body("openai", 400, "invalid base64 image data")) from None
        actual = sniff(data)
        if actual is None:
            raise _Reply(400, error_body("openai", 400, "the image data is not a supported image"))
        if actual != declared:
            raise _Reply(
                400,
                error_body(
                    "openai",
                    400,
                    f"Invalid image: the data URL says {declared} but the data is {actual}",
                    "invalid_image_format",
                ),
            )
        return data

    def _answer(
        self, schema: Any, user_text: str, images: list[bytes], fault: Fault | None, key: str = ""
    ) -> Any:
        """An answer following `schema`: QC verdicts and stock metadata from the prompt text."""
        fake = self.server.fake
        lowered = user_text.lower()
        rejected = [w for w in fake.qc_reject_words if w in lowered]
        passed = not rejected and fault is None
        reason = (
            str(fault.params.get("reason", "The image shows deformed hands."))
            if fault is not None
            else f"The image shows {rejected[0]}."
            if rejected
            else "Clean image, no issues found."
        )
        words = [w for w in re.findall(r"[a-z]{3,}", lowered) if w not in _STOPWORDS]
        subject = " ".join(dict.fromkeys(words[:6])) or "abstract shapes"
        keywords = list(dict.fromkeys(words)) + [k for k in _GENERIC_KEYWORDS if k not in words]
        size = ""
        if images:
            with Image.open(io.BytesIO(images[0])) as im:
                size = f" ({im.width}x{im.height})"
        echo = f" {key}" if key else ""
        values = {
            "passed": passed,
            "reason": reason + echo,
            "title": f"{subject.capitalize()} on a plain background{echo}",
            "description": f"Stock image of {subject} on a plain light background{size}.{echo}",
            "keywords": [*([key, f"tag {key}"] if key else []), *keywords[:30]],
        }
        return _fill(schema, values)

    def _openai_images(self, record: RecordedRequest) -> None:
        fake = self.server.fake
        body = record.json if isinstance(record.json, dict) else {}
        model = str(body.get("model") or "dall-e-2")
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise _Reply(400, error_body("openai", 400, "prompt is required"))
        size = str(body.get("size") or "1024x1024")
        allowed = OPENAI_IMAGE_SIZES.get(model)
        if allowed is not None and size not in allowed:
            raise _Reply(
                400,
                error_body("openai", 400, f"Invalid size {size!r} for {model}: {sorted(allowed)}"),
            )
        n = int(body.get("n") or 1)
        if model == "dall-e-3" and n != 1:
            raise _Reply(400, error_body("openai", 400, "dall-e-3 only supports n=1"))
        if model == "gpt-image-1" and "response_format" in body:
            raise _Reply(400, error_body("openai", 400, "Unknown parameter: 'response_format'."))
        width, height = (1024, 1024) if size == "auto" else map(int, size.split("x"))
        as_b64 = model == "gpt-image-1" or body.get("response_format") == "b64_json"
        data = []
        for i in range(n):
            blob = encode(render(prompt, width, height, variant=i), "PNG")
            if as_b64:
                data.append({"b64_json": base64.b64encode(blob).decode()})
            else:
                url = fake._store(blob, "image/png", "png")
                data.append({"url": url, "revised_prompt": f"{prompt} {self._key(record)}".strip()})
        answer: dict[str, Any] = {"created": int(time.time()), "data": data}
        if model == "gpt-image-1":
            answer["usage"] = {
                "input_tokens": len(prompt) // 4,
                "output_tokens": 1056 * n,
                "total_tokens": len(prompt) // 4 + 1056 * n,
            }
        raise _Reply(200, answer)

    # SD WebUI -------------------------------------------------------------------------------

    def _txt2img(self, record: RecordedRequest) -> None:
        fake = self.server.fake
        body = record.json if isinstance(record.json, dict) else {}
        prompt = str(body.get("prompt") or "")
        width, height = body.get("width", 512), body.get("height", 512)
        problems = [
            {"loc": ["body", side], "msg": "must be a multiple of 8", "type": "value_error"}
            for side, value in (("width", width), ("height", height))
            if not isinstance(value, int) or value % 8 or value < 64
        ]
        if problems:
            raise _Reply(422, {"detail": problems})
        batch = int(body.get("batch_size") or 1)
        seed = int(body.get("seed", -1))
        if seed == -1:
            seed = fake._seeded(prompt)
        seeds = [seed + i for i in range(batch)]
        images = [
            base64.b64encode(encode(render(prompt, width, height, variant=s), "PNG")).decode()
            for s in seeds
        ]
        info = {
            "prompt": prompt,
            "seed": seed,
            "all_seeds": seeds,
            "width": width,
            "height": height,
        }
        raise _Reply(200, {"images": images, "parameters": body, "info": json.dumps(info)})

    # remove.bg ------------------------------------------------------------------------------

    def _removebg(self, record: RecordedRequest) -> None:
        fake = self.server.fake
        upload = record.files.get("image_file")
        if upload is None:
            raise _Reply(400, error_body("removebg", 400, "No image given", "missing_source"))
        size = record.form.get("size", "auto")
        if size not in REMOVEBG_SIZES:
            raise _Reply(400, error_body("removebg", 400, f"Invalid size {size!r}", "invalid_size"))
        no_foreground = error_body(
            "removebg", 400, "Could not identify foreground in image.", "unknown_foreground"
        )
        fault = fake.take_fault("removebg", {"unknown_foreground"}, "")
        if fault is not None:
            record.fault = fault.kind
            raise _Reply(400, no_foreground)
        try:
            with Image.open(io.BytesIO(upload[2])) as image:
                image.load()
                cut = cut_out(image)
        except OSError:
            raise _Reply(
                400, error_body("removebg", 400, "Invalid image", "invalid_file")
            ) from None
        if cut is None:
            raise _Reply(400, no_foreground)
        if size == "preview" and cut.width * cut.height > 250_000:
            scale = (250_000 / (cut.width * cut.height)) ** 0.5
            cut = cut.resize((max(1, int(cut.width * scale)), max(1, int(cut.height * scale))))
        credits = 0.25 if size == "preview" else 1.0
        raise _Reply(
            200,
            encode(cut, "PNG"),
            {
                "Content-Type": "image/png",
                "X-Credits-Charged": f"{credits:g}",
                "X-Width": str(cut.width),
                "X-Height": str(cut.height),
                "X-Type": "other",
            },
            raw=True,
        )

    # control --------------------------------------------------------------------------------

    def _control(self, rest: str, record: RecordedRequest) -> None:
        fake = self.server.fake
        body = record.json if isinstance(record.json, dict) else {}
        if rest == "/faults" and record.method == "POST":
            params = body.get("params") or {}
            fake.add_fault(
                body["service"],
                body["kind"],
                int(body.get("times", 1)),
                path=body.get("path"),
                **params,
            )
        elif rest == "/fault_rate" and record.method == "POST":
            fake.set_fault_rate(
                float(body.get("rate", 0)),
                kinds=body.get("kinds") or TRANSIENT_FAULTS,
                services=body.get("services") or (*SERVICES, "cdn"),
                seed=int(body.get("seed", 0)),
                **(body.get("params") or {}),
            )
        elif rest == "/latency" and record.method == "POST":
            fake.set_latency(body["service"], float(body.get("seconds", 0)))
        elif rest == "/reset" and record.method == "POST":
            fake.reset()
        elif rest == "/requests" and record.method == "GET":
            listing = [
                {
                    "service": r.service,
                    "method": r.method,
                    "path": r.path,
                    "status": r.status,
                    "fault": r.fault,
                    "json": r.json if r.service != "openai" else None,
                    "form": r.form,
                }
                for r in fake.requests()
            ]
            self._send(None, 200, listing)
            return
        else:
            self._send(None, 404, {"detail": f"unknown control {record.method} {rest}"})
            return
        self._send(None, 200, {"ok": True})


class _Drop(Exception):
    """Close the connection without an answer."""


_STOPWORDS = {
    "the", "and", "with", "for", "from", "this", "that", "was", "image", "generated",
    "prompt", "its", "main", "keyword", "requested", "aspect", "ratio", "describe",
}  # fmt: skip
_GENERIC_KEYWORDS = (
    "background", "design", "color", "colorful", "abstract", "shape", "modern", "minimal",
    "graphic", "art", "illustration", "decoration", "pattern", "bright", "creative",
    "simple", "element", "geometric", "composition", "texture", "clean", "isolated",
    "contemporary", "style", "visual", "concept", "digital", "render", "object", "form",
)  # fmt: skip


def _fill(schema: Any, values: dict[str, Any], name: str = "") -> Any:
    """A value following a JSON schema, taking known property names from `values`."""
    if not isinstance(schema, dict):
        return None
    kind = schema.get("type")
    if name in values:
        return values[name]
    if kind == "object":
        return {k: _fill(v, values, k) for k, v in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [_fill(schema.get("items") or {"type": "string"}, values, "") for _ in range(3)]
    return {"string": name or "text", "boolean": True, "integer": 1, "number": 0.5}.get(str(kind))


# ---------------------------------------------------------------------------------------------
# By hand


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--polls", type=int, default=2, help="PiAPI polls until a task is done")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="share of random faults")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    fake = FakeServices(port=args.port, polls_until_done=args.polls, seed=args.seed).start()
    if args.fault_rate:
        fake.set_fault_rate(args.fault_rate, seed=args.seed)
    print(f"# fake services on {fake.base_url}; export these, then run genfactory:")
    for name, value in fake.env().items():
        print(f"export {name}={value}")
    print(
        f"# faults: curl -X POST {fake.base_url}/_control/faults "
        '-d \'{"service": "piapi", "kind": "429", "params": {"retry_after": 2}}\''
    )
    print("# Ctrl+C stops.", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
