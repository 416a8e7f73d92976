"""The offline metadata writer: title, description and keywords from the prompt and keyword.

Nothing is guessed from pixels except the dominant colour names. Stock limits (SPEC §3) are
enforced here: a Title Case title of at most 70 characters without commas, a description of at
most 200 characters, and `metadata.min_keywords`..`max_keywords` unique lowercase keywords,
most important first: the subject, then the prompt's own words, then concepts related to the
themes the prompt names, then generic stock concepts. Trademarks never appear, and words the
prompt negates ("no text, no logos") are not keywords.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable

import numpy as np
from PIL import Image

from genfactory.errors import BadRequest
from genfactory.providers.base import ImageMetadata, MetadataRequest
from genfactory.providers.registry import ProviderContext


def _wordset(text: str) -> frozenset[str]:
    """Word lists are written as text: easier to read and extend than a literal of strings."""
    return frozenset(text.split())


TITLE_MAX = 70
DESCRIPTION_MAX = 200

STOPWORDS = _wordset(
    """a an the and or but nor of on in into onto at by for from to with without within over
    under above below between among through across along around about against near behind
    beside besides up down out off than then so very too also just only is are was were be
    been being am do does did has have had having it its it's this that these those there
    their they them he she his her him we our you your i me my mine as if while where when
    which who whom whose what why how all any both each few more most other some such no not
    can could should would may might must will shall one two three etc per via yet ever
    every much many lot lots several own same again further once here s t"""
)

#: Prompt boilerplate that describes the rendering, not the picture: never a keyword.
BOILERPLATE = _wordset(
    """professional stock high highly detail details detailed quality resolution res ultra hd
    uhd 4k 8k 16k hdr sharp sharpness focus focused clean composition composed render rendered
    rendering octane unreal engine trending artstation masterpiece best award winning
    photorealistic hyperrealistic hyper realistic realism style styled image picture shot
    prompt version v niji ar stylize chaos seed iso mm lens aperture f perfect stunning
    beautiful amazing gorgeous intricate cinematic dramatic epic vivid vibrant
    looking looks featuring feature features showing shows shown depicting depicts"""
)

#: Words that read well in a title but say nothing as a keyword.
FILLER = _wordset("next small large big little low huge tiny lots kind sort type way")

#: Words that negate what follows ("no text", "without people"): those words are not shown.
NEGATIONS = frozenset({"no", "not", "without", "avoid", "never", "excluding", "except", "non"})

#: Trademarks, brands and protected characters: never in keywords, title or description.
TRADEMARKS = (
    "nike",
    "adidas",
    "puma",
    "reebok",
    "disney",
    "pixar",
    "marvel",
    "dc comics",
    "coca-cola",
    "coca cola",
    "pepsi",
    "starbucks",
    "mcdonald's",
    "mcdonalds",
    "burger king",
    "kfc",
    "iphone",
    "ipad",
    "macbook",
    "imac",
    "airpods",
    "google",
    "android",
    "microsoft",
    "xbox",
    "playstation",
    "nintendo",
    "pokemon",
    "pikachu",
    "mario",
    "lego",
    "barbie",
    "mickey mouse",
    "mickey",
    "minnie mouse",
    "hello kitty",
    "star wars",
    "harry potter",
    "batman",
    "superman",
    "spider-man",
    "spiderman",
    "avengers",
    "gucci",
    "louis vuitton",
    "chanel",
    "prada",
    "rolex",
    "ferrari",
    "lamborghini",
    "porsche",
    "tesla",
    "bmw",
    "mercedes",
    "audi",
    "toyota",
    "samsung",
    "facebook",
    "instagram",
    "tiktok",
    "youtube",
    "netflix",
    "twitter",
    "whatsapp",
    "minecraft",
    "fortnite",
    "ikea",
    "red bull",
    "heineken",
    "budweiser",
    "jeep",
    "harley-davidson",
    "harley davidson",
    "hermes",
    "versace",
    "nasa",
    "olympic",
    "olympics",
    "fifa",
    "nba",
    "nfl",
    "oscar",
    "oscars",
    "grammy",
    "frozen elsa",
    "shrek",
    "simpsons",
    "snoopy",
    "garfield",
    "transformers",
    "godzilla",
    "labubu",
    "stormtrooper",
    "darth vader",
    "yoda",
    "jedi",
    "pokémon",
    "elsa",
    "winnie the pooh",
    "peppa pig",
)
#: Brand names that are also ordinary words: blocked only next to words of their brand.
AMBIGUOUS_TRADEMARKS: dict[str, frozenset[str]] = {
    "apple": frozenset(
        {
            "iphone",
            "ipad",
            "mac",
            "macbook",
            "laptop",
            "computer",
            "phone",
            "smartphone",
            "watch",
            "logo",
            "brand",
            "store",
            "tablet",
            "airpods",
            "ios",
            "tech",
            "technology",
            "device",
            "gadget",
        }
    ),
    "amazon": frozenset(
        {
            "box",
            "package",
            "parcel",
            "delivery",
            "prime",
            "logo",
            "brand",
            "shopping",
            "order",
            "alexa",
            "kindle",
            "echo",
        }
    ),
    "windows": frozenset(
        {"microsoft", "pc", "laptop", "computer", "logo", "software", "desktop", "operating"}
    ),
    "shell": frozenset({"gas", "fuel", "station", "petrol", "oil", "logo", "brand"}),
    "dove": frozenset({"soap", "shampoo", "logo", "brand", "cosmetics", "bottle"}),
    "jaguar": frozenset({"car", "vehicle", "logo", "brand", "automobile", "dealership"}),
    "corona": frozenset({"beer", "bottle", "logo", "brand", "lime", "drink"}),
}

#: Related concepts by theme, most useful first. A theme is active when any trigger appears.
THEMES: dict[str, tuple[frozenset[str], tuple[str, ...]]] = {
    "nature": (
        _wordset(
            "nature landscape mountain mountains forest tree trees lake river valley sky "
            "field meadow hill hills outdoor outdoors scenery scenic park wilderness "
            "waterfall sunset sunrise canyon desert island countryside"
        ),
        (
            "nature",
            "landscape",
            "outdoor",
            "scenic",
            "environment",
            "natural",
            "travel",
            "peaceful",
            "tranquil",
            "view",
            "wilderness",
            "season",
            "panorama",
            "scenery",
            "serene",
            "calm",
            "beauty",
        ),
    ),
    "sea": (
        _wordset(
            "ocean sea beach coast waves wave tropical surf shore bay harbor marine island seaside"
        ),
        (
            "sea",
            "ocean",
            "summer",
            "vacation",
            "coast",
            "blue",
            "travel",
            "holiday",
            "tropical",
            "relaxation",
            "horizon",
            "seascape",
            "shore",
            "paradise",
        ),
    ),
    "water": (
        _wordset("water lake river pond stream waterfall underwater reflection"),
        (
            "water",
            "reflection",
            "blue",
            "calm",
            "lake",
            "freshwater",
            "peaceful",
            "liquid",
            "clear",
            "nature",
        ),
    ),
    "plants": (
        _wordset(
            "flower flowers rose roses tulip tulips daisy orchid blossom bloom floral "
            "garden plant plants leaf leaves botanical petals bouquet sunflower lily "
            "spring"
        ),
        (
            "flower",
            "floral",
            "botanical",
            "bloom",
            "blossom",
            "spring",
            "garden",
            "plant",
            "petal",
            "fresh",
            "flora",
            "natural",
            "growth",
            "decoration",
        ),
    ),
    "food": (
        _wordset(
            "food fruit fruits apple apples orange banana berries strawberry bread cake "
            "pizza salad breakfast lunch dinner meal vegetable vegetables coffee tea "
            "dessert chocolate kitchen cooking soup pasta cheese tomato drink "
            "cup"
        ),
        (
            "food",
            "fresh",
            "healthy",
            "delicious",
            "organic",
            "nutrition",
            "meal",
            "tasty",
            "ingredient",
            "diet",
            "gourmet",
            "kitchen",
            "cooking",
            "eating",
            "freshness",
        ),
    ),
    "animals": (
        _wordset(
            "animal animals cat cats kitten dog dogs puppy bird birds horse fox bear "
            "lion tiger deer rabbit bunny owl wolf elephant fish butterfly pet pets "
            "wildlife cow sheep duck penguin panda monkey squirrel"
        ),
        (
            "animal",
            "wildlife",
            "cute",
            "pet",
            "mammal",
            "wild",
            "fur",
            "adorable",
            "fauna",
            "domestic",
            "portrait",
            "nature",
            "creature",
        ),
    ),
    "business": (
        _wordset(
            "business office corporate meeting team teamwork work finance money "
            "startup entrepreneur success career marketing strategy desk workplace "
            "manager"
        ),
        (
            "business",
            "office",
            "corporate",
            "professional",
            "success",
            "teamwork",
            "work",
            "strategy",
            "finance",
            "career",
            "workplace",
            "management",
            "planning",
            "growth",
        ),
    ),
    "technology": (
        _wordset(
            "technology tech digital computer laptop data network robot ai artificial "
            "futuristic circuit cyber science innovation internet software code "
            "smartphone virtual hologram"
        ),
        (
            "technology",
            "digital",
            "innovation",
            "futuristic",
            "modern",
            "data",
            "network",
            "science",
            "computer",
            "connection",
            "future",
            "electronic",
            "concept",
        ),
    ),
    "people": (
        _wordset(
            "people person man woman men women child children kid kids boy girl family "
            "couple friends portrait smiling smile senior baby adult student"
        ),
        (
            "people",
            "person",
            "lifestyle",
            "portrait",
            "human",
            "happy",
            "casual",
            "leisure",
            "together",
            "real",
            "emotion",
            "adult",
        ),
    ),
    "city": (
        _wordset(
            "city urban street building buildings skyline architecture downtown town "
            "village bridge road house home interior room"
        ),
        (
            "city",
            "urban",
            "architecture",
            "building",
            "travel",
            "street",
            "town",
            "tourism",
            "destination",
            "exterior",
            "structure",
            "landmark",
        ),
    ),
    "holiday": (
        _wordset(
            "christmas xmas halloween easter thanksgiving valentine valentines holiday "
            "holidays birthday party celebration festive new year hanukkah diwali "
            "wedding gift gifts"
        ),
        (
            "holiday",
            "celebration",
            "festive",
            "season",
            "decoration",
            "gift",
            "party",
            "tradition",
            "greeting",
            "card",
            "event",
            "seasonal",
            "joy",
        ),
    ),
    "fashion": (
        _wordset(
            "fashion shoes shoe sneakers sneaker boots dress shirt clothing clothes "
            "jacket bag handbag hat jewelry necklace ring watch sunglasses outfit "
            "apparel product accessory accessories"
        ),
        (
            "fashion",
            "style",
            "product",
            "clothing",
            "apparel",
            "accessory",
            "shopping",
            "retail",
            "trendy",
            "elegant",
            "casual",
            "object",
            "lifestyle",
        ),
    ),
    "sport": (
        _wordset(
            "sport sports running runner fitness gym yoga football soccer basketball "
            "tennis golf cycling bicycle bike swimming athlete workout exercise "
            "training marathon"
        ),
        (
            "sport",
            "fitness",
            "exercise",
            "active",
            "healthy",
            "training",
            "energy",
            "workout",
            "athletic",
            "recreation",
            "lifestyle",
            "health",
            "motion",
        ),
    ),
    "winter": (
        _wordset("winter snow snowy ice frost frozen cold arctic snowflake"),
        (
            "winter",
            "snow",
            "cold",
            "frost",
            "season",
            "ice",
            "white",
            "frozen",
            "december",
            "chilly",
        ),
    ),
    "space": (
        _wordset(
            "space galaxy star stars starry planet planets moon cosmos universe nebula "
            "astronaut night"
        ),
        (
            "space",
            "night",
            "sky",
            "astronomy",
            "universe",
            "cosmos",
            "galaxy",
            "star",
            "cosmic",
            "dark",
            "science",
            "infinity",
        ),
    ),
    "abstract": (
        _wordset(
            "abstract pattern texture geometric wallpaper gradient shapes seamless mosaic "
            "minimalist minimal banner fractal"
        ),
        (
            "abstract",
            "pattern",
            "texture",
            "background",
            "geometric",
            "shape",
            "modern",
            "wallpaper",
            "backdrop",
            "graphic",
            "creative",
            "design",
            "art",
            "decorative",
        ),
    ),
}

#: Always-true stock concepts, used last and only to reach the minimum keyword count.
GENERIC = (
    "generative ai",
    "ai generated",
    "design",
    "concept",
    "creative",
    "image",
    "art",
    "artwork",
    "digital art",
    "visual",
    "graphic",
    "style",
    "modern",
    "idea",
    "element",
    "composition",
    "contemporary",
    "aesthetic",
    "detail",
    "background",
    "artistic",
    "digital",
    "creativity",
    "imagination",
    "inspiration",
    "decoration",
    "decorative",
    "scene",
    "theme",
    "symbol",
    "subject",
    "motif",
    "view",
    "picture",
    "stock",
    "trendy",
    "original",
    "unique",
    "elegant",
    "pleasant",
    "simple",
    "clear",
    "fine",
    "color",
    "colour",
    "high quality",
    "wallpaper",
    "backdrop",
    "template",
    "layout",
    "presentation",
    "poster",
    "print",
)

#: Medium words: if the prompt names one, the title says it.
MEDIUMS = (
    ("watercolor", "Watercolor"),
    ("oil painting", "Oil Painting"),
    ("3d render", "3D Render"),
    ("vector", "Vector Illustration"),
    ("illustration", "Illustration"),
    ("sticker", "Sticker"),
    ("clipart", "Clipart"),
    ("cartoon", "Cartoon"),
    ("photograph", "Photo"),
    ("photo", "Photo"),
    ("pattern", "Pattern"),
    ("painting", "Painting"),
    ("drawing", "Drawing"),
)

#: Reference colours for naming the dominant colours of an image.
COLOR_NAMES: dict[str, tuple[int, int, int]] = {
    "red": (200, 40, 40),
    "orange": (240, 140, 30),
    "yellow": (240, 220, 50),
    "green": (60, 150, 60),
    "teal": (30, 140, 140),
    "blue": (40, 90, 200),
    "navy": (25, 35, 90),
    "purple": (120, 60, 160),
    "pink": (235, 130, 175),
    "brown": (120, 75, 40),
    "beige": (220, 200, 165),
    "black": (20, 20, 20),
    "white": (245, 245, 245),
    "gray": (128, 128, 128),
}

_WORD = re.compile(r"[a-z0-9][a-z0-9'&-]*")
_PREPOSITIONS = _wordset("on in at with near under over by next beside behind against")
_SMALL_WORDS = _wordset("a an the and or nor but of on in at by for to with from as vs")
_CLAUSE = re.compile(r"[,;:.!?\n()\[\]]+|\s+-{1,2}\s+|\s--\w+")


class LocalMetadata:
    """Offline `MetadataProvider`: stock metadata derived from the prompt and keyword."""

    name = "local"

    def __init__(self, ctx: ProviderContext) -> None:
        self.ctx = ctx

    def describe(self, request: MetadataRequest) -> ImageMetadata:
        """Title, description and keywords within the stock limits; deterministic."""
        settings = self.ctx.settings.metadata
        prompt, keyword = _prepare(request.prompt, request.keyword)
        if not prompt.strip() and not keyword.strip():
            raise BadRequest(
                "cannot describe an image without a prompt or keyword", service="local"
            )
        colors = dominant_colors(request.image.data)
        return ImageMetadata(
            title=make_title(prompt, keyword),
            description=make_description(prompt, keyword),
            keywords=make_keywords(
                prompt,
                keyword,
                colors,
                minimum=settings.min_keywords,
                maximum=settings.max_keywords,
            ),
        )


# ---------------------------------------------------------------------------------------------
# Text helpers


def _strip_parameters(prompt: str) -> str:
    """Drop Midjourney-style parameters (`--ar 16:9 --v 6.1`) from the end of a prompt."""
    return re.split(r"\s--[a-z]", prompt, maxsplit=1)[0]


def _prepare(prompt: str, keyword: str) -> tuple[str, str]:
    """Prompt and keyword without parameters and trademarks: what metadata may repeat."""
    return _remove_trademarks(_strip_parameters(prompt)), _remove_trademarks(keyword)


def _trademark_pattern(name: str) -> re.Pattern[str]:
    return re.compile(
        r"(?<![\w-])" + re.escape(name).replace(r"\ ", r"[\s-]+") + r"(?![\w-])", re.IGNORECASE
    )


_TRADEMARK_PATTERNS = [
    _trademark_pattern(name) for name in sorted(TRADEMARKS, key=len, reverse=True)
]


def _remove_trademarks(text: str) -> str:
    """The text without brand names (ambiguous ones only in their brand's context)."""
    # Context is read before anything is removed: "Apple iPhone" loses "iphone" first.
    words = set(_WORD.findall(text.lower()))
    for pattern in _TRADEMARK_PATTERNS:
        text = pattern.sub(" ", text)
    for name, context in AMBIGUOUS_TRADEMARKS.items():
        if name in words and words & context:
            text = _trademark_pattern(name).sub(" ", text)
    # Tidy the gaps a removed name leaves ("a  sneaker", " , ").
    text = re.sub(r"\s+([,.;:])", r"\1", text)
    text = re.sub(r"([,;:])(\s*[,;:])+", r"\1", text)
    return re.sub(r"\s{2,}", " ", text).strip(" ,;:")


def _clauses(text: str) -> list[str]:
    return [c.strip() for c in _CLAUSE.split(text) if c.strip()]


def _is_negated(clause: str) -> bool:
    first = _WORD.findall(clause.lower())[:1]
    return bool(first) and first[0] in NEGATIONS


def _content_words(text: str) -> list[str]:
    """Lowercase words worth a keyword: no stopwords, boilerplate, numbers or negated words."""
    out = []
    for clause in _clauses(text):
        words = _WORD.findall(clause.lower())
        negated = False
        for word in words:
            if word in NEGATIONS:
                negated = True  # "no text or logos": everything after it in the clause
                continue
            if negated:
                continue
            word = word.strip("'-&")
            if word.endswith("'s"):
                word = word[:-2]
            if (
                len(word) < 2
                or word in STOPWORDS
                or word in BOILERPLATE
                or word in FILLER
                or not any(ch.isalpha() for ch in word)
            ):
                continue
            out.append(word)
    return out


def _title_case(text: str) -> str:
    words = text.split()
    out = []
    for i, word in enumerate(words):
        lower = word.lower()
        if 0 < i < len(words) - 1 and lower in _SMALL_WORDS:
            out.append(lower)
        elif any(ch.isupper() for ch in word[1:]) or any(ch.isdigit() for ch in word):
            out.append(word[0].upper() + word[1:])  # keep "3D", "iOS"-like spellings
        else:
            out.append(word[:1].upper() + word[1:].lower())
    return " ".join(out)


def _cut(text: str, limit: int) -> str:
    """`text` cut at a word boundary to at most `limit` characters."""
    if len(text) <= limit:
        return text
    cut = text[: limit + 1].rsplit(" ", 1)[0]
    return cut[:limit].rstrip(" ,;:-")


def _trim_dangling(words: list[str]) -> list[str]:
    """Drop trailing small words so a cut title does not end in 'of the'."""
    while words and words[-1].lower() in _SMALL_WORDS | STOPWORDS:
        words = words[:-1]
    return words


# ---------------------------------------------------------------------------------------------
# Title, description, keywords


def _subject_clause(prompt: str, keyword: str) -> str:
    """The prompt's first descriptive clause, or the keyword when the prompt has none."""
    for clause in _clauses(prompt):
        if _is_negated(clause) or not _content_words(clause):
            continue
        return clause
    return keyword.replace(",", " ")


def make_title(prompt: str, keyword: str) -> str:
    """Title Case, no commas, at most `TITLE_MAX` characters, naming the subject first."""
    prompt, keyword = _prepare(prompt, keyword)
    clause = _subject_clause(prompt, keyword)
    words = [w for w in re.split(r"\s+", clause.replace(",", " ")) if w]
    subject = _content_words(keyword)
    if subject and not any(w in clause.lower() for w in subject):
        # The prompt's first clause does not mention the keyword: lead with the keyword.
        words = keyword.replace(",", " ").split() + words
    words = [w for w in words if w.lower().strip(".'\"") not in BOILERPLATE] or words
    lowered, said = prompt.lower(), clause.lower()
    if len(words) <= 4:
        # A bare subject ("Red Apple") says little: add the medium and the plain background.
        for needle, label in MEDIUMS:
            if needle in lowered and label.lower() not in said:
                words += label.split()
                break
        if "isolated" in lowered and "isolated" not in said:
            words.append("Isolated")
        if "white background" in lowered and "background" not in said:
            words += ["on", "White", "Background"]
    title = _title_case(" ".join(words)).replace(",", "")
    title = re.sub(r"[\"“”]", "", title)
    if len(title) > TITLE_MAX:
        title = " ".join(_trim_dangling(_cut(title, TITLE_MAX).split()))
    return title.strip() or _title_case(keyword.replace(",", " "))[:TITLE_MAX].strip()


def make_description(prompt: str, keyword: str) -> str:
    """One or two sentences, at most `DESCRIPTION_MAX` characters, from the prompt's clauses."""
    prompt, keyword = _prepare(prompt, keyword)
    clauses = [c for c in _clauses(prompt) if not _is_negated(c)]
    kept = []
    for clause in clauses:
        words = _WORD.findall(clause.lower())
        if words and all(w in BOILERPLATE or w in STOPWORDS for w in words):
            continue  # "high detail", "8k": not a description of the picture
        kept.append(clause)
    if not kept:
        kept = [keyword.strip()] if keyword.strip() else ["Image"]
    subject_words = _content_words(keyword)
    if subject_words and not any(w in " ".join(kept).lower() for w in subject_words):
        # The subject leads; "on a desk" continues it without a comma.
        lead = keyword.strip().replace(",", "")
        starts = _WORD.findall(kept[0].lower())[:1]
        if starts and starts[0] in _PREPOSITIONS:
            kept[0] = f"{lead} {kept[0]}"
        else:
            kept.insert(0, lead)
    first = kept[0][:1].upper() + kept[0][1:]
    sentence = first
    for clause in kept[1:]:
        candidate = f"{sentence}, {clause}"
        if len(candidate) + 1 > DESCRIPTION_MAX:
            break
        sentence = candidate
    if len(sentence) + 1 > DESCRIPTION_MAX:
        sentence = " ".join(_trim_dangling(_cut(sentence, DESCRIPTION_MAX - 1).split()))
    return sentence.rstrip(" ,;:") + "."


def _unique_add(out: list[str], items: Iterable[str], limit: int, blocked: set[str]) -> None:
    """Append new keywords (dropping plural twins like 'apples' of 'apple') up to `limit`."""
    for item in items:
        if len(out) >= limit:
            return
        item = " ".join(item.lower().split())
        if not item or item in blocked or item in out:
            continue
        twins = {
            item + "s",
            item + "es",
            item[:-1] if item.endswith("s") else "",
            item[:-2] if item.endswith("es") else "",
        }
        if twins & set(out):
            continue
        out.append(item)


def make_keywords(
    prompt: str, keyword: str, colors: Iterable[str] = (), *, minimum: int = 25, maximum: int = 49
) -> list[str]:
    """`minimum`..`maximum` unique lowercase keywords, the subject's words first."""
    prompt, keyword = _prepare(prompt, keyword)
    blocked = set(TRADEMARKS)
    out: list[str] = []
    # 1. The subject: the keyword's phrases (CSV values are comma-joined), then their words.
    phrases = [p.strip().lower() for p in keyword.split(",") if p.strip()]
    subject_words = _content_words(keyword)
    _unique_add(out, [p for p in phrases if 1 < len(p.split()) <= 3], maximum, blocked)
    _unique_add(out, subject_words, maximum, blocked)
    # 2. The prompt's own words, in order.
    prompt_words = _content_words(prompt)
    _unique_add(out, prompt_words, maximum, blocked)
    # 3. Named colours, then the dominant colours of the pixels.
    _unique_add(out, [w for w in prompt_words if w in COLOR_NAMES], maximum, blocked)
    _unique_add(out, colors, maximum, blocked)
    # 4. Concepts related to the themes the subject and prompt name (subject's themes first).
    words = subject_words + prompt_words
    active = []
    for word in words:
        for theme, (triggers, _related) in THEMES.items():
            if word in triggers and theme not in active:
                active.append(theme)
    related = [THEMES[t][1] for t in active]
    # Interleave the themes so two themes both get their best concepts in.
    for i in range(max((len(r) for r in related), default=0)):
        _unique_add(out, [r[i] for r in related if i < len(r)], maximum, blocked)
    # 5. Generic stock concepts, only as many as needed to reach the minimum.
    if len(out) < minimum:
        _unique_add(out, GENERIC, minimum, blocked)
    return out[:maximum]


# ---------------------------------------------------------------------------------------------
# Colours


def dominant_colors(data: bytes, count: int = 2) -> list[str]:
    """Names of the image's main colours, most frequent first; [] if it cannot be read."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.draft("RGB", (64, 64))
            image.thumbnail((48, 48))
            rgba = image.convert("RGBA")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return []
    arr = np.asarray(rgba, dtype=np.float32).reshape(-1, 4)
    arr = arr[arr[:, 3] > 128][:, :3]  # transparent pixels have no colour to name
    if arr.size == 0:
        return []
    names = list(COLOR_NAMES)
    refs = np.asarray([COLOR_NAMES[n] for n in names], dtype=np.float32)
    nearest = ((arr[:, None, :] - refs[None, :, :]) ** 2).sum(axis=2).argmin(axis=1)
    counts = np.bincount(nearest, minlength=len(names))
    order = np.argsort(-counts, kind="stable")
    # Only colours that cover a real share of the picture are worth a keyword.
    return [names[i] for i in order[:count] if counts[i] >= 0.12 * len(arr)]
