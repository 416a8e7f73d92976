"""Runware image inference over its REST API: one POST with a JSON array of tasks.

The POST is paid and sent at most once (`paid=True`): after a failure that may have come after
Runware accepted it, `AmbiguousCreate` is raised with the task's `taskUUID`. Runware keys a task
by the `taskUUID` the client chooses and documents looking a past task up by it
(`getTaskDetails`), so the id is reported through `on_task_created` right before the request
goes out (past the concurrency limit): a slot interrupted after that is not created again on its
own (`AmbiguousCreate` naming the task, to look up); one interrupted while waiting sent nothing.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from genfactory.config import fit_size, parse_lora
from genfactory.errors import (
    AmbiguousCreate,
    AuthenticationError,
    BadRequest,
    ContentRejected,
    ProviderError,
    QuotaExceeded,
    RetryableProviderError,
)
from genfactory.media import sniff_media_type
from genfactory.providers.base import GenerationRequest, GenerationResult, ImageResult
from genfactory.providers.http import (
    RAW_LIMIT,
    ServiceClient,
    ServiceProvider,
    generation_timeout_seconds,
)
from genfactory.providers.registry import ProviderContext

log = logging.getLogger(__name__)


class RunwareImages(ServiceProvider):
    """`ImageProvider` for Runware: `count` images per request, cost reported by the service."""

    name = "runware"

    def __init__(self, ctx: ProviderContext) -> None:
        self.config = ctx.settings.runware
        super().__init__(
            ctx,
            ServiceClient.for_service(
                ctx, "runware", auth_header="Authorization", auth_prefix="Bearer "
            ),
        )

    def task_for(self, request: GenerationRequest, task_uuid: str) -> dict[str, Any]:
        """The imageInference task Runware receives for a request."""
        width, height = fit_size(
            request.aspect_ratio, max(request.width, request.height), multiple=64
        )
        task: dict[str, Any] = {
            "taskType": "imageInference",
            "taskUUID": task_uuid,
            "model": self.config.model,
            "positivePrompt": request.prompt,
            "width": width,
            "height": height,
            "numberResults": request.count,
            "outputType": self.config.output_type,
            "outputFormat": self.config.output_format,
            "includeCost": True,
        }
        if request.negative_prompt:
            task["negativePrompt"] = request.negative_prompt
        if self.config.steps is not None:
            task["steps"] = self.config.steps
        if request.seed is not None:
            task["seed"] = request.seed
        loras = [parse_lora(item) for item in self.settings.generation.loras]
        if loras:
            task["lora"] = [{"model": model, "weight": weight} for model, weight in loras]
        return task

    def generate(self, request: GenerationRequest) -> GenerationResult:
        if request.resume_task_id:
            # The id is reported right before the POST goes out, so an interrupted attempt may
            # or may not have sent it: a new create could be a second charge.
            raise self.http.ambiguous(
                f"the job was interrupted as taskUUID {request.resume_task_id} was being sent",
                task_id=request.resume_task_id,
            )
        task_uuid = str(uuid.uuid4())
        report = request.on_task_created
        try:
            answer = self.http.request_json(
                "POST",
                "",
                json=[self.task_for(request, task_uuid)],
                timeout=self.http.generation_timeout(generation_timeout_seconds(self.settings)),
                paid=True,
                # Recorded once the request holds its place under Runware's concurrency limit,
                # just before it goes out: a slot interrupted while waiting sent nothing.
                before_send=None if report is None else lambda: report(task_uuid),
            )
        except AmbiguousCreate as exc:
            exc.task_id = task_uuid
            raise
        if not isinstance(answer, dict):
            raise self.malformed("an answer that is not a JSON object", answer)
        items = [
            item
            for item in answer.get("data") or []
            if isinstance(item, dict) and item.get("taskUUID", task_uuid) == task_uuid
        ]
        errors = [e for e in answer.get("errors") or [] if isinstance(e, dict)]
        if errors and not items:
            raise self._error(errors[0], answer)
        if not items:
            raise self.malformed("no images in `data`", answer)
        images = []
        cost = 0.0
        for item in items:
            blob = self._image_bytes(item, answer)
            seed = item.get("seed")
            images.append(
                ImageResult(
                    data=blob,
                    media_type=sniff_media_type(blob) or "",
                    seed=seed if isinstance(seed, int) else None,
                    source=str(item.get("imageURL") or f"runware:{item.get('imageUUID', '')}"),
                )
            )
            if isinstance(item.get("cost"), int | float):
                cost += float(item["cost"])
        self.ctx.usage.add("runware", cost=cost, images=len(images))
        return GenerationResult(
            images=images, task_id=task_uuid, cost=cost, final_prompt=request.prompt
        )

    def _image_bytes(self, item: dict[str, Any], answer: Any) -> bytes:
        url = item.get("imageURL")
        if isinstance(url, str) and url:
            return self.http.download(url)
        encoded = item.get("imageBase64Data") or item.get("imageDataURI")
        if isinstance(encoded, str) and encoded:
            return self.decode_image(encoded, answer)
        raise self.malformed("a result without imageURL or imageBase64Data", answer)

    def _error(self, error: dict[str, Any], answer: Any) -> ProviderError:
        """Runware reports some failures in `errors[]` of a 200 answer: map them by code."""
        code = str(error.get("code", ""))
        message = self.http.scrub(" ".join(str(error.get("message", "")).split()))[:200]
        said = f"Runware refused the task ({code}: {message})"
        kw: dict[str, Any] = {"service": "runware", "raw": self.http.scrub(str(answer)[:RAW_LIMIT])}
        lowered = code.lower()
        if "apikey" in lowered or "auth" in lowered:
            return AuthenticationError(f"{said}; check {self.http.key_env}", **kw)
        if "credit" in lowered or "balance" in lowered or "payment" in lowered:
            return QuotaExceeded(f"{said}; top up the Runware account", **kw)
        if any(w in lowered for w in ("timeout", "internal", "unavailable", "ratelimit", "busy")):
            return RetryableProviderError(f"{said}; retrying usually helps", **kw)
        if any(w in lowered for w in ("content", "nsfw", "moderation", "safety")):
            return ContentRejected(f"{said}; change the prompt or keyword", **kw)
        return BadRequest(f"{said}; check the [runware] settings and the prompt", **kw)
