"""Decoding untrusted bytes into a usable image, or a clear reason why not.

Every decode of image bytes in genfactory happens here: `open_image` for the pipeline (the full
policy: size, animation, orientation, working mode) and `load_image` / `as_png` for providers
that need the pixels of an image the pipeline has already verified. Bytes that do not decode
raise `UnreadableImage`; decodable images that cannot be used raise `ImageRejected`.
"""

from __future__ import annotations

import io
import warnings
from functools import cache

from PIL import Image, ImageOps, UnidentifiedImageError

from genfactory.errors import ImageRejected, UnreadableImage
from genfactory.media import sniff_media_type
from genfactory.processing.colour import icc_of, profile_space, to_working_mode

#: Formats image providers and users plausibly deliver; everything else (EPS, PSD, ICO...) is
#: refused before any decoder runs, which keeps the attack surface of hostile downloads small.
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF", "AVIF")

#: Smallest side worth processing: nothing below this is a sellable image, and 1x1 "images"
#: are what broken providers return as placeholders.
MIN_SIDE = 16

#: Formats whose extra frames are an animation. Multi-frame MPO/TIFF files hold a still image
#: first (then depth maps, previews or pages), so those are read as their first frame.
_ANIMATION_FORMATS = {"GIF", "WEBP", "PNG", "AVIF"}

#: Modes `as_png` keeps as they are (anything else is converted to RGBA).
_PNG_MODES = ("RGB", "RGBA", "L", "LA")

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


def _open(data: bytes) -> Image.Image:
    """The image's header read (no pixel decoded yet), or UnreadableImage saying why not."""
    if not data:
        raise UnreadableImage("image file is empty (0 bytes)")
    try:
        return Image.open(io.BytesIO(data), formats=_formats())
    except Image.DecompressionBombError as exc:
        raise ImageRejected(f"decompression bomb guard: {exc}") from None
    except UnidentifiedImageError:
        raise UnreadableImage(_unidentified_reason(data)) from None
    except Exception as exc:
        # Hostile headers make Pillow raise many types (SyntaxError, struct.error...); each
        # means the same thing here.
        raise UnreadableImage(f"corrupt image header: {exc}") from None


def _load(image: Image.Image) -> None:
    """Decode every pixel, or UnreadableImage for a truncated or corrupt file."""
    try:
        image.load()
    except Image.DecompressionBombError as exc:
        raise ImageRejected(f"decompression bomb guard: {exc}") from None
    except Exception as exc:
        raise UnreadableImage(f"truncated or corrupt {image.format or 'image'}: {exc}") from None


def open_image(data: bytes, *, max_pixels: int) -> Image.Image:
    """Decode untrusted bytes fully into an RGB/RGBA image, upright, ICC profile kept.

    Raises UnreadableImage for empty data, non-images (HTML error pages...), truncated or
    corrupt files; ImageRejected with a reason for more than ``max_pixels`` pixels (checked on
    the header, before any pixel is decoded), sides under MIN_SIDE and animations
    (GIF/WebP/APNG/AVIF with more than one frame: an animation is not the still image that was
    ordered, and its first frame may be a blank fade-in, so it is refused rather than silently
    cut). The returned image's ``info`` holds only the ICC profile: EXIF (orientation already
    applied) and text chunks (generator parameters) are not carried into outputs.
    """
    image = _open(data)
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
        raise UnreadableImage("truncated PNG: the end-of-image chunk (IEND) is missing")
    _load(image)
    try:
        upright = ImageOps.exif_transpose(image)
    except Exception:
        # Broken EXIF is no reason to refuse pixels that decoded fine: keep them unrotated.
        upright = image
    assert upright is not None  # in_place=False always returns an image
    return to_working_mode(upright)


def sendable_as_is(data: bytes, *, max_pixels: int) -> bool:
    """True when `data` can go to a background remover unchanged instead of a PNG of its
    decoded pixels: a complete baseline or progressive RGB JPEG that `open_image` would only
    copy (within `max_pixels`, a profile for RGB if any) and that carries nothing but its JFIF
    header and that profile (no EXIF, so no rotation; no XMP, comment, IPTC or C2PA data the
    prepared PNG would not have carried either). Reads the header only. PNGs always go
    prepared: their bit depth, gamma chunks and text chunks after the pixels would need a full
    decode to rule out."""
    try:
        image = _open_checked(data, max_pixels)
    except (UnreadableImage, ImageRejected):
        return False
    if image.format != "JPEG" or image.mode != "RGB" or not data.endswith(b"\xff\xd9"):
        return False  # a file cut short ends without its end-of-image marker
    if min(image.size) < MIN_SIDE:
        return False
    markers = {marker for marker, _ in getattr(image, "applist", [])}
    if not markers <= {"APP0", "APP2"} or "comment" in image.info:
        return False
    icc = icc_of(image)
    return not icc or profile_space(icc) == "RGB"


def _open_checked(data: bytes, max_pixels: int | None) -> Image.Image:
    with warnings.catch_warnings():
        # `max_pixels` decides; Pillow's own (global) limit only warns (and raises at twice).
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        image = _open(data)
    width, height = image.size
    if max_pixels is not None and width * height > max_pixels:
        raise ImageRejected(
            f"image is {width}x{height} px, more than processing.max_image_pixels = "
            f"{max_pixels}; it was not decoded"
        )
    return image


def load_image(data: bytes, *, max_pixels: int | None = None) -> Image.Image:
    """Decode bytes as they are (mode, orientation and frames untouched), checked only for
    being an image of an accepted format and for `max_pixels` (before any pixel is decoded).

    For providers that need the pixels of an image the pipeline has verified with
    `open_image`. Raises UnreadableImage, or ImageRejected past `max_pixels`.
    """
    image = _open_checked(data, max_pixels)
    _load(image)
    return image


def load_reduced(
    data: bytes, *, side: int, max_pixels: int | None = None
) -> tuple[Image.Image, tuple[int, int]]:
    """`load_image`, with JPEGs decoded at reduced scale (at least `side` px a side, for
    measurements that need no more): (image, full size)."""
    image = _open_checked(data, max_pixels)
    size = image.size
    if image.format == "JPEG":
        image.draft(image.mode, (side, side))
    _load(image)
    return image, size


def as_png(data: bytes, *, mode: str | None = None) -> bytes:
    """The image as PNG bytes: unchanged if it already is one (and no `mode` is asked for),
    else decoded once and re-encoded (in `mode`, or its own mode when RGB/RGBA/L/LA, else
    RGBA). Raises UnreadableImage for bytes that are not an image."""
    if mode is None and sniff_media_type(data) == "image/png":
        return data
    with load_image(data) as image:
        target = mode or (image.mode if image.mode in _PNG_MODES else "RGBA")
        converted = image if image.mode == target else image.convert(target)
        buffer = io.BytesIO()
        converted.save(buffer, format="PNG")
    return buffer.getvalue()
