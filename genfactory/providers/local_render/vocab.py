"""The renderer's word lists and palettes, read once from `genfactory/data/local_render.json`."""

from __future__ import annotations

import json
from pathlib import Path

RGB = tuple[int, int, int]

_DATA = json.loads(
    (Path(__file__).resolve().parent.parent.parent / "data" / "local_render.json").read_text(
        encoding="utf-8"
    )
)

#: Phrases that ask for a single subject on a plain background.
PLAIN_WORDS: tuple[str, ...] = tuple(_DATA["plain_words"])
LANDSCAPE_WORDS: frozenset[str] = frozenset(_DATA["landscape_words"])
ABSTRACT_WORDS: frozenset[str] = frozenset(_DATA["abstract_words"])
STILL_LIFE_WORDS: frozenset[str] = frozenset(_DATA["still_life_words"])
NIGHT_WORDS: frozenset[str] = frozenset(_DATA["night_words"])
#: Colour words a prompt may name, in sRGB.
COLOR_WORDS: dict[str, RGB] = {k: (v[0], v[1], v[2]) for k, v in _DATA["color_words"].items()}
#: Scene words and the palette they suggest.
THEME_PALETTES: dict[str, tuple[RGB, ...]] = {
    k: tuple((c[0], c[1], c[2]) for c in v) for k, v in _DATA["theme_palettes"].items()
}
THEME_WORDS: dict[str, frozenset[str]] = {k: frozenset(v) for k, v in _DATA["theme_words"].items()}
#: Subject shapes the renderer can draw, and the prompt words that ask for each.
SUBJECT_WORDS: tuple[frozenset[str], ...] = tuple(frozenset(s) for s in _DATA["subject_words"])
