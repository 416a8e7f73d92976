"""Decoding untrusted bytes into a usable image, or a clear reason why not."""

from __future__ import annotations

import io
from functools import cache

from PIL import Image, ImageOps, UnidentifiedImageError

from genfactory.errors import ImageRejected
from genfactory.processing.colour import to_working_mode

#: Formats image providers and users plausibly deliver; everything else (EPS, PSD, ICO...) is
#: refused before any decoder runs, which keeps the attack surface of hostile downloads small.
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF", "AVIF")

#: Smallest side worth processing: nothing below this is a sellable image, and 1x1 "images"
#: are what broken providers return as placeholders.
MIN_SIDE = 16

#: Formats whose extra frames are an animation. Multi-frame MPO/TIFF files hold a still image
#: first (then depth maps, previews or pages), so those are read as their first frame.
_ANIMATION_FORMATS = {"GIF", "WEBP", "PNG", "AVIF"}

_PNG_IEND = b"IEND\xaeB`\x82"


@cache
def _formats() -> tuple[str, ...]:
    # Image.open raises KeyError for a format this Pillow build has no plugin for (AVIF).
    Image.init()
    return tuple(name for name in ACCEPTED_FORMATS if name in Image.OPEN)


def _unidentified_reason(data: bytes) -> str:
    head = data[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body")):
        return "not an image: the data is an HTML/XML page (an error page from the server?)"
    if head.startswith((b"{", b"[")):
        return "not an image: the data is JSON text (an API error answer?)"
    return f"not an image: unrecognised data ({len(data):,} bytes, starts with {data[:8]!r})"


def open_image(data: bytes, *, max_pixels: int) -> Image.Image:
    """Decode untrusted bytes fully into an RGB/RGBA image, upright, ICC profile kept.

    Raises ImageRejected with a reason for: empty data, non-images (HTML error pages...),
    truncated or corrupt files, more than ``max_pixels`` pixels (checked on the header, before
    any pixel is decoded), sides under MIN_SIDE and animations (GIF/WebP/APNG/AVIF with more
    than one frame: an animation is not the still image that was ordered, and its first frame
    may be a blank fade-in, so it is refused rather than silently cut). The returned image's
    ``info`` holds only the ICC profile: EXIF (orientation already applied) and text chunks
    (generator parameters) are not carried into outputs.
    """
    if not data:
        raise ImageRejected("image file is empty (0 bytes)")
    try:
        image = Image.open(io.BytesIO(data), formats=_formats())
    except Image.DecompressionBombError as exc:
        raise ImageRejected(f"decompression bomb guard: {exc}") from None
    except UnidentifiedImageError:
        raise ImageRejected(_unidentified_reason(data)) from None
    except Exception as exc:
        # Hostile headers make Pillow raise many types (SyntaxError, struct.error...); each
        # means the same thing here.
        raise ImageRejected(f"corrupt image header: {exc}") from None

    fmt = image.format or "image"
    width, height = image.size
    if width * height > max_pixels:
        raise ImageRejected(
            f"image is {width}x{height} pixels ({width * height / 1e6:.1f} MP), over the limit "
            f"of {max_pixels:,} pixels (decompression bomb guard)"
        )
    if width < MIN_SIDE or height < MIN_SIDE:
        raise ImageRejected(
            f"image is {width}x{height} pixels, too small to process "
            f"(at least {MIN_SIDE} px a side)"
        )
    if fmt in _ANIMATION_FORMATS and getattr(image, "is_animated", False):
        frames = getattr(image, "n_frames", 2)
        raise ImageRejected(f"animated {fmt} ({frames} frames): only still images are processed")
    if fmt == "PNG" and _PNG_IEND not in data:
        # Pillow decodes a PNG cut after its last pixel row without complaint; a download
        # that lost its end is still a broken file.
        raise ImageRejected("truncated PNG: the end-of-image chunk (IEND) is missing")
    try:
        image.load()
    except Image.DecompressionBombError as exc:
        raise ImageRejected(f"decompression bomb guard: {exc}") from None
    except Exception as exc:
        raise ImageRejected(f"truncated or corrupt {fmt}: {exc}") from None

    try:
        upright = ImageOps.exif_transpose(image)
    except Exception:
        # Broken EXIF is no reason to refuse pixels that decoded fine: keep them unrotated.
        upright = image
    assert upright is not None  # in_place=False always returns an image
    return to_working_mode(upright)
