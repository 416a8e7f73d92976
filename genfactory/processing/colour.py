"""Colour modes and ICC profiles: bring any decoded image into the working modes RGB / RGBA.

Every function of the package works on RGB or RGBA images whose ``info`` holds at most an
``icc_profile``; these helpers get images there and keep the profile attached on the way.
"""

from __future__ import annotations

import io
from functools import cache

import numpy as np
from PIL import Image, ImageCms

from genfactory.errors import ImageRejected

ICC_KEY = "icc_profile"


@cache
def srgb_profile_bytes() -> bytes:
    """The bytes of LittleCMS's built-in sRGB profile (embedded after a conversion to sRGB)."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def icc_of(image: Image.Image) -> bytes | None:
    """The image's ICC profile bytes, or None."""
    icc = image.info.get(ICC_KEY)
    return icc if isinstance(icc, bytes) and icc else None


def with_icc(image: Image.Image, icc: bytes | None) -> Image.Image:
    """Set ``image.info`` to hold exactly this profile (Pillow ops copy ``info`` unevenly)."""
    image.info = {ICC_KEY: icc} if icc else {}
    return image


def _profile(icc: bytes) -> ImageCms.ImageCmsProfile | None:
    try:
        return ImageCms.ImageCmsProfile(io.BytesIO(icc))
    except (OSError, ValueError, TypeError, ImageCms.PyCMSError):
        return None


def profile_space(icc: bytes | None) -> str | None:
    """The profile's colour space ('RGB', 'GRAY', 'CMYK'...), None if absent or unreadable."""
    if not icc:
        return None
    profile = _profile(icc)
    if profile is None:
        return None
    return str(profile.profile.xcolor_space).strip().upper() or None


def is_srgb(icc: bytes | None) -> bool:
    """True for no profile (sRGB is the default assumption) or a profile named sRGB."""
    if not icc:
        return True
    profile = _profile(icc)
    if profile is None:
        return True
    description = str(profile.profile.profile_description or "")
    return "srgb" in description.lower()


def _transform_to_srgb(base: Image.Image, icc: bytes) -> Image.Image | None:
    """Colour-manage an L / RGB / CMYK image into sRGB RGB; None if LittleCMS refuses."""
    source = _profile(icc)
    if source is None:
        return None
    try:
        out = ImageCms.profileToProfile(
            base,
            source,
            ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")),
            renderingIntent=ImageCms.Intent.PERCEPTUAL,
            outputMode="RGB",
        )
    except (ImageCms.PyCMSError, OSError, ValueError):
        return None
    return out


def to_srgb(image: Image.Image) -> Image.Image:
    """Convert an RGB/RGBA image with a non-sRGB profile to sRGB (JPEG for stock sites)."""
    icc = icc_of(image)
    if icc is None or is_srgb(icc):
        return image
    alpha = image.getchannel("A") if image.mode == "RGBA" else None
    converted = _transform_to_srgb(image.convert("RGB"), icc)
    if converted is None:
        # An unusable profile: keep pixels and profile as they are rather than guess.
        return image
    if alpha is not None:
        converted.putalpha(alpha)
    return with_icc(converted, srgb_profile_bytes())


def rgb_or_rgba(image: Image.Image) -> Image.Image:
    """Image as RGB/RGBA (open_image's output already is; other modes are converted)."""
    if image.mode in ("RGB", "RGBA"):
        return image
    converted = image.convert("RGBA" if image.has_transparency_data else "RGB")
    return with_icc(converted, icc_of(image))


def _high_bit_depth_to_l(image: Image.Image) -> Image.Image:
    """16-bit / 32-bit grey to 8-bit L; Pillow's own convert('L') clips instead of scaling."""
    values = np.asarray(image)
    if image.mode == "F":
        scaled = np.clip(values, 0, 255)
    else:
        # I;16 and I hold 16-bit samples (PNG/TIFF); map 0..65535 onto 0..255.
        scaled = np.clip(values.astype(np.float64) / 257.0, 0, 255)
    return Image.fromarray(np.rint(scaled).astype(np.uint8), "L")


def to_working_mode(image: Image.Image) -> Image.Image:
    """Any decoded image -> a new RGB or RGBA image, its ICC profile kept when it is for RGB.

    CMYK and grey images with an embedded profile are colour-managed into sRGB (their
    profile would be wrong on RGB pixels); without one Pillow's standard formulas apply.
    Palette, grey and transparency-key images become RGBA when they carry transparency.
    """
    icc = icc_of(image)
    mode = image.mode
    if mode in ("RGB", "RGBA"):
        # An RGB PNG with a tRNS colour key: convert() turns the key into real transparency.
        out = image.convert("RGBA") if mode == "RGB" and image.has_transparency_data else image
        out = out.copy() if out is image else out
        return with_icc(out, icc if profile_space(icc) == "RGB" else None)

    if mode.startswith("I") or mode == "F":
        image, mode = _high_bit_depth_to_l(image), "L"
    try:
        alpha = image.convert("RGBA").getchannel("A") if image.has_transparency_data else None
        if mode in ("1", "L", "LA"):
            base = image.convert("L")
        elif mode == "CMYK":
            base = image
        else:  # P, PA, La, RGBX, RGBa, YCbCr, HSV, LAB...
            base = image.convert("RGBA").convert("RGB")
    except ValueError as exc:
        raise ImageRejected(f"unsupported colour mode {mode}: {exc}") from None

    if base.mode in ("L", "CMYK"):
        wanted = "GRAY" if base.mode == "L" else "CMYK"
        managed = _transform_to_srgb(base, icc) if icc and profile_space(icc) == wanted else None
        if managed is not None:
            base, icc = managed, srgb_profile_bytes()
        else:
            base = base.convert("RGB")
    if alpha is not None:
        base.putalpha(alpha)
    return with_icc(base, icc if profile_space(icc) == "RGB" else None)
