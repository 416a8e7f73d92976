"""The offline image generator: paints a distinct, deterministic picture for every prompt.

No model and no network. The prompt picks the theme (palette from colour and scene words,
or from a hash of the words) and the scene kind (landscape, still life, abstract); the image
seed picks the composition, so variations of one prompt share a palette and differ in layout.
About a third of the images are a single subject on a plain light background (always, when
the prompt says "isolated", "white background", "sticker"...), which gives background removal
real work. A configurable share (`generation.local_defect_rate`) carries a generator defect -
heavy blur or a washed-out, nearly blank frame - as real models sometimes do, so the local
quality check has something true to catch. `render_plan` tells which, without painting.

It is a demo and a test double, not an image model: it draws shapes, never the subject itself.
Its vocabularies live in `genfactory/data/local_render.json`, its painters in `local_render/`.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import random
import re
from dataclasses import dataclass
from typing import Literal

from PIL import Image

from genfactory.config import Settings, parse_aspect_ratio
from genfactory.errors import BadRequest
from genfactory.providers.base import GenerationRequest, GenerationResult, ImageResult
from genfactory.providers.local_render import vocab
from genfactory.providers.local_render.draw import Defect, _apply_defect, _clip, _plain_background
from genfactory.providers.local_render.scenes import (
    _paint_abstract,
    _paint_landscape,
    _paint_still_life,
    _paint_subject,
)
from genfactory.providers.local_render.vocab import RGB
from genfactory.providers.registry import ProviderContext

SceneKind = Literal["landscape", "still_life", "abstract", "subject"]

#: Painting happens at this long side at most, then the picture is resized to the asked size:
#: it keeps a 1024² render well under 150 ms.
WORK_LONG_SIDE = 512
#: Share of images painted as one subject on a plain light background.
PLAIN_SHARE = 1 / 3
MAX_SIDE = 4096
MAX_COUNT = 20
_SEED_RANGE = 2**31  # seeds fit a signed 32-bit column

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
    #: Facts for the registry (`providers.base.ImageProviderFacts`): rendering again is free.
    repeatable_create = True

    @classmethod
    def fixed_long_side(cls, settings: Settings) -> int:
        """It renders at `generation.local_long_side`, whatever the image sizes say."""
        return settings.generation.local_long_side

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
        # No `on_task_created`: the render happens in this call, so there is no task to poll
        # after an interruption; the id comes back with the images (and is stored with them).
        images = []
        for index in range(request.count):
            seed = (base + index) % _SEED_RANGE
            data = render_png(prompt, seed, request.width, request.height, defect_rate=defect_rate)
            images.append(
                ImageResult(
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
    plain = (
        any(p in lowered for p in vocab.PLAIN_WORDS) or _unit("plain", prompt, seed) < PLAIN_SHARE
    )
    if plain:
        scene: SceneKind = "subject"
    elif words & vocab.LANDSCAPE_WORDS:
        scene = "landscape"
    elif words & vocab.STILL_LIFE_WORDS:
        scene = "still_life"
    elif words & vocab.ABSTRACT_WORDS:
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
        color = vocab.COLOR_WORDS.get(word)
        if color and color not in colors:
            colors.append(color)
    # The theme named first in the prompt leads ("night sky over desert" is a night scene).
    found = []
    for theme, triggers in vocab.THEME_WORDS.items():
        positions = [_position(t, lowered, words) for t in triggers]
        hits = [pos for pos in positions if pos is not None]
        if hits:
            found.append((min(hits), theme))
    for _pos, theme in sorted(found)[:2]:
        colors.extend(c for c in vocab.THEME_PALETTES[theme] if c not in colors)
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
        _paint_landscape(canvas, palette, rng, night=bool(words & vocab.NIGHT_WORDS))
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
