"""Stable Diffusion WebUI (AUTOMATIC1111 / Forge) `--api`: POST /sdapi/v1/txt2img. No key."""

from __future__ import annotations

import json
from typing import Any

from genfactory.config import fit_size
from genfactory.errors import MalformedResponse
from genfactory.media import sniff_media_type
from genfactory.providers.base import GenerationRequest, GenerationResult, ImageResult
from genfactory.providers.http import (
    ServiceClient,
    ServiceProvider,
    generation_timeout_seconds,
)
from genfactory.providers.registry import ProviderContext


class SDWebUIImages(ServiceProvider):
    """`ImageProvider` for a local or remote SD WebUI; `count` images as one batch."""

    name = "sdwebui"
    repeatable_create = True  # a self-hosted WebUI: creating again is free (ImageProviderFacts)

    def __init__(self, ctx: ProviderContext) -> None:
        self.config = ctx.settings.sdwebui
        super().__init__(ctx, ServiceClient.for_service(ctx, "sdwebui"))
        self.malformed_hint = f"check {self.http.base_url_env} and that the WebUI runs with --api"

    def body_for(self, request: GenerationRequest) -> dict[str, Any]:
        width, height = fit_size(
            request.aspect_ratio, max(request.width, request.height), multiple=8
        )
        return {
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt,
            "width": width,
            "height": height,
            "steps": self.config.steps,
            "sampler_name": self.config.sampler,
            "cfg_scale": self.config.cfg_scale,
            "seed": request.seed if request.seed is not None else -1,
            "batch_size": request.count,
            "n_iter": 1,
        }

    def generate(self, request: GenerationRequest) -> GenerationResult:
        answer = self.http.request_json(
            "POST",
            "/sdapi/v1/txt2img",
            json=self.body_for(request),
            timeout=self.http.generation_timeout(generation_timeout_seconds(self.settings)),
        )
        encoded = answer.get("images") if isinstance(answer, dict) else None
        if not isinstance(encoded, list) or not encoded:
            raise self.malformed("no `images`", answer)
        seeds = self._seeds(answer)
        images = []
        # The WebUI appends extra images (ControlNet maps, grids) after the batch: keep the batch.
        for i, item in enumerate(encoded[: request.count]):
            if not isinstance(item, str):
                raise self.malformed("an image that is not a base64 string", answer)
            blob = self.decode_image(item, answer)
            images.append(
                ImageResult(
                    data=blob,
                    media_type=sniff_media_type(blob) or "",
                    seed=seeds[i] if i < len(seeds) else None,
                    source=f"sdwebui:txt2img#{i}",
                )
            )
        self.ctx.usage.add("sdwebui", images=len(images))
        return GenerationResult(images=images, final_prompt=request.prompt)

    @staticmethod
    def _seeds(answer: dict[str, Any]) -> list[int]:
        """Seeds from `info` (a JSON string): all_seeds, else seed, seed+1, ..."""
        info = answer.get("info")
        if isinstance(info, str):
            try:
                info = json.loads(info)
            except ValueError:
                return []
        if not isinstance(info, dict):
            return []
        seeds = info.get("all_seeds")
        if isinstance(seeds, list) and all(isinstance(s, int) for s in seeds):
            return seeds
        seed = info.get("seed")
        if isinstance(seed, int):
            return [seed + i for i in range(len(answer.get("images") or []))]
        return []

    def malformed(self, what: str, answer: Any) -> MalformedResponse:
        """As for every service, but without the (huge) base64 images in the kept answer."""
        if isinstance(answer, dict):
            answer = {k: v for k, v in answer.items() if k != "images"}
        return super().malformed(what, answer)
