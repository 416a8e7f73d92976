"""OpenAI Images (`/images/generations`): gpt-image-1, dall-e-3, dall-e-2 or compatible servers."""

from __future__ import annotations

from typing import Any

from genfactory.config import fit_size, parse_aspect_ratio
from genfactory.media import sniff_media_type
from genfactory.providers.base import GenerationRequest, GenerationResult, ImageResult
from genfactory.providers.http import (
    ServiceProvider,
    generation_timeout_seconds,
)
from genfactory.providers.openai_chat import openai_client
from genfactory.providers.registry import ProviderContext

#: The sizes each known model accepts; other (compatible) models get the slot's own size.
MODEL_SIZES: dict[str, tuple[tuple[int, int], ...]] = {
    "gpt-image-1": ((1024, 1024), (1536, 1024), (1024, 1536)),
    "dall-e-3": ((1024, 1024), (1792, 1024), (1024, 1792)),
    "dall-e-2": ((256, 256), (512, 512), (1024, 1024)),
}
#: Models that return one image per request.
SINGLE_IMAGE_MODELS = {"dall-e-3"}


def image_size(model: str, aspect_ratio: str, width: int, height: int) -> tuple[int, int]:
    """The model's size closest to the aspect ratio (compared as log ratios)."""
    sizes = MODEL_SIZES.get(model)
    if sizes is None:
        return fit_size(aspect_ratio, max(width, height), multiple=64, high=2048)
    rw, rh = parse_aspect_ratio(aspect_ratio)
    wanted = rw / rh

    def distance(size: tuple[int, int]) -> float:
        ratio = size[0] / size[1]
        return max(ratio / wanted, wanted / ratio)

    return min(sizes, key=distance)


class OpenAIImages(ServiceProvider):
    """`ImageProvider` for OpenAI Images; `count` images, looping for one-image models."""

    name = "openai"

    def __init__(self, ctx: ProviderContext) -> None:
        self.config = ctx.settings.openai
        super().__init__(ctx, openai_client(ctx))

    def body_for(self, request: GenerationRequest, n: int) -> dict[str, Any]:
        model = self.config.image_model
        width, height = image_size(model, request.aspect_ratio, request.width, request.height)
        body: dict[str, Any] = {
            "model": model,
            "prompt": request.prompt,
            "n": n,
            "size": f"{width}x{height}",
        }
        if model.startswith("dall-e"):
            # gpt-image-1 always answers base64 and refuses this parameter.
            body["response_format"] = "b64_json"
            if model == "dall-e-3" and self.config.image_quality in ("standard", "hd"):
                body["quality"] = self.config.image_quality
        elif self.config.image_quality != "auto":
            body["quality"] = self.config.image_quality
        return body

    def generate(self, request: GenerationRequest) -> GenerationResult:
        model = self.config.image_model
        per_call = 1 if model in SINGLE_IMAGE_MODELS else request.count
        calls = request.count if model in SINGLE_IMAGE_MODELS else 1
        timeout = self.http.generation_timeout(generation_timeout_seconds(self.settings))
        images: list[ImageResult] = []
        revised: str | None = None
        for _ in range(calls):
            # Paid and not idempotent (no id to look up): sent at most once per image batch.
            answer = self.http.request_json(
                "POST",
                "/images/generations",
                json=self.body_for(request, per_call),
                timeout=timeout,
                paid=True,
            )
            items = answer.get("data") if isinstance(answer, dict) else None
            if not isinstance(items, list) or not items:
                raise self.malformed("no images in `data`", answer)
            for item in items:
                blob = self._image_bytes(item, answer)
                images.append(
                    ImageResult(
                        data=blob,
                        media_type=sniff_media_type(blob) or "",
                        source=str(item.get("url") or f"openai:{model}"),
                    )
                )
                revised = revised or item.get("revised_prompt")
            usage = answer.get("usage")
            if isinstance(usage, dict):
                self.ctx.usage.add(
                    "openai",
                    image_input_tokens=float(usage.get("input_tokens") or 0),
                    image_output_tokens=float(usage.get("output_tokens") or 0),
                )
        self.ctx.usage.add("openai", images=len(images))
        return GenerationResult(images=images, final_prompt=revised or request.prompt)

    def _image_bytes(self, item: Any, answer: Any) -> bytes:
        if not isinstance(item, dict):
            raise self.malformed("an image entry that is not an object", answer)
        encoded = item.get("b64_json")
        if isinstance(encoded, str) and encoded:
            return self.decode_image(encoded, answer)
        url = item.get("url")
        if isinstance(url, str) and url:
            return self.http.download(url)
        raise self.malformed("an image entry without b64_json or url", answer)
