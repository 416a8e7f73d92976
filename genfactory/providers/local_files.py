"""The `files` image provider: an existing image file of `job.images_dir` instead of a render.

The file is only read; the pipeline writes its own copies to temp and output.
"""

from __future__ import annotations

from pathlib import Path

from genfactory.errors import BadRequest
from genfactory.media import sniff_media_type
from genfactory.providers.base import GenerationRequest, GenerationResult, ImageResult
from genfactory.providers.registry import ProviderContext


class LocalFiles:
    """`ImageProvider` returning the bytes of `request.source_path`, unchanged."""

    name = "files"
    #: Reading the file again is free (`providers.base.ImageProviderFacts`).
    repeatable_create = True

    def __init__(self, ctx: ProviderContext) -> None:
        self.ctx = ctx

    def generate(self, request: GenerationRequest) -> GenerationResult:
        if not request.source_path:
            raise BadRequest(
                "providers.image = files needs the images folder: pass --images DIR "
                "or set job.images_dir",
                service="files",
            )
        path = Path(request.source_path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise BadRequest(
                f"image file {path} cannot be read ({exc.strerror or exc}); "
                "check it is still in the images folder",
                service="files",
            ) from None
        media_type = sniff_media_type(data) or "application/octet-stream"
        self.ctx.usage.add("files", calls=1, images=1)
        return GenerationResult(
            images=[ImageResult(data=data, media_type=media_type, source=str(path))],
            cost=0.0,
            final_prompt=request.prompt,
        )
