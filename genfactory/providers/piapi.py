"""Midjourney through PiAPI-style task APIs: create a task, poll it, download the grid.

PiAPI's Midjourney service is discontinued; its successors keep the task-and-poll contract, so
paths, the auth header and the output fields are settings (`[piapi]`, docs/SPEC.md §9).

The service's concurrency slot (`concurrency.piapi`) is held for a task's whole life, create to
completion, because Midjourney plans cap tasks in flight, not HTTP calls. Downloads come from a
CDN: they never carry the key and take no slot.
"""

from __future__ import annotations

import io
import logging
import random
import re
import time
from typing import Any

from genfactory.errors import (
    BadRequest,
    ContentRejected,
    ImageRejected,
    MalformedResponse,
    ProviderTimeout,
    RateLimited,
    RetryableProviderError,
    UnreadableImage,
)
from genfactory.media import sniff_media_type
from genfactory.processing.decode import load_image
from genfactory.providers.base import GenerationRequest, GenerationResult, ImageResult
from genfactory.providers.http import (
    RAW_LIMIT,
    ServiceClient,
    ServiceProvider,
    generation_timeout_seconds,
)
from genfactory.providers.registry import ProviderContext

log = logging.getLogger(__name__)

PENDING = {"pending", "staged", "processing", "queued", "running", "in_progress", "starting"}
#: Words in a failed task's message that mean "try again" rather than "this prompt is refused".
TRANSIENT_HINTS = (
    "timeout",
    "timed out",
    "try again",
    "retry",
    "temporar",
    "overload",
    "busy",
    "queue is full",
    "internal error",
    "server error",
    "rate limit",
    "unavailable",
)
_VERSION_FLAG = re.compile(r"(^|\s)--(v|version|niji)(\s|$)")
#: Longest sleep between polls after poll errors.
MAX_POLL_BACKOFF = 60.0


def with_version(prompt: str, version: str) -> str:
    """The prompt with ` --v X` / ` --niji X` appended unless it already names a version."""
    prompt = prompt.strip()
    if _VERSION_FLAG.search(prompt):
        return prompt
    if version.startswith("niji"):
        return f"{prompt} --niji {version.split()[-1]}"
    return f"{prompt} --v {version}"


def split_grid(data: bytes, max_pixels: int | None = None) -> list[bytes]:
    """Crop a Midjourney 2×2 grid into its four images, as PNG (top-left, top-right, ...).

    Decoded by processing: a grid above `max_pixels` (`processing.max_image_pixels`) is
    refused with `ImageRejected` before it is decoded, a truncated or unreadable one with
    `UnreadableImage`; the message says it was the grid.
    """
    try:
        grid = load_image(data, max_pixels=max_pixels)
    except UnreadableImage as exc:
        raise UnreadableImage(
            f"the Midjourney grid cannot be read ({exc}); it was skipped"
        ) from None
    except ImageRejected as exc:
        raise ImageRejected(f"the Midjourney grid was skipped: {exc}") from None
    with grid:
        image = grid if grid.mode in ("RGB", "RGBA", "L", "LA") else grid.convert("RGBA")
        width, height = image.size
        half_w, half_h = width // 2, height // 2
        boxes = [
            (0, 0, half_w, half_h),
            (half_w, 0, half_w * 2, half_h),
            (0, half_h, half_w, half_h * 2),
            (half_w, half_h, half_w * 2, half_h * 2),
        ]
        out = []
        for box in boxes:
            buffer = io.BytesIO()
            image.crop(box).save(buffer, format="PNG")
            out.append(buffer.getvalue())
        return out


class PiAPIMidjourney(ServiceProvider):
    """`ImageProvider` for Midjourney task APIs: four images per task."""

    name = "piapi"
    images_per_task = 4  # one imagine task returns its grid of 4 (ImageProviderFacts)

    def __init__(self, ctx: ProviderContext) -> None:
        self.config = ctx.settings.piapi
        super().__init__(
            ctx,
            ServiceClient.for_service(ctx, "piapi", auth_header=self.config.auth_header),
        )
        self._rng = random.Random()

    def generate(self, request: GenerationRequest) -> GenerationResult:
        prompt = with_version(request.prompt, self.settings.generation.midjourney_version)
        with self.ctx.limiter("piapi"):
            task_id, data = self._run_task(prompt, request)
        urls = self._output_urls(data, task_id)
        if len(urls) == 1:
            grid = self.http.download(urls[0], what="grid")
            blobs = split_grid(grid, self.settings.processing.max_image_pixels)
            sources = [f"{urls[0]}#{part}" for part in ("tl", "tr", "bl", "br")]
        else:
            blobs = [self.http.download(url) for url in urls]
            sources = urls
        images = [
            ImageResult(data=blob, media_type=sniff_media_type(blob) or "", source=src)
            for blob, src in zip(blobs, sources, strict=True)
        ]
        return GenerationResult(images=images, task_id=task_id, final_prompt=prompt)

    # -- the task ------------------------------------------------------------------------------

    def _run_task(self, prompt: str, request: GenerationRequest) -> tuple[str, dict[str, Any]]:
        """Create (or resume) a task and poll it to a final state: (task_id, data)."""
        if request.resume_task_id:
            task_id = request.resume_task_id
            try:
                data = self._poll(task_id)
            except BadRequest as exc:
                if exc.status_code != 404:
                    raise
                log.warning("PiAPI task %s no longer exists; creating a new one", task_id)
            else:
                if not self._failed_transiently(data):
                    self._raise_if_failed(task_id, data)
                    return task_id, data
                log.warning("PiAPI task %s had failed transiently; creating a new one", task_id)
        task_id = self._create(prompt, request)
        data = self._poll(task_id)
        self._raise_if_failed(task_id, data)
        return task_id, data

    def _create(self, prompt: str, request: GenerationRequest) -> str:
        body = {
            "model": self.config.model,
            "task_type": self.config.task_type,
            "input": {
                "prompt": prompt,
                "aspect_ratio": request.aspect_ratio,
                "process_mode": self.settings.generation.process_mode,
            },
        }
        # Paid: sent at most once; an ambiguous failure raises AmbiguousCreate (PiAPI has no
        # lookup of a task whose id never arrived).
        answer = self.http.request_json(
            "POST", self.config.create_path, json=body, limited=False, paid=True
        )
        data = answer.get("data") if isinstance(answer, dict) else None
        task_id = data.get("task_id") if isinstance(data, dict) else None
        if not isinstance(task_id, str) or not task_id:
            message = answer.get("message") if isinstance(answer, dict) else None
            raise MalformedResponse(
                f"PiAPI created no task (answer without data.task_id"
                f"{': ' + str(message) if message else ''}); check piapi.create_path",
                service="piapi",
                raw=self.http.scrub(str(answer)[:RAW_LIMIT]),
            )
        log.info("PiAPI task %s created", task_id)
        self.ctx.usage.add("piapi", tasks=1)
        if request.on_task_created is not None:
            request.on_task_created(task_id)
        return task_id

    def _poll(self, task_id: str) -> dict[str, Any]:
        """Poll until completed/failed; returns `data`. Bounded by the generation timeout."""
        gen = self.settings.generation
        budget = generation_timeout_seconds(self.settings)
        deadline = time.monotonic() + budget
        path = self.config.poll_path.format(task_id=task_id)
        errors = 0
        while True:
            polled_at = time.monotonic()
            try:
                # A Retry-After longer than the polling time left fails at once (RateLimited).
                left = max(0.0, deadline - time.monotonic())
                answer = self.http.request_json(
                    "GET", path, attempts=1, limited=False, max_sleep=left
                )
                data = answer.get("data") if isinstance(answer, dict) else None
                if not isinstance(data, dict):
                    raise MalformedResponse(
                        f"PiAPI answered a poll of task {task_id} without `data`; this is "
                        "usually temporary",
                        service="piapi",
                        raw=self.http.scrub(str(answer)[:RAW_LIMIT]),
                    )
            except RateLimited:
                raise
            except RetryableProviderError as exc:
                errors += 1
                if errors >= gen.max_poll_errors:
                    raise type(exc)(
                        f"PiAPI task {task_id}: {errors} polls in a row failed, the last with: "
                        f"{exc}",
                        service="piapi",
                        status_code=exc.status_code,
                        raw=exc.raw,
                        retry_after=exc.retry_after,
                    ) from exc
                backoff = min(MAX_POLL_BACKOFF, gen.polling_interval_seconds * 2**errors)
                delay = max(exc.retry_after or 0.0, self._rng.uniform(backoff / 2, backoff))
                self._sleep_until(deadline, delay, task_id, budget)
                continue
            errors = 0
            status = str(data.get("status", "")).lower()
            if status in ("completed", "failed"):
                return data
            if status not in PENDING:
                log.warning("PiAPI task %s has unknown status %r; still polling", task_id, status)
            # One poll per interval, counted from this poll's start: a slow answer does not
            # stretch the cadence (but a poll never follows the last sooner than half of it).
            interval = gen.polling_interval_seconds
            wait = max(interval / 2, interval - (time.monotonic() - polled_at))
            self._sleep_until(deadline, wait, task_id, budget)

    def _sleep_until(self, deadline: float, delay: float, task_id: str, budget: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ProviderTimeout(
                f"PiAPI task {task_id} did not finish within {budget / 60:g} min "
                "(generation.polling_timeout_minutes); the job can resume it later",
                service="piapi",
            )
        time.sleep(min(delay, remaining))

    # -- answers -------------------------------------------------------------------------------

    @staticmethod
    def _error_message(data: dict[str, Any]) -> str:
        error = data.get("error")
        message = error.get("message") if isinstance(error, dict) else None
        return str(message or "no reason given")

    def _failed_transiently(self, data: dict[str, Any]) -> bool:
        if str(data.get("status", "")).lower() != "failed":
            return False
        message = self._error_message(data).lower()
        return any(hint in message for hint in TRANSIENT_HINTS)

    def _raise_if_failed(self, task_id: str, data: dict[str, Any]) -> None:
        if str(data.get("status", "")).lower() != "failed":
            return
        reason = self.http.scrub(self._error_message(data))
        raw = self.http.scrub(str(data.get("error"))[:RAW_LIMIT])
        if self._failed_transiently(data):
            raise RetryableProviderError(
                f"PiAPI task {task_id} failed: {reason}; retrying usually helps",
                service="piapi",
                raw=raw,
            )
        raise ContentRejected(
            f"PiAPI task {task_id} failed: {reason}; change the prompt or keyword",
            service="piapi",
            raw=raw,
        )

    def _output_urls(self, data: dict[str, Any], task_id: str) -> list[str]:
        output = data.get("output")
        if isinstance(output, dict):
            for field in self.config.output_fields:
                value = output.get(field)
                if isinstance(value, list):
                    urls = [u for u in value if isinstance(u, str) and u]
                    if urls:
                        return urls
                elif isinstance(value, str) and value:
                    return [value]
        raise MalformedResponse(
            f"PiAPI task {task_id} completed without images in data.output "
            f"({', '.join(self.config.output_fields)}); check piapi.output_fields",
            service="piapi",
            raw=self.http.scrub(str(output)[:RAW_LIMIT]),
        )
