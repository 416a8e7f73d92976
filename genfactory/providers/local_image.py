"""The offline image generator: paints a distinct, deterministic picture for every prompt.

No model and no network. The prompt picks the theme (palette from colour and scene words,
or from a hash of the words) and the scene kind (landscape, still life, abstract); the image
seed picks the composition, so variations of one prompt share a palette and differ in layout.
About a third of the images are a single subject on a plain light background (always, when
the prompt says "isolated", "white background", "sticker"...), which gives background removal
real work. A configurable share (`generation.local_defect_rate`) carries a generator defect -
heavy blur or a washed-out, nearly blank frame - as real models sometimes do, so the local
quality check has something true to catch. `render_plan` tells which, without painting.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from genfactory.config import parse_aspect_ratio
from genfactory.errors import BadRequest
from genfactory.providers.base import GeneratedImage, GenerationRequest, GenerationResult
from genfactory.providers.registry import ProviderContext

RGB = tuple[int, int, int]
#: Draws a shape on a mask with the given fill (the shape's opacity).
_DrawFn = Callable[[ImageDraw.ImageDraw, int], None]
SceneKind = Literal["landscape", "still_life", "abstract", "subject"]
Defect = Literal["blur", "washout"]

#: Painting happens at this long side at most, then the picture is resized to the asked size:
#: it keeps a 1024² render well under 150 ms.
WORK_LONG_SIDE = 512
#: Share of images painted as one subject on a plain light background.
PLAIN_SHARE = 1 / 3
MAX_SIDE = 4096
MAX_COUNT = 20
_SEED_RANGE = 2**31  # seeds fit a signed 32-bit column

_PLAIN_WORDS = (
    "isolated",
    "white background",
    "plain background",
    "sticker",
    "clipart",
    "clip art",
    "cutout",
    "cut out",
    "transparent background",
    "studio background",
)
_LANDSCAPE_WORDS = {
    "landscape",
    "mountain",
    "mountains",
    "forest",
    "ocean",
    "sea",
    "beach",
    "coast",
    "desert",
    "sunset",
    "sunrise",
    "field",
    "meadow",
    "sky",
    "lake",
    "river",
    "valley",
    "hills",
    "hill",
    "island",
    "countryside",
    "scenery",
    "panorama",
    "canyon",
    "waterfall",
    "dunes",
    "horizon",
    "city",
    "skyline",
    "village",
    "park",
    "snowy",
    "aerial",
    "nature",
    "outdoor",
    "outdoors",
}
_ABSTRACT_WORDS = {
    "abstract",
    "pattern",
    "texture",
    "geometric",
    "background",
    "wallpaper",
    "backdrop",
    "gradient",
    "shapes",
    "bokeh",
    "seamless",
    "mosaic",
    "fractal",
    "minimalist",
    "banner",
}
_STILL_LIFE_WORDS = {
    "cup",
    "mug",
    "table",
    "vase",
    "bottle",
    "jar",
    "bowl",
    "plate",
    "product",
    "desk",
    "book",
    "books",
    "coffee",
    "tea",
    "fruit",
    "fruits",
    "apple",
    "bread",
    "cake",
    "candle",
    "food",
    "breakfast",
    "kitchen",
    "still",
    "interior",
    "shelf",
    "gift",
    "toy",
    "toys",
}
_NIGHT_WORDS = {
    "night",
    "space",
    "galaxy",
    "stars",
    "starry",
    "cosmic",
    "moon",
    "midnight",
    "neon",
    "cyberpunk",
    "nebula",
    "universe",
}

#: Colour words a prompt may name, in sRGB.
COLOR_WORDS: dict[str, RGB] = {
    "red": (200, 40, 45),
    "crimson": (170, 20, 50),
    "scarlet": (220, 35, 30),
    "orange": (240, 130, 30),
    "amber": (245, 165, 20),
    "yellow": (245, 215, 50),
    "gold": (212, 170, 55),
    "golden": (222, 175, 60),
    "green": (60, 150, 70),
    "emerald": (20, 140, 90),
    "lime": (150, 205, 50),
    "olive": (120, 125, 50),
    "mint": (150, 220, 180),
    "teal": (20, 130, 130),
    "turquoise": (50, 195, 190),
    "cyan": (40, 190, 220),
    "aqua": (70, 200, 210),
    "blue": (45, 95, 200),
    "navy": (25, 40, 95),
    "azure": (60, 140, 230),
    "sapphire": (30, 60, 160),
    "indigo": (70, 50, 140),
    "purple": (125, 60, 160),
    "violet": (140, 80, 200),
    "lavender": (180, 160, 220),
    "magenta": (200, 40, 150),
    "pink": (235, 130, 170),
    "rose": (220, 90, 120),
    "coral": (245, 120, 95),
    "peach": (250, 180, 140),
    "brown": (120, 75, 40),
    "chocolate": (95, 55, 30),
    "coffee": (110, 75, 50),
    "beige": (220, 200, 165),
    "cream": (245, 235, 205),
    "ivory": (245, 240, 220),
    "black": (25, 25, 30),
    "white": (245, 245, 242),
    "gray": (128, 130, 135),
    "grey": (128, 130, 135),
    "silver": (190, 195, 200),
    "copper": (185, 110, 60),
    "bronze": (165, 115, 55),
    "turquoise-blue": (40, 170, 200),
}

#: Scene words and the palette they suggest.
THEME_PALETTES: dict[str, tuple[RGB, ...]] = {
    "ocean": ((25, 80, 150), (40, 160, 190), (150, 215, 225), (230, 210, 160), (15, 45, 90)),
    "forest": ((35, 95, 50), (90, 150, 70), (170, 200, 120), (110, 80, 45), (20, 50, 30)),
    "desert": ((235, 190, 120), (210, 140, 70), (250, 225, 170), (170, 90, 50), (110, 60, 40)),
    "sunset": ((250, 150, 60), (230, 80, 70), (250, 210, 120), (120, 60, 120), (50, 30, 70)),
    "night": ((15, 20, 60), (60, 40, 110), (200, 80, 170), (60, 190, 220), (5, 5, 25)),
    "winter": ((225, 235, 245), (170, 200, 230), (110, 150, 190), (245, 250, 252), (60, 80, 110)),
    "flower": ((235, 120, 160), (250, 200, 215), (120, 170, 80), (250, 230, 120), (140, 40, 90)),
    "food": ((200, 60, 40), (245, 200, 120), (110, 160, 60), (150, 95, 55), (70, 40, 25)),
    "city": ((90, 100, 120), (180, 185, 195), (250, 190, 90), (60, 120, 170), (30, 35, 45)),
    "tech": ((20, 40, 80), (40, 120, 220), (60, 220, 230), (150, 90, 230), (10, 15, 30)),
    "autumn": ((200, 100, 30), (230, 160, 50), (160, 50, 30), (120, 80, 40), (70, 40, 25)),
}
_THEME_WORDS: dict[str, set[str]] = {
    "ocean": {
        "ocean",
        "sea",
        "beach",
        "water",
        "lake",
        "river",
        "underwater",
        "wave",
        "waves",
        "coast",
        "tropical",
        "island",
        "surf",
        "marine",
        "fish",
        "coral",
        "harbor",
    },
    "forest": {
        "forest",
        "tree",
        "trees",
        "jungle",
        "woods",
        "leaf",
        "leaves",
        "moss",
        "garden",
        "meadow",
        "grass",
        "plant",
        "plants",
        "fern",
        "spring",
        "park",
        "nature",
    },
    "desert": {"desert", "sand", "dune", "dunes", "canyon", "savanna", "safari", "cactus"},
    "sunset": {"sunset", "sunrise", "dusk", "dawn", "fire", "warm", "evening", "golden hour"},
    "night": _NIGHT_WORDS,
    "winter": {
        "snow",
        "snowy",
        "winter",
        "ice",
        "frost",
        "frozen",
        "arctic",
        "christmas",
        "glacier",
        "cold",
    },
    "flower": {
        "flower",
        "flowers",
        "rose",
        "roses",
        "blossom",
        "cherry",
        "floral",
        "tulip",
        "valentine",
        "bouquet",
        "petals",
        "wedding",
        "love",
    },
    "food": {
        "food",
        "fruit",
        "fruits",
        "apple",
        "bread",
        "cake",
        "pizza",
        "salad",
        "breakfast",
        "vegetable",
        "vegetables",
        "kitchen",
        "dessert",
        "meal",
        "tomato",
        "berries",
    },
    "city": {
        "city",
        "urban",
        "street",
        "building",
        "buildings",
        "skyline",
        "architecture",
        "office",
        "business",
        "downtown",
    },
    "tech": {
        "technology",
        "tech",
        "digital",
        "computer",
        "data",
        "network",
        "robot",
        "ai",
        "futuristic",
        "circuit",
        "cyber",
        "science",
        "innovation",
    },
    "autumn": {"autumn", "fall", "harvest", "pumpkin", "halloween", "thanksgiving"},
}

_WORD = re.compile(r"[a-z][a-z'-]*")


@dataclass(frozen=True)
class RenderPlan:
    """What one image will look like, decided from (prompt, seed) before any pixel is drawn."""

    scene: SceneKind
    plain_background: bool
    defect: Defect | None
    palette: tuple[RGB, ...]


class LocalRenderer:
    """Offline `ImageProvider`: distinct, deterministic PNG renders from the prompt and seed."""

    name = "local"

    def __init__(self, ctx: ProviderContext) -> None:
        self.ctx = ctx

    def generate(self, request: GenerationRequest) -> GenerationResult:
        """`request.count` PNG images of exactly `request.width` x `request.height`.

        Image i gets seed `base + i`, where base is `request.seed` or, when none is given, a
        number derived from the prompt; rendering (prompt, that seed) again gives the same bytes.
        """
        prompt = " ".join(request.prompt.split())
        if not prompt:
            raise BadRequest("the prompt is empty; nothing to draw", service="local")
        _check_size(request)
        base = request.seed if request.seed is not None else prompt_seed(prompt)
        defect_rate = self.ctx.settings.generation.local_defect_rate
        task_id = _digest(f"{prompt}\0{base}\0{request.width}x{request.height}\0{request.count}")
        if request.on_task_created is not None:
            request.on_task_created(task_id)
        images = []
        for index in range(request.count):
            seed = (base + index) % _SEED_RANGE
            data = render_png(prompt, seed, request.width, request.height, defect_rate=defect_rate)
            images.append(
                GeneratedImage(
                    data=data, media_type="image/png", seed=seed, source=f"local:{task_id}/{index}"
                )
            )
        self.ctx.usage.add("local", calls=1, images=len(images))
        return GenerationResult(images=images, task_id=task_id, cost=0.0, final_prompt=prompt)


def _check_size(request: GenerationRequest) -> None:
    """The caller derives width/height from the aspect ratio: refuse sizes that disagree."""
    w, h = request.width, request.height
    if not (16 <= w <= MAX_SIDE and 16 <= h <= MAX_SIDE):
        raise BadRequest(
            f"image size {w}x{h} is out of range; each side must be 16-{MAX_SIDE} px",
            service="local",
        )
    if not 1 <= request.count <= MAX_COUNT:
        raise BadRequest(
            f"cannot render {request.count} images at once; ask for 1-{MAX_COUNT}",
            service="local",
        )
    try:
        rw, rh = parse_aspect_ratio(request.aspect_ratio)
    except ValueError as exc:
        raise BadRequest(str(exc), service="local") from None
    # Sizes are rounded to multiples of 8, so allow the short side that rounding can cause.
    long_px, short_px = max(w, h), min(w, h)
    expected_short = long_px * min(rw, rh) / max(rw, rh)
    if ((w >= h) != (rw >= rh) and rw != rh) or abs(short_px - expected_short) > 8.5:
        raise BadRequest(
            f"image size {w}x{h} does not match the aspect ratio {request.aspect_ratio}",
            service="local",
        )


# ---------------------------------------------------------------------------------------------
# Deterministic choices


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


def _unit(*parts: object) -> float:
    """A uniform number in [0, 1) fixed by `parts`."""
    raw = hashlib.blake2b("\0".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(raw, "big") / 2**64


def prompt_seed(prompt: str) -> int:
    """The base seed used when a request has none: fixed by the prompt."""
    return int(_unit("seed", prompt) * _SEED_RANGE)


def _words(prompt: str) -> list[str]:
    return _WORD.findall(prompt.lower())


def render_plan(prompt: str, seed: int, *, defect_rate: float) -> RenderPlan:
    """The scene, background, defect and palette of the image for (prompt, seed)."""
    prompt = " ".join(prompt.split())
    lowered = prompt.lower()
    words = set(_words(prompt))
    plain = any(p in lowered for p in _PLAIN_WORDS) or _unit("plain", prompt, seed) < PLAIN_SHARE
    if plain:
        scene: SceneKind = "subject"
    elif words & _LANDSCAPE_WORDS:
        scene = "landscape"
    elif words & _STILL_LIFE_WORDS:
        scene = "still_life"
    elif words & _ABSTRACT_WORDS:
        scene = "abstract"
    else:
        # No scene word: the prompt's hash picks one, the same for every variation.
        scene = ("still_life", "landscape", "abstract")[int(_unit("scene", prompt) * 3)]
    defect: Defect | None = None
    if _unit("defect", prompt, seed) < defect_rate:
        defect = "blur" if _unit("defect-kind", prompt, seed) < 0.5 else "washout"
    return RenderPlan(scene, plain, defect, palette_for(prompt))


def _position(trigger: str, lowered: str, words: list[str]) -> int | None:
    """The index of the word where a theme word (or phrase) first occurs, or None."""
    if " " in trigger:
        at = lowered.find(trigger)
        return None if at < 0 else len(_WORD.findall(lowered[:at]))
    return words.index(trigger) if trigger in words else None


def palette_for(prompt: str) -> tuple[RGB, ...]:
    """Five colours: named colours first, then the scene's palette, then hash-derived ones."""
    words = _words(prompt)
    lowered = prompt.lower()
    colors: list[RGB] = []
    for word in words:
        color = COLOR_WORDS.get(word)
        if color and color not in colors:
            colors.append(color)
    # The theme named first in the prompt leads ("night sky over desert" is a night scene).
    found = []
    for theme, triggers in _THEME_WORDS.items():
        positions = [_position(t, lowered, words) for t in triggers]
        hits = [pos for pos in positions if pos is not None]
        if hits:
            found.append((min(hits), theme))
    for _pos, theme in sorted(found)[:2]:
        colors.extend(c for c in THEME_PALETTES[theme] if c not in colors)
    # Fill up with a harmony around the first colour's hue (or the prompt's hash).
    first = colors[0] if colors else None
    hue = colorsys.rgb_to_hsv(*(c / 255 for c in first))[0] if first else _unit("hue", prompt)
    scheme = (0.0, 0.08, -0.08, 0.5, 0.33)
    k = 0
    while len(colors) < 5:
        offset = scheme[k % len(scheme)]
        sat = 0.45 + 0.4 * _unit("sat", prompt, k)
        val = 0.35 + 0.6 * _unit("val", prompt, k)
        r, g, b = colorsys.hsv_to_rgb((hue + offset) % 1.0, sat, val)
        colors.append((int(r * 255), int(g * 255), int(b * 255)))
        k += 1
    # A small prompt-fixed jitter keeps two prompts with the same colour words apart.
    jittered = []
    for i, (r, g, b) in enumerate(colors[:5]):
        d = int((_unit("jitter", prompt, i) - 0.5) * 24)
        jittered.append((_clip(r + d), _clip(g - d // 2), _clip(b + d // 3)))
    return tuple(jittered)


# ---------------------------------------------------------------------------------------------
# Painting


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


def _paint_landscape(
    canvas: Image.Image, palette: tuple[RGB, ...], rng: random.Random, night: bool
) -> None:
    w, h = canvas.size
    by_lum = sorted(palette, key=_lum)
    light, dark = by_lum[-1], by_lum[0]
    accents = by_lum[1:-1]
    horizon = h * rng.uniform(0.45, 0.7)
    if night:
        sky = _gradient((w, h), [_shade(dark, 0.6), dark, _mix(dark, accents[0], 0.5)])
    else:
        top = _mix(rng.choice(accents), (255, 255, 255), rng.uniform(0.1, 0.4))
        sky = _gradient((w, h), [top, _mix(top, light, 0.6), _shade(light, 1.15)])
    canvas.paste(sky)
    draw = ImageDraw.Draw(canvas)
    if night:
        for _ in range(rng.randint(40, 90)):
            x, y = rng.uniform(0, w), rng.uniform(0, horizon)
            r = rng.choice((0.6, 0.8, 1.2))
            draw.ellipse((x - r, y - r, x + r, y + r), fill=(250, 250, 235))
    # The sun (or moon): a sharp disc with a soft glow around it.
    sx, sy = rng.uniform(0.15, 0.85) * w, rng.uniform(0.12, 0.45) * horizon + h * 0.05
    sr = rng.uniform(0.04, 0.09) * max(w, h)
    sun = (250, 245, 225) if night else _mix((255, 236, 170), rng.choice(palette), 0.2)
    _paste(
        canvas,
        sun,
        lambda d, a: d.ellipse(
            (sx - sr * 2.2, sy - sr * 2.2, sx + sr * 2.2, sy + sr * 2.2), fill=a // 3
        ),
        blur=sr * 0.8,
    )
    draw.ellipse((sx - sr, sy - sr, sx + sr, sy + sr), fill=sun)
    # Clouds: soft translucent ellipse clusters.
    if not night:
        for _ in range(rng.randint(1, 4)):
            cx, cy = rng.uniform(0, w), rng.uniform(0.05, 0.6) * horizon
            cw = rng.uniform(0.1, 0.25) * w

            def cloud(
                d: ImageDraw.ImageDraw, a: int, cx: float = cx, cy: float = cy, cw: float = cw
            ) -> None:
                for j in range(4):
                    ox = cx + (j - 1.5) * cw * 0.3
                    oy = cy + (j % 2) * cw * 0.06
                    d.ellipse(
                        (ox - cw * 0.3, oy - cw * 0.12, ox + cw * 0.3, oy + cw * 0.12), fill=a
                    )

            _paste(canvas, (252, 252, 250), cloud, alpha=rng.randint(150, 220), blur=2)
    # Mountain layers, far (hazy, light) to near (dark, saturated).
    layers = rng.randint(2, 4)
    haze = _mix(light, (255, 255, 255), 0.3) if not night else _mix(dark, accents[-1], 0.4)
    for layer in range(layers):
        t = (layer + 1) / layers
        color = _mix(haze, _mix(rng.choice(accents), dark, t * 0.6), 0.35 + 0.65 * t)
        base = horizon + (layer - layers + 1) * h * 0.05
        amp = h * rng.uniform(0.08, 0.22) * (1.1 - 0.3 * t)
        heights = _ridge(rng, w, base, amp, rng.randint(6, 18))
        step = w / (len(heights) - 1)
        points = [(i * step, y) for i, y in enumerate(heights)]
        draw.polygon([*points, (w, h), (0, h)], fill=color)
    # Foreground: water with a reflection band, or a darker ground with trees.
    ground_top = horizon + h * rng.uniform(0.05, 0.15)
    if rng.random() < 0.4:
        water = _gradient(
            (w, max(1, int(h - ground_top))),
            [_shade(_mix(accents[0], light, 0.3), 0.9), _shade(accents[0], 0.6)],
        )
        canvas.paste(water, (0, int(ground_top)))
        for _ in range(rng.randint(6, 14)):
            y = rng.uniform(ground_top, h)
            x = rng.uniform(0, w)
            ln = rng.uniform(0.03, 0.12) * w
            draw.line((x, y, x + ln, y), fill=_shade(light, 1.1), width=1)
        draw.ellipse(
            (sx - sr * 0.6, ground_top + 4, sx + sr * 0.6, ground_top + sr * 0.5),
            fill=_mix(sun, accents[0], 0.3),
        )
    else:
        ground = _shade(_mix(dark, rng.choice(accents), 0.4), 0.8)
        heights = _ridge(rng, w, ground_top, h * 0.04, 8)
        step = w / (len(heights) - 1)
        draw.polygon([*[(i * step, y) for i, y in enumerate(heights)], (w, h), (0, h)], fill=ground)
        tree = _shade(ground, 0.6)
        for _ in range(rng.randint(0, 9)):
            tx = rng.uniform(0, w)
            ty = ground_top + rng.uniform(0, 0.2) * (h - ground_top)
            th = rng.uniform(0.06, 0.16) * h
            draw.polygon([(tx, ty - th), (tx - th * 0.28, ty), (tx + th * 0.28, ty)], fill=tree)


def _paint_abstract(canvas: Image.Image, palette: tuple[RGB, ...], rng: random.Random) -> None:
    w, h = canvas.size
    stops = list(palette)
    rng.shuffle(stops)
    canvas.paste(_gradient((w, h), stops[:3], horizontal=rng.random() < 0.5))
    for _ in range(rng.randint(8, 18)):
        color = rng.choice(palette)
        kind = rng.random()
        cx, cy = rng.uniform(-0.1, 1.1) * w, rng.uniform(-0.1, 1.1) * h
        r = rng.uniform(0.05, 0.35) * max(w, h)
        alpha = rng.randint(90, 220)
        if kind < 0.45:
            _paste(
                canvas,
                color,
                _ellipse((cx - r, cy - r, cx + r, cy + r)),
                alpha=alpha,
                blur=rng.choice((0, 0, 1.5, 6)),
            )
        elif kind < 0.8:
            sides = rng.randint(3, 6)
            rot = rng.uniform(0, 2 * math.pi)
            pts = [
                (
                    cx + r * math.cos(rot + 2 * math.pi * i / sides),
                    cy + r * math.sin(rot + 2 * math.pi * i / sides),
                )
                for i in range(sides)
            ]
            _paste(canvas, color, _polygon(pts), alpha=alpha)
        else:
            # A diagonal band.
            x0 = rng.uniform(-0.5, 1.0) * w
            bw = rng.uniform(0.04, 0.15) * w
            pts = [(x0, 0), (x0 + bw, 0), (x0 + bw + h * 0.6, h), (x0 + h * 0.6, h)]
            _paste(canvas, color, _polygon(pts), alpha=alpha)
    # A few crisp accents so the picture has sharp detail, as generated art usually does.
    draw = ImageDraw.Draw(canvas)
    for _ in range(rng.randint(3, 8)):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        r = rng.uniform(0.01, 0.04) * max(w, h)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=_shade(rng.choice(palette), 1.3))


#: Subject shapes the renderer can draw, and the prompt words that ask for each.
_SUBJECT_WORDS: tuple[set[str], ...] = (
    {
        "apple",
        "orange",
        "fruit",
        "fruits",
        "ball",
        "cherry",
        "peach",
        "tomato",
        "berry",
        "plum",
        "lemon",
        "planet",
        "bauble",
        "ornament",
        "pumpkin",
    },
    {"tree", "trees", "pine", "forest", "christmas", "fir", "spruce", "woods"},
    {"house", "home", "building", "cottage", "cabin", "village", "real", "estate", "hut"},
    {"gem", "crystal", "diamond", "jewel", "jewelry", "gemstone", "stone", "rock", "ice"},
    {
        "flower",
        "flowers",
        "rose",
        "tulip",
        "daisy",
        "orchid",
        "blossom",
        "bloom",
        "floral",
        "sunflower",
        "lily",
        "bouquet",
    },
)


def _subject_kind(words: set[str], rng: random.Random) -> int:
    """The shape the prompt asks for (its first match), else a seeded choice."""
    for kind, triggers in enumerate(_SUBJECT_WORDS):
        if words & triggers:
            return kind
    return rng.randrange(len(_SUBJECT_WORDS))


def _paint_subject(
    canvas: Image.Image,
    palette: tuple[RGB, ...],
    rng: random.Random,
    center: tuple[float, float],
    size: float,
    background: RGB,
    words: set[str] | None = None,
) -> None:
    """One object centred at `center`, about `size` px tall, with a soft contact shadow.

    The shape follows the prompt's `words` when they name one (apple, tree, house...).
    """
    cx, cy = center
    main = _with_contrast(rng.choice(palette[:3]), background, 70)
    second = _with_contrast(rng.choice(palette[2:]), background, 55)
    dark = _shade(main, 0.6)
    bottom = cy + size * 0.5
    # Soft contact shadow, kept light so it reads as a shadow, not as part of the object.
    _paste(
        canvas,
        _shade(background, 0.55),
        lambda d, a: d.ellipse(
            (cx - size * 0.45, bottom - size * 0.06, cx + size * 0.45, bottom + size * 0.06), fill=a
        ),
        alpha=70,
        blur=size * 0.04,
    )
    draw = ImageDraw.Draw(canvas)
    kind = _subject_kind(words, rng) if words else rng.randrange(5)
    s = size
    if kind == 0:  # fruit / orb with a stem and leaf
        r = s * 0.42
        oy = bottom - r
        draw.ellipse((cx - r, oy - r, cx + r, oy + r), fill=main)
        draw.ellipse(
            (cx - r * 0.75, oy - r * 0.8, cx + r * 0.3, oy + r * 0.2), fill=_shade(main, 1.15)
        )
        draw.ellipse(
            (cx - r * 0.5, oy - r * 0.6, cx - r * 0.15, oy - r * 0.3), fill=_shade(main, 1.6)
        )
        draw.rectangle((cx - s * 0.02, oy - r * 1.25, cx + s * 0.02, oy - r * 0.85), fill=dark)
        draw.polygon(
            [(cx, oy - r * 1.1), (cx + s * 0.25, oy - r * 1.35), (cx + s * 0.08, oy - r * 0.95)],
            fill=second,
        )
    elif kind == 1:  # tree
        trunk = _with_contrast((110, 75, 45), background, 70)
        draw.rectangle((cx - s * 0.06, cy, cx + s * 0.06, bottom), fill=trunk)
        for j in range(3):
            ty = cy - s * 0.45 + j * s * 0.2
            tw = s * (0.22 + 0.1 * j)
            draw.polygon(
                [(cx, ty - s * 0.05), (cx - tw, ty + s * 0.3), (cx + tw, ty + s * 0.3)],
                fill=_shade(main, 1.0 - 0.12 * j),
            )
    elif kind == 2:  # house
        bw = s * 0.7
        top = cy - s * 0.1
        draw.rectangle((cx - bw / 2, top, cx + bw / 2, bottom), fill=main)
        draw.polygon(
            [(cx - bw * 0.62, top), (cx, cy - s * 0.5), (cx + bw * 0.62, top)], fill=second
        )
        for wx in (-0.25, 0.1):
            x0 = cx + bw * wx
            draw.rectangle(
                (x0, top + s * 0.12, x0 + bw * 0.16, top + s * 0.28), fill=_shade(main, 1.7)
            )
        draw.rectangle((cx - bw * 0.08, bottom - s * 0.28, cx + bw * 0.08, bottom), fill=dark)
    elif kind == 3:  # gem / crystal with facets
        r = s * 0.45
        oy = bottom - r
        pts = [
            (cx, oy - r),
            (cx + r * 0.8, oy - r * 0.3),
            (cx + r * 0.55, oy + r),
            (cx - r * 0.55, oy + r),
            (cx - r * 0.8, oy - r * 0.3),
        ]
        draw.polygon(pts, fill=main)
        draw.polygon([(cx, oy - r), (cx + r * 0.8, oy - r * 0.3), (cx, oy)], fill=_shade(main, 1.3))
        draw.polygon([(cx, oy), (cx + r * 0.55, oy + r), (cx - r * 0.55, oy + r)], fill=dark)
        draw.polygon(
            [(cx - r * 0.8, oy - r * 0.3), (cx, oy - r), (cx, oy)], fill=_shade(main, 1.15)
        )
    else:  # flower: petals around a centre, on a stem
        fy = cy - s * 0.15
        draw.rectangle(
            (cx - s * 0.02, fy, cx + s * 0.02, bottom),
            fill=_with_contrast((70, 140, 60), background, 70),
        )
        pr = s * 0.17
        petals = rng.randint(5, 8)
        for j in range(petals):
            ang = 2 * math.pi * j / petals
            px, py = cx + math.cos(ang) * pr * 1.3, fy + math.sin(ang) * pr * 1.3
            draw.ellipse((px - pr, py - pr, px + pr, py + pr), fill=main)
        draw.ellipse((cx - pr * 0.8, fy - pr * 0.8, cx + pr * 0.8, fy + pr * 0.8), fill=second)
    # A thin ground line anchors the subject on its shadow.
    draw.line((cx - s * 0.3, bottom, cx + s * 0.3, bottom), fill=_shade(main, 0.5), width=1)


def _paint_still_life(
    canvas: Image.Image, palette: tuple[RGB, ...], rng: random.Random, words: set[str]
) -> None:
    w, h = canvas.size
    by_lum = sorted(palette, key=_lum)
    wall = _shade(by_lum[-1], 1.1)
    table_y = h * rng.uniform(0.6, 0.75)
    canvas.paste(_gradient((w, h), [_shade(wall, 0.85), wall, _shade(wall, 0.9)], horizontal=True))
    table = _shade(by_lum[1], 0.8)
    canvas.paste(
        _gradient((w, int(h - table_y) + 1), [table, _shade(table, 0.7)]), (0, int(table_y))
    )
    # Window light falling on the wall.
    lx = rng.uniform(0.1, 0.7) * w
    _paste(
        canvas,
        (255, 250, 235),
        lambda d, a: d.polygon(
            [(lx, 0), (lx + w * 0.25, 0), (lx + w * 0.4, table_y), (lx + w * 0.15, table_y)], fill=a
        ),
        alpha=60,
        blur=6,
    )
    objects = rng.randint(1, 3)
    for j in range(objects):
        size = min(w, h) * rng.uniform(0.25, 0.45)
        cx = w * (j + 0.5 + rng.uniform(-0.2, 0.2)) / objects
        # The first object is what the prompt names; the others are random props.
        _paint_subject(
            canvas,
            palette,
            rng,
            (cx, table_y + size * 0.05 - size * 0.5 + 4),
            size,
            wall,
            words if j == 0 else None,
        )


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


def render_image(
    prompt: str, seed: int, width: int, height: int, *, defect_rate: float
) -> Image.Image:
    """The RGB picture for (prompt, seed) at exactly width x height."""
    plan = render_plan(prompt, seed, defect_rate=defect_rate)
    rng = random.Random(f"{' '.join(prompt.split())}\0{seed}")
    scale = min(1.0, WORK_LONG_SIDE / max(width, height))
    work = (max(16, round(width * scale)), max(16, round(height * scale)))
    canvas = Image.new("RGB", work, (255, 255, 255))
    palette = plan.palette
    words = set(_words(prompt))
    if plan.scene == "subject":
        background = _plain_background(rng, palette)
        canvas.paste(background, (0, 0, *work))
        size = min(work) * rng.uniform(0.45, 0.7)
        center = (
            work[0] / 2 + rng.uniform(-0.05, 0.05) * work[0],
            work[1] / 2 + rng.uniform(-0.04, 0.04) * work[1],
        )
        _paint_subject(canvas, palette, rng, center, size, background, words)
    elif plan.scene == "landscape":
        _paint_landscape(canvas, palette, rng, night=bool(words & _NIGHT_WORDS))
    elif plan.scene == "abstract":
        _paint_abstract(canvas, palette, rng)
    else:
        _paint_still_life(canvas, palette, rng, words)
    if plan.defect is not None:
        canvas = _apply_defect(canvas, plan.defect, rng)
    if canvas.size != (width, height):
        canvas = canvas.resize((width, height), Image.Resampling.BICUBIC)
    return canvas


def render_png(prompt: str, seed: int, width: int, height: int, *, defect_rate: float) -> bytes:
    """`render_image` encoded as PNG (fast compression: these are temp files)."""
    image = render_image(prompt, seed, width, height, defect_rate=defect_rate)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
