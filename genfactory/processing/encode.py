"""Encoding a processed image into the bytes of the output file."""

from __future__ import annotations

import io
from typing import Any, Literal

from PIL import Image

from genfactory.config import ProcessingSection
from genfactory.errors import ImageRejected
from genfactory.processing.colour import icc_of, rgb_or_rgba, to_srgb
from genfactory.processing.transform import flatten

OutputFormat = Literal["png", "jpg", "webp"]

#: File extension per output format (the format names are the extensions).
EXTENSIONS: dict[str, str] = {"png": "png", "jpg": "jpg", "webp": "webp"}


def png_compress_level(png_quality: int) -> int:
    """Map ``png_quality`` 1–100 onto zlib levels 9–1, linearly.

    100 → level 1 (fastest, largest file), 50 → 5, 1 → 9 (slowest, smallest file). PNG is
    lossless, so the pixels never change. Level 0 (stored, no compression) is never used: it
    makes files several times larger for a small saving in time.
    """
    quality = min(100, max(1, png_quality))
    return 1 + round((100 - quality) * 8 / 99)


def encode(image: Image.Image, fmt: OutputFormat, settings: ProcessingSection) -> bytes:
    """The bytes of ``image`` as PNG, JPEG or WebP, ICC profile embedded.

    JPEG: alpha flattened onto ``jpg_background``, converted to sRGB if it carries another
    profile (stock agencies want sRGB), progressive and optimised, ``jpg_quality``.
    PNG: alpha kept, compression from ``png_quality`` (see png_compress_level).
    WebP: alpha kept, ``webp_quality``.
    """
    image = rgb_or_rgba(image)
    options: dict[str, Any]
    if fmt == "jpg":
        image = to_srgb(flatten(image, settings.jpg_background))
        pil_format = "JPEG"
        options = {"quality": settings.jpg_quality, "progressive": True, "optimize": True}
    elif fmt == "png":
        pil_format = "PNG"
        options = {"compress_level": png_compress_level(settings.png_quality)}
    elif fmt == "webp":
        pil_format = "WEBP"
        options = {"quality": settings.webp_quality, "method": 4}
    else:
        raise ValueError(f"output format must be png, jpg or webp, not {fmt!r}")
    icc = icc_of(image)
    if icc:
        options["icc_profile"] = icc
    buffer = io.BytesIO()
    try:
        image.save(buffer, pil_format, **options)
    except (OSError, ValueError) as exc:
        # e.g. JPEG's 65,500 px side limit: the image cannot be delivered in this format.
        raise ImageRejected(f"cannot encode the image as {pil_format}: {exc}") from None
    return buffer.getvalue()
