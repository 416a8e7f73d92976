"""The local renderer's scene painters: landscape, abstract, single subject, still life."""

from __future__ import annotations

import math
import random

from PIL import Image, ImageDraw

from genfactory.providers.local_render import vocab
from genfactory.providers.local_render.draw import (
    _ellipse,
    _gradient,
    _lum,
    _mix,
    _paste,
    _polygon,
    _ridge,
    _shade,
    _with_contrast,
)
from genfactory.providers.local_render.vocab import RGB


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
            (sx - sr * 0.6, ground_top + sr * 0.1, sx + sr * 0.6, ground_top + sr * 0.6),
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


def _subject_kind(words: set[str], rng: random.Random) -> int:
    """The shape the prompt asks for (its first match), else a seeded choice."""
    for kind, triggers in enumerate(vocab.SUBJECT_WORDS):
        if words & triggers:
            return kind
    return rng.randrange(len(vocab.SUBJECT_WORDS))


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
