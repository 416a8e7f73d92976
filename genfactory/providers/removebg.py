"""remove.bg: POST /v1.0/removebg (multipart `image_file`, `size`), a PNG with alpha back.

402 (no credits) and 401/403 (key) stop the job; "unknown_foreground" keeps the image as it
was, as a PNG, with a note; the credits charged (`X-Credits-Charged`) are recorded.
"""

from __future__ import annotations

import logging

import httpx

from genfactory.errors import MalformedResponse
from genfactory.media import sniff_media_type
from genfactory.processing.decode import as_png
from genfactory.providers.base import BackgroundResult, ImageInput
from genfactory.providers.http import RAW_LIMIT, ServiceClient, ServiceProvider
from genfactory.providers.registry import ProviderContext

log = logging.getLogger(__name__)

NO_FOREGROUND_NOTE = "remove.bg found no foreground; image kept"
_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}


class RemoveBG(ServiceProvider):
    """`BackgroundRemover` backed by remove.bg; `processing.remove_bg_size` goes out verbatim."""

    name = "removebg"

    def __init__(self, ctx: ProviderContext) -> None:
        super().__init__(
            ctx,
            ServiceClient.for_service(ctx, "removebg", auth_header="X-Api-Key"),
        )

    def remove_background(self, image: ImageInput) -> BackgroundResult:
        media_type = sniff_media_type(image.data)
        # remove.bg takes JPEG/PNG/WebP; anything else goes as PNG (decoded by processing,
        # which raises UnreadableImage for bytes that are not an image).
        data = image.data if media_type in _EXTENSIONS else as_png(image.data)
        media_type = media_type if media_type in _EXTENSIONS else "image/png"
        response = self.http.call(
            "POST",
            "/v1.0/removebg",
            files={"image_file": (f"image.{_EXTENSIONS[media_type]}", data, media_type)},
            # "format=png": remove.bg's default "auto" may answer JPEG without alpha.
            data={"size": self.settings.processing.remove_bg_size, "format": "png"},
            headers={"Accept": "image/png, application/json"},
            accept=(400,),
            parse=self._checked,
        )
        credits = _credits(response.headers.get("X-Credits-Charged"))
        if credits is not None:
            self.ctx.usage.add("removebg", credits=credits)
        if response.status_code == 400:
            if "unknown_foreground" in _error_codes(response):
                log.info(NO_FOREGROUND_NOTE)
                return BackgroundResult(
                    data=as_png(image.data), credits_charged=credits, note=NO_FOREGROUND_NOTE
                )
            # Any other 400 follows the common policy (BadRequest, counted as a failure).
            self.ctx.usage.add("removebg", failures=1)
            raise self.http.error_for(response)
        self.ctx.usage.add("removebg", images=1)
        return BackgroundResult(data=response.content, credits_charged=credits)

    def _checked(self, response: httpx.Response) -> httpx.Response:
        """A success must be a PNG; checked inside the retry loop, so a bad body is retried."""
        if response.is_success and sniff_media_type(response.content) != "image/png":
            raise MalformedResponse(
                "remove.bg answered without a PNG image; this is usually temporary",
                service="removebg",
                status_code=response.status_code,
                raw=self.http.scrub(response.text[:RAW_LIMIT]),
            )
        return response


def _credits(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _error_codes(response: httpx.Response) -> set[str]:
    try:
        body = response.json()
    except ValueError:
        return set()
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return set()
    return {str(e.get("code")) for e in errors if isinstance(e, dict)}
