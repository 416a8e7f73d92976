"""Drawing helpers of the local renderer: colour arithmetic, gradients, soft shapes, defects."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from genfactory.providers.local_render.vocab import RGB

#: Draws a shape on a mask with the given fill (the shape's opacity).
_DrawFn = Callable[[ImageDraw.ImageDraw, int], None]
Defect = Literal["blur", "washout"]


def _clip(v: float) -> int:
    return max(0, min(255, int(v)))


def _lum(c: RGB) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    return (
        _clip(a[0] + (b[0] - a[0]) * t),
        _clip(a[1] + (b[1] - a[1]) * t),
        _clip(a[2] + (b[2] - a[2]) * t),
    )


def _shade(c: RGB, factor: float) -> RGB:
    """Darker (< 1) or lighter (> 1, towards white) version of a colour."""
    if factor <= 1:
        return (_clip(c[0] * factor), _clip(c[1] * factor), _clip(c[2] * factor))
    return _mix(c, (255, 255, 255), min(1.0, factor - 1))


def _with_contrast(c: RGB, against: RGB, minimum: float) -> RGB:
    """Darken (or lighten) `c` until its luminance differs from `against` by `minimum`."""
    out = c
    for _ in range(12):
        if abs(_lum(out) - _lum(against)) >= minimum:
            return out
        out = _shade(out, 0.8) if _lum(against) > 100 else _shade(out, 1.25)
    return out


def _gradient(size: tuple[int, int], stops: list[RGB], *, horizontal: bool = False) -> Image.Image:
    """A linear gradient through `stops`, top to bottom (or left to right)."""
    w, h = size
    n = w if horizontal else h
    pos = np.linspace(0, len(stops) - 1, n)
    arr = np.asarray(stops, dtype=np.float32)
    lo = np.floor(pos).astype(int).clip(0, len(stops) - 1)
    hi = np.minimum(lo + 1, len(stops) - 1)
    t = (pos - lo)[:, None]
    line = arr[lo] * (1 - t) + arr[hi] * t
    if horizontal:
        img = np.broadcast_to(line[None, :, :], (h, w, 3))
    else:
        img = np.broadcast_to(line[:, None, :], (h, w, 3))
    return Image.fromarray(np.ascontiguousarray(img).astype(np.uint8), "RGB")


def _paste(
    canvas: Image.Image, color: RGB, draw_fn: _DrawFn, alpha: int = 255, blur: float = 0.0
) -> None:
    """Paint a shape in `color` with opacity `alpha` (and soft edges when `blur`)."""
    mask = Image.new("L", canvas.size, 0)
    draw_fn(ImageDraw.Draw(mask), alpha)
    box = mask.getbbox()
    if box is None:
        return
    if blur:
        # Blur only around the shape: a full-frame blur per shape would dominate render time.
        pad = int(blur * 3) + 1
        box = (
            max(0, box[0] - pad),
            max(0, box[1] - pad),
            min(canvas.width, box[2] + pad),
            min(canvas.height, box[3] + pad),
        )
        canvas.paste(color, box, mask.crop(box).filter(ImageFilter.GaussianBlur(blur)))
    else:
        canvas.paste(color, box, mask.crop(box))


def _ellipse(box: tuple[float, float, float, float]) -> _DrawFn:
    def draw(d: ImageDraw.ImageDraw, fill: int) -> None:
        d.ellipse(box, fill=fill)

    return draw


def _polygon(points: list[tuple[float, float]]) -> _DrawFn:
    def draw(d: ImageDraw.ImageDraw, fill: int) -> None:
        d.polygon(points, fill=fill)

    return draw


def _ridge(
    rng: random.Random, w: int, base: float, amplitude: float, roughness: int
) -> list[float]:
    """A mountain ridge line: heights at `roughness + 1` points, smoothed random walk."""
    heights = [0.0]
    for _ in range(roughness):
        heights.append(heights[-1] + rng.gauss(0, 1))
    mean = sum(heights) / len(heights)
    span = (max(heights) - min(heights)) or 1.0
    return [base + (hgt - mean) / span * amplitude for hgt in heights]


def _plain_background(rng: random.Random, palette: tuple[RGB, ...]) -> RGB:
    """Flat white most of the time, else a very light tint of the palette."""
    if rng.random() < 0.6:
        return (255, 255, 255)
    return _mix(rng.choice(palette), (255, 255, 255), 0.85)


def _apply_defect(canvas: Image.Image, defect: Defect, rng: random.Random) -> Image.Image:
    if defect == "blur":
        # Far beyond any depth-of-field effect: the whole frame is out of focus.
        return canvas.filter(ImageFilter.GaussianBlur(max(canvas.size) * rng.uniform(0.03, 0.05)))
    # Washed out: everything pulled towards a pale tone, leaving almost no contrast.
    arr = np.asarray(canvas, dtype=np.float32)
    tone = arr.mean(axis=(0, 1)) * 0.3 + 245 * 0.7
    lum = arr @ np.asarray([0.299, 0.587, 0.114], dtype=np.float32)
    spread = float(lum.std()) or 1.0
    keep = min(1.0, rng.uniform(1.0, 3.0) / spread)
    out = tone + (arr - tone) * keep
    return Image.fromarray(out.clip(0, 255).astype(np.uint8), "RGB")
