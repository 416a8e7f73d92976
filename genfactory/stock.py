"""Stock sites' metadata rules, in one place (pure: no I/O beyond reading the shipped word list).

Every provider's metadata step and every export applies these rules, so a title, a keyword list
or a file name is judged the same way wherever it is made. Each function that changes something
also says what it changed, in words a seller understands: nothing is cut silently.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Iterable
from functools import cache
from importlib import resources
from pathlib import PurePath


@dataclasses.dataclass(frozen=True)
class SiteRules:
    """One stock site's limits."""

    name: str
    title_max: int
    keywords_max: int
    file_name_max: int
    #: Whether titles may hold commas (no site we export to takes them: one title fits all).
    title_commas: bool = False
    description_max: int = 200

    @classmethod
    def strictest(cls, name: str, sites: Iterable[SiteRules]) -> SiteRules:
        """The rules that satisfy every one of `sites`: the smallest of each limit (commas
        only where every site takes them)."""
        sites = tuple(sites)
        limits = {
            field.name: min(getattr(site, field.name) for site in sites)
            for field in dataclasses.fields(cls)
            if field.name != "name"
        }
        return cls(name, **limits)


#: Adobe Stock contributor limits: title ≤ 70 characters without commas, ≤ 49 keywords
#: (most important first), file names ≤ 30 characters in the upload CSV.
ADOBE = SiteRules("Adobe Stock", title_max=70, keywords_max=49, file_name_max=30)
#: Freepik: title ≤ 100 characters, ≤ 50 keywords (see `exports/stock_csv.py` for the source).
#: Titles keep no commas either, so one title fits every site.
FREEPIK = SiteRules("Freepik", title_max=100, keywords_max=50, file_name_max=100)
#: The rules metadata is made to at generation time: the strictest of the sites we export to.
STRICTEST = SiteRules.strictest("every stock site", (ADOBE, FREEPIK))


@dataclasses.dataclass(frozen=True)
class StockMetadata:
    title: str
    description: str
    keywords: tuple[str, ...]

    def as_dict(self) -> dict[str, object]:
        return {
            "title": self.title,
            "description": self.description,
            "keywords": list(self.keywords),
        }


# ---------------------------------------------------------------------------------------------
# Trademarks


_TOKEN = re.compile(r"[\w']+")


def _tokens(text: str) -> tuple[str, ...]:
    # Words only: "Coca-Cola", "coca cola" and "COCA COLA" are the same name.
    return tuple(_TOKEN.findall(text.lower()))


@dataclasses.dataclass(frozen=True)
class _Trademarks:
    #: Each name as its words; matched as whole words, in order.
    names: frozenset[tuple[str, ...]]
    longest: int
    #: Ordinary words that are brands only next to one of their brand's words.
    ambiguous: dict[str, frozenset[str]]


@cache
def _trademarks() -> _Trademarks:
    text = resources.files("genfactory").joinpath("data/trademarks.txt").read_text("utf-8")
    names: set[tuple[str, ...]] = set()
    ambiguous: dict[str, frozenset[str]] = {}
    for raw in text.splitlines():
        line = raw.strip().lower()
        if not line or line.startswith("#"):
            continue
        if ":" in line:
            name, context = line.split(":", 1)
            ambiguous[name.strip()] = frozenset(context.split())
        elif _tokens(line):
            names.add(_tokens(line))
    return _Trademarks(frozenset(names), max(map(len, names), default=1), ambiguous)


def trademark_in(text: str, context: Iterable[str] = ()) -> str | None:
    """The first trademark named in `text`, or None.

    An ordinary word that is also a brand ("apple") counts only next to a word of that brand,
    in `text` itself or in `context` (e.g. the image's other keywords).
    """
    marks = _trademarks()
    words = _tokens(text)
    for size in range(1, min(marks.longest, len(words)) + 1):
        for start in range(len(words) - size + 1):
            if words[start : start + size] in marks.names:
                return " ".join(words[start : start + size])
    for word in words:
        brand_words = marks.ambiguous.get(word)
        # The context is read only for the rare text that names an ambiguous brand.
        if brand_words is not None:
            near = set(words) | {w for item in context for w in _tokens(item)}
            if near & brand_words:
                return word
    return None


# ---------------------------------------------------------------------------------------------
# Titles, descriptions, keywords


def cut_text(text: str, limit: int) -> str:
    """At most `limit` characters, cut at a word boundary when there is one."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit + 1].rsplit(" ", 1)[0]
    return (cut if len(cut) >= limit // 2 else text[:limit]).rstrip(" .,;:-")


def _clean_title(title: str, rules: SiteRules, changes: list[str]) -> str:
    text = " ".join(str(title).split()).strip().strip('"').rstrip(".")
    if not rules.title_commas and "," in text:
        text = " ".join(text.replace(",", " ").split())
        changes.append("title: commas removed")
    if len(text) > rules.title_max:
        before = len(text)
        text = cut_text(text, rules.title_max)
        changes.append(f"title cut from {before} to {len(text)} characters")
    return text


def split_keywords(keywords: Iterable[str] | str) -> list[str]:
    """Lowercase keywords, one per item: comma lists split, '#' and spaces tidied, empties
    dropped. Order kept (most important first); duplicates still in."""
    items = [keywords] if isinstance(keywords, str) else list(keywords)
    out: list[str] = []
    for item in items:
        for part in str(item).split(","):
            word = " ".join(part.strip().lstrip("#").lower().split())
            if word:
                out.append(word)
    return out


def _clean_keywords(
    keywords: Iterable[str] | str, rules: SiteRules, changes: list[str]
) -> list[str]:
    words = split_keywords(keywords)
    unique = list(dict.fromkeys(words))
    if len(unique) < len(words):
        changes.append(f"keywords: {len(words) - len(unique)} duplicate(s) merged")
    kept: list[str] = []
    marks: list[str] = []
    for word in unique:
        if trademark_in(word, context=unique):
            marks.append(word)
        else:
            kept.append(word)
    if marks:
        changes.append(f"keywords dropped as trademarks: {', '.join(marks)}")
    if len(kept) > rules.keywords_max:
        dropped = kept[rules.keywords_max :]
        kept = kept[: rules.keywords_max]
        changes.append(
            f"keywords: {len(dropped)} beyond {rules.keywords_max} dropped "
            f"({', '.join(dropped[:5])}{', ...' if len(dropped) > 5 else ''})"
        )
    return kept


def normalize_metadata(
    title: str,
    description: str,
    keywords: Iterable[str] | str,
    rules: SiteRules = STRICTEST,
) -> tuple[StockMetadata, list[str]]:
    """Metadata every stock site in `rules` accepts, and the changes that took (empty: none).

    Title without commas, cut at a word to the limit; description cut to its limit; keywords
    lowercase, unique, trademark-free, the most important (first) kept up to the limit.
    """
    changes: list[str] = []
    clean_title = _clean_title(title, rules, changes)
    clean_description = " ".join(str(description).split()).strip().strip('"')
    if len(clean_description) > rules.description_max:
        before = len(clean_description)
        clean_description = cut_text(clean_description, rules.description_max)
        changes.append(f"description cut from {before} to {len(clean_description)} characters")
    clean_keywords = _clean_keywords(keywords, rules, changes)
    return StockMetadata(clean_title, clean_description, tuple(clean_keywords)), changes


# ---------------------------------------------------------------------------------------------
# File names


def _slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", "_", ascii_text.lower()).strip("_")


class StockNamer:
    """Short, unique upload names (≤ `limit` characters, extension included).

    Names are ASCII, lowercase, `_`-separated; a name already given gets `_2`, `_3`... before
    the extension. One namer per export keeps names unique across all its files.
    """

    def __init__(self, limit: int = ADOBE.file_name_max) -> None:
        self.limit = limit
        self._taken: set[str] = set()

    def name(self, original: str) -> tuple[str, list[str]]:
        """(stock name, changes) for the file `original` (a path or a name)."""
        path = PurePath(original)
        suffix = path.suffix.lower()
        if suffix == ".jpeg":
            suffix = ".jpg"
        stem = _slug(path.stem) or "image"
        room = self.limit - len(suffix)
        base = stem[:room].rstrip("_") or "image"
        candidate, number = base + suffix, 1
        while candidate.lower() in self._taken:
            number += 1
            tail = f"_{number}"
            candidate = base[: room - len(tail)].rstrip("_") + tail + suffix
        self._taken.add(candidate.lower())
        changes = []
        if candidate != path.name:
            reason = "shortened" if len(path.name) > self.limit else "renamed"
            changes.append(f"file name {reason}: {path.name} -> {candidate}")
        return candidate, changes
