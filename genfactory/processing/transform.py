"""Pure image operations (Image in, new Image out) and the `process_image` composition."""

from __future__ import annotations

import math
from typing import Literal

from PIL import Image, ImageEnhance, ImageFilter

from genfactory.config import ProcessingSection
from genfactory.errors import ImageRejected
from genfactory.processing.colour import icc_of, rgb_or_rgba, with_icc

Stage = Literal["prepare", "finish", "all"]
Background = Literal["white", "black"]

_BACKGROUNDS: dict[str, tuple[int, int, int]] = {"white": (255, 255, 255), "black": (0, 0, 0)}


def trim_transparent(image: Image.Image) -> Image.Image:
    """Crop to the bounding box of pixels with alpha > 0.

    No-op without an alpha channel or when nothing is transparent at the border; a fully
    transparent image is rejected (there is nothing to sell).
    """
    image = rgb_or_rgba(image)
    if image.mode != "RGBA":
        return image
    bbox = image.getchannel("A").getbbox()
    if bbox is None:
        raise ImageRejected("image is fully transparent: nothing left after trimming")
    if bbox == (0, 0, *image.size):
        return image
    return with_icc(image.crop(bbox), icc_of(image))


def enhance(image: Image.Image, sharpening: float, saturation: float) -> Image.Image:
    """Saturation (ImageEnhance.Color, 1.0 = unchanged), then an unsharp mask; alpha untouched.

    ``sharpening`` 0–10 (0 = off): radius 1 + 0.1 × level, strength 30 % × level, so the
    default 5 is a standard unsharp mask (radius 1.5, 150 %) and 10 doubles it. The original
    app's Gaussian σ = 0.2 × level is too small to change anything below level 5 with
    Pillow. Threshold 2 keeps smooth gradients, common in generated images, from turning
    into noise.
    """
    image = rgb_or_rgba(image)
    if sharpening <= 0 and saturation == 1.0:
        return image
    icc = icc_of(image)
    alpha = image.getchannel("A") if image.mode == "RGBA" else None
    # Work on colour only: filtering the alpha band would blur cut-out edges.
    rgb = image.convert("RGB") if alpha is not None else image
    if saturation != 1.0:
        rgb = ImageEnhance.Color(rgb).enhance(saturation)
    if sharpening > 0:
        rgb = rgb.filter(
            ImageFilter.UnsharpMask(
                radius=1 + 0.1 * sharpening, percent=round(30 * sharpening), threshold=2
            )
        )
    if alpha is not None:
        rgb.putalpha(alpha)
    return with_icc(rgb, icc)


def upscale(image: Image.Image, min_megapixels: float) -> Image.Image:
    """Enlarge with LANCZOS to at least ``min_megapixels``, aspect ratio kept; 0 = off."""
    image = rgb_or_rgba(image)
    width, height = image.size
    target = min_megapixels * 1_000_000
    if min_megapixels <= 0 or width * height >= target:
        return image
    scale = math.sqrt(target / (width * height))
    # ceil on both sides guarantees the target; the ratio is off by at most one pixel.
    size = (math.ceil(width * scale), math.ceil(height * scale))
    return with_icc(image.resize(size, Image.Resampling.LANCZOS), icc_of(image))


def flatten(image: Image.Image, background: Background) -> Image.Image:
    """Composite alpha onto a white or black background; always returns RGB."""
    image = rgb_or_rgba(image)
    if image.mode == "RGB":
        return image
    try:
        colour = _BACKGROUNDS[background]
    except KeyError:
        raise ValueError(f"background must be white or black, not {background!r}") from None
    out = Image.new("RGB", image.size, colour)
    # paste with the alpha as mask blends: out = image * a + background * (1 - a)
    out.paste(image.convert("RGB"), mask=image.getchannel("A"))
    return with_icc(out, icc_of(image))


def process_image(
    image: Image.Image, settings: ProcessingSection, *, stage: Stage = "all"
) -> Image.Image:
    """Run the pipeline stages on an open_image result (docs/SPEC.md §4, without encoding).

    "prepare": trim the transparent border (if trim_transparent_background); "finish":
    enhance (if image_enhancement), then upscale (if min_megapixels > 0); "all": both.
    Background removal, done by a provider, sits between prepare and finish.
    """
    if stage not in ("prepare", "finish", "all"):
        raise ValueError(f"stage must be prepare, finish or all, not {stage!r}")
    out = rgb_or_rgba(image)
    if stage != "finish" and settings.trim_transparent_background:
        out = trim_transparent(out)
    if stage != "prepare":
        if settings.image_enhancement:
            out = enhance(out, settings.sharpening, settings.saturation)
        if settings.min_megapixels > 0:
            out = upscale(out, settings.min_megapixels)
    return out
