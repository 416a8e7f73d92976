"""The offline metadata writer: title, description and keywords a stock buyer searches for.

Built from what is known for sure: the keyword (or CSV row) names the subject, the image's
measured facts (`image_facts`: colours, orientation, plain background, flat artwork) tell
the rest. The prompt contributes only its medium and style words and, last, its content
words: a template's instructions ("create", "visually", "midjourney"...) never show. Stock
limits (docs/SPEC.md §3): a Title Case title of at most 70 characters without commas, a description
of at most 200 characters, `metadata.min_keywords`..`max_keywords` unique lowercase keywords,
subject first, generic filler last and at most a third. Trademarks never appear. Word lists
live in `genfactory/data/metadata.json`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from genfactory.errors import BadRequest
from genfactory.providers import local_detect
from genfactory.providers.base import ImageMetadata, MetadataRequest
from genfactory.providers.image_facts import ImageFacts, measure
from genfactory.providers.registry import ProviderContext

TITLE_MAX = 70
DESCRIPTION_MAX = 200

_DATA: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parent.parent / "data" / "metadata.json").read_text("utf-8")
)
STOPWORDS = frozenset(_DATA["stopwords"])
BOILERPLATE = frozenset(_DATA["boilerplate"])
FILLER = frozenset(_DATA["filler_words"])
INSTRUCTION_WORDS = frozenset(_DATA["instruction_words"])
NEGATIONS = frozenset(_DATA["negations"])
TRADEMARKS: tuple[str, ...] = tuple(_DATA["trademarks"])
AMBIGUOUS_TRADEMARKS = {k: frozenset(v) for k, v in _DATA["ambiguous_trademarks"].items()}
GENERIC: tuple[str, ...] = tuple(_DATA["generic"])
COLOR_NAMES: dict[str, tuple[int, int, int]] = {
    k: (v[0], v[1], v[2]) for k, v in _DATA["color_names"].items()
}
CATEGORIES: dict[str, list[str]] = _DATA["categories"]
SUBJECTS: dict[str, dict[str, list[str]]] = _DATA["subjects"]
CONTRADICTIONS: dict[str, list[str]] = _DATA["contradictions"]
THEMES: dict[str, dict[str, list[str]]] = _DATA["themes"]
MEDIUMS: dict[str, str] = _DATA["mediums"]
STYLES: tuple[str, ...] = tuple(_DATA["styles"])
_PHOTO_WORDS = frozenset(_DATA["photo_words"])
#: Words a title keeps in lower case (except first and last).
_SMALL_WORDS = frozenset(_DATA["title_small_words"])

_WORD = re.compile(r"[a-z0-9][a-z0-9'&-]*")
_CLAUSE = re.compile(r"[,;:.!?\n()\[\]]+|\s+-{1,2}\s+|\s--\w+")


class LocalMetadata:
    """Offline `MetadataProvider`: stock metadata from the keyword and the measured image."""

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
        facts = measure(request.image.data, COLOR_NAMES)
        qc = self.ctx.settings.qc
        if facts is not None and qc.text_check and qc.text_mode == "report":
            # A typography job keeps its lettering: the text is a fact of the picture.
            found = self.ctx.run_heavy(local_detect.inspect, request.image.data, True, False)
            lines = local_detect.visible_text(
                found["text"], min_height=qc.text_min_height, min_confidence=qc.text_min_confidence
            )
            facts = replace(facts, text=[line.text for line in lines])
        return ImageMetadata(
            title=make_title(prompt, keyword, facts),
            description=make_description(prompt, keyword, facts),
            keywords=make_keywords(
                prompt,
                keyword,
                facts,
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
    text = re.sub(r"\s+([,.;:])", r"\1", text)
    text = re.sub(r"([,;:])(\s*[,;:])+", r"\1", text)
    return re.sub(r"\s{2,}", " ", text).strip(" ,;:")


def _content_words(text: str) -> list[str]:
    """Lowercase words worth a keyword: no stopwords, boilerplate, instructions, numbers or
    negated words ("no text or logos": everything after the negation in its clause)."""
    out = []
    for clause in (c for c in _CLAUSE.split(text) if c.strip()):
        negated = False
        for word in _WORD.findall(clause.lower()):
            if word in NEGATIONS:
                negated = True
                continue
            word = word.strip("'-&")
            if word.endswith("'s"):
                word = word[:-2]
            if (
                negated
                or len(word) < 2
                or word in STOPWORDS
                or word in BOILERPLATE
                or word in FILLER
                or word in INSTRUCTION_WORDS
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


def _subject_phrases(keyword: str) -> list[str]:
    """The keyword's comma-separated parts (CSV values), each without instruction words."""
    phrases: list[str] = []
    for part in keyword.split(","):
        words = [w for w in part.split() if w.lower().strip(".'\"") not in INSTRUCTION_WORDS]
        phrase = " ".join(words).strip(" .;:'\"")
        if phrase and phrase.lower() not in (p.lower() for p in phrases):
            phrases.append(phrase)
    return phrases


def _medium(prompt: str, facts: ImageFacts | None) -> str | None:
    """The medium the prompt names ("Watercolor", "Photo"...), never "Photo" for flat art."""
    lowered = prompt.lower()
    for needle, label in MEDIUMS.items():
        if re.search(rf"\b{re.escape(needle)}", lowered):
            if label == "Photo" and facts is not None and facts.flat:
                continue
            return label
    return None


def _composition(facts: ImageFacts | None) -> str:
    """The layout phrase of a title: plain background, or the frame's shape."""
    if facts is None:
        return ""
    if facts.background == "transparent":
        return "Isolated on Transparent Background"
    if facts.background == "white":
        return "Isolated on White Background"
    if facts.background:
        return f"on Plain {facts.background.title()} Background"
    if facts.wide:
        return "Panoramic Banner"
    return "Vertical Composition" if facts.orientation == "vertical" else ""


def _tones(facts: ImageFacts | None) -> str:
    """'in Orange and Green Tones': the main colours other than a plain background's."""
    if facts is None:
        return ""
    colors = [c for c in facts.colors if c != facts.background]
    if not colors:
        return ""
    return "in " + " and ".join(c.title() for c in colors[:2]) + " Tones"


# ---------------------------------------------------------------------------------------------
# Title, description, keywords


def make_title(prompt: str, keyword: str, facts: ImageFacts | None = None) -> str:
    """Subject (from the keyword), medium, composition and tones: at most `TITLE_MAX`
    characters, Title Case, no commas. Images that differ in their facts get other titles."""
    phrases = _subject_phrases(keyword) or [" ".join(_content_words(prompt)[:4]) or "Image"]
    subject = _title_case(" ".join(phrases[:3]))
    medium = _medium(prompt, facts)
    head = subject
    if medium and medium.lower() not in subject.lower():
        head = f"{subject} {medium}"
    composition, tones = _composition(facts), _tones(facts)
    one_tone = re.sub(r" and \w+", "", tones)
    # Most telling first; the first that fits wins (the tones keep similar images apart).
    candidates = [
        [head, composition, tones],
        [head, composition, one_tone],
        [head, tones],
        [head, composition],
        [head, one_tone],
        [head],
    ]
    parts = next((c for c in candidates if len(" ".join(p for p in c if p)) <= TITLE_MAX), [head])
    title = re.sub(r"[\"“”,]", "", " ".join(p for p in parts if p))
    title = re.sub(r"\s{2,}", " ", title).strip()
    if len(title) > TITLE_MAX:
        words = title[: TITLE_MAX + 1].rsplit(" ", 1)[0].split()
        while words and words[-1].lower() in _SMALL_WORDS:
            words.pop()
        title = " ".join(words)[:TITLE_MAX]
    return title


def make_description(prompt: str, keyword: str, facts: ImageFacts | None = None) -> str:
    """One sentence of at most `DESCRIPTION_MAX` characters: subject, medium, layout, colours."""
    phrases = _subject_phrases(keyword) or ["Image"]
    subject = phrases[0]
    details = ", ".join(phrases[1:3])
    medium = _medium(prompt, facts)
    sentence = subject[:1].upper() + subject[1:]
    if medium:
        sentence += f" {medium.lower()}" if medium.lower() not in subject.lower() else ""
    if details:
        sentence += f", {details}"
    if facts is not None:
        layout = _composition(facts).lower()
        if layout.startswith(("isolated", "on ")):
            sentence += f" {layout}"
        tones = _tones(facts).lower()
        if tones:
            sentence += f", {tones}"
        sentence += f"; {facts.orientation} format"
        if facts.background:
            sentence += " with copy space"
    if len(sentence) + 1 > DESCRIPTION_MAX:
        sentence = sentence[: DESCRIPTION_MAX - 1].rsplit(" ", 1)[0].rstrip(" ,;:")
    return sentence.rstrip(" ,;:") + "."


def _unique_add(out: list[str], items: Iterable[str], limit: int, blocked: set[str]) -> None:
    """Append new keywords (dropping plural twins like 'apples' of 'apple') up to `limit`."""
    for item in items:
        if len(out) >= limit:
            return
        item = " ".join(item.lower().split())
        if not item or item in blocked or item in out:
            continue
        twins = {item + "s", item + "es", item[:-1] if item.endswith("s") else ""}
        if twins & set(out):
            continue
        out.append(item)


def _singular(word: str) -> str:
    if word in SUBJECTS or not word.endswith("s"):
        return word
    for cut in (word[:-1], word[:-2]):
        if cut in SUBJECTS:
            return cut
    return word


def _fact_keywords(facts: ImageFacts | None) -> list[str]:
    """Keywords the pixels prove: colours, orientation, background, shape."""
    if facts is None:
        return []
    words = list(facts.colors)
    if facts.text:
        words += ["text", "lettering", "typography"]
        words += [w for line in facts.text for w in _content_words(line)]
    if facts.background:
        words += ["isolated", "plain background", "copy space"]
        if facts.background in ("white", "transparent"):
            words += [f"{facts.background} background", "cutout"]
    words.append(facts.orientation)
    if facts.wide:
        words += ["panorama", "banner"]
    if facts.flat:
        words += ["flat", "flat design"]
    return words


def make_keywords(
    prompt: str,
    keyword: str,
    facts: ImageFacts | None = None,
    *,
    minimum: int = 25,
    maximum: int = 49,
) -> list[str]:
    """`minimum`..`maximum` unique lowercase keywords: the subject, its relatives, the
    measured facts, the prompt's medium and words, then generic filler (at most a third,
    more only when nothing else is known)."""
    blocked = set(TRADEMARKS) | set(INSTRUCTION_WORDS)
    out: list[str] = []
    phrases = [p.lower() for p in _subject_phrases(keyword)]
    subject_words = [_singular(w) for w in _content_words(keyword)]
    prompt_words = [_singular(w) for w in _content_words(prompt)]
    known = [w for w in subject_words if w in SUBJECTS]
    known = known or [w for w in prompt_words if w in SUBJECTS]
    categories: list[str] = []
    for word in known:
        categories += [c for c in SUBJECTS[word]["categories"] if c not in categories]
    for category in categories:
        blocked |= set(CONTRADICTIONS.get(category, ()))
    if facts is not None and facts.flat:
        blocked |= _PHOTO_WORDS
    if facts is not None and not facts.wide:
        blocked |= {"panorama", "panoramic", "banner"}
    if facts is not None and facts.orientation != "square":
        blocked.add("square")
    # 1. The subject: the keyword's phrases (CSV values), then their words.
    _unique_add(out, [p for p in phrases if 1 < len(p.split()) <= 3], maximum, blocked)
    _unique_add(out, subject_words, maximum, blocked)
    # 2. Close relatives: the subject's own, then its categories' (interleaved).
    _unique_add(out, [r for w in known for r in SUBJECTS[w]["related"]], maximum, blocked)
    lists = [CATEGORIES[c] for c in categories]
    for i in range(max((len(r) for r in lists), default=0)):
        _unique_add(out, [r[i] for r in lists if i < len(r)], maximum, blocked)
    # 3. What the pixels show.
    _unique_add(out, _fact_keywords(facts), maximum, blocked)
    # 4. The prompt's medium and style words, then the themes the keyword names.
    lowered = prompt.lower()
    styles = [s for s in STYLES if re.search(rf"\b{re.escape(s)}\b", lowered)]
    _unique_add(out, styles, maximum, blocked)
    medium = _medium(prompt, facts)
    if medium:
        _unique_add(out, [medium.lower()], maximum, blocked)
    related = [
        theme["related"] for theme in THEMES.values() if set(subject_words) & set(theme["triggers"])
    ]
    for i in range(max((len(r) for r in related), default=0)):
        _unique_add(out, [r[i] for r in related if i < len(r)], maximum, blocked)
    # 5. The prompt's own content words (instructions and boilerplate already removed).
    _unique_add(out, prompt_words, maximum, blocked)
    # 6. Generic filler: at most a third of the result; beyond that only to reach the minimum.
    specific = len(out)
    cap = specific // 2  # filler / total <= 1/3  <=>  filler <= specific / 2
    _unique_add(out, GENERIC, min(minimum, specific + cap), blocked)
    if len(out) < minimum:
        _unique_add(out, GENERIC, minimum, blocked)
    return out[:maximum]
