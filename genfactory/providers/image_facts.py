"""What the pixels of an image say for its metadata: colours, orientation, plain background, flat.

Cheap measurements on a thumbnail of at most `SIDE` px; nothing here guesses the subject.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

SIDE = 96
#: A colour must cover this share of the picture to be named.
COLOR_SHARE = 0.12
#: Border pixels further than this (RGB distance) from the border's median break "plain".
PLAIN_DISTANCE = 40.0
#: Share of border pixels that must be near the median for a plain background.
PLAIN_SHARE = 0.92
#: Share of pixels in the 8 commonest coarse colours above which an image is flat artwork.
FLAT_SHARE = 0.75


@dataclass(frozen=True)
class ImageFacts:
    """Measured facts of one image."""

    width: int
    height: int
    #: Names of the main colours, most frequent first.
    colors: list[str] = field(default_factory=list)
    #: The colour name of a plain (uniform) background, "transparent", or None.
    background: str | None = None
    #: Few distinct colours: a flat illustration or graphic, not a photograph.
    flat: bool = False
    #: Lines of visible text read by OCR (filled only where lettering is wanted).
    text: list[str] = field(default_factory=list)

    @property
    def orientation(self) -> str:
        ratio = self.width / self.height if self.height else 1.0
        if abs(ratio - 1) <= 0.05:
            return "square"
        return "horizontal" if ratio > 1 else "vertical"

    @property
    def wide(self) -> bool:
        """At least 2:1 either way: a panorama or banner shape."""
        short = min(self.width, self.height) or 1
        return max(self.width, self.height) / short >= 2


def _nearest(pixels: np.ndarray, palette: Mapping[str, tuple[int, int, int]]) -> np.ndarray:
    refs = np.asarray(list(palette.values()), dtype=np.float32)
    nearest: np.ndarray = ((pixels[:, None, :] - refs[None, :, :]) ** 2).sum(axis=2).argmin(axis=1)
    return nearest


def measure(data: bytes, palette: Mapping[str, tuple[int, int, int]]) -> ImageFacts | None:
    """The facts of an encoded image, or None when it cannot be read."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            image.draft("RGB", (SIDE * 2, SIDE * 2))
            image.thumbnail((SIDE, SIDE))
            rgba = np.asarray(image.convert("RGBA"), dtype=np.float32)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None
    names = list(palette)
    flat_pixels = rgba.reshape(-1, 4)
    opaque = flat_pixels[flat_pixels[:, 3] > 128][:, :3]
    colors: list[str] = []
    if opaque.size:
        counts = np.bincount(_nearest(opaque, palette), minlength=len(names))
        order = np.argsort(-counts, kind="stable")
        colors = [names[i] for i in order[:3] if counts[i] >= COLOR_SHARE * len(opaque)]
    return ImageFacts(width, height, colors, _background(rgba, palette), _is_flat(opaque))


def _background(rgba: np.ndarray, palette: Mapping[str, tuple[int, int, int]]) -> str | None:
    """The plain background's colour name (from the border ring), or None if it varies."""
    h, w = rgba.shape[:2]
    ring = max(1, min(h, w) // 25)
    border = np.concatenate(
        [
            rgba[:ring].reshape(-1, 4),
            rgba[-ring:].reshape(-1, 4),
            rgba[:, :ring].reshape(-1, 4),
            rgba[:, -ring:].reshape(-1, 4),
        ]
    )
    if (border[:, 3] < 16).mean() >= PLAIN_SHARE:
        return "transparent"
    rgb = border[:, :3]
    median = np.median(rgb, axis=0)
    near = np.sqrt(((rgb - median) ** 2).sum(axis=1)) <= PLAIN_DISTANCE
    if near.mean() < PLAIN_SHARE:
        return None
    return list(palette)[int(_nearest(median[None, :], palette)[0])]


def _is_flat(pixels: np.ndarray) -> bool:
    """Most pixels in a handful of coarse colours: flat artwork rather than a photograph."""
    if pixels.size == 0:
        return False
    coarse = (pixels // 32).astype(np.int32)
    keys = coarse[:, 0] * 64 + coarse[:, 1] * 8 + coarse[:, 2]
    counts = np.sort(np.bincount(keys, minlength=512))[::-1]
    return float(counts[:8].sum()) / len(keys) >= FLAT_SHARE
