"""What every export reads: a job, its images, readable settings, and the changes made.

Everything that leaves through an export passes `safe()`: registered secrets are redacted and
settings whose name says "key", "secret", "token" or "password" are never listed.
"""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from PIL import Image

from genfactory import stock
from genfactory.logs import redact, register_secrets
from genfactory.statuses import ImageStatus
from genfactory.storage import repository

#: Settings never shown, whatever the snapshot holds (it should hold none of them).
SECRET_WORDS = ("key", "secret", "token", "password", "authorization")

#: Readable names of the settings sections.
SECTION_LABELS = {
    "job": "Job",
    "prompts": "Prompts",
    "generation": "Generation",
    "providers": "Providers",
    "processing": "Processing",
    "qc": "Quality check",
    "metadata": "Metadata",
    "openai": "OpenAI",
    "piapi": "PiAPI",
    "runware": "Runware",
    "sdwebui": "SD WebUI",
    "removebg": "remove.bg",
    "concurrency": "Concurrency",
}
#: Words kept in capitals (or their brand spelling) in labels.
_WORD_LABELS = {"url": "URL", "qc": "QC", "jpg": "JPG", "png": "PNG", "ai": "AI", "id": "ID"}


def register_environment_secrets() -> None:
    """Register every API key in the environment with the redaction, before anything is
    written: an export never depends on the job having registered them."""
    from genfactory.config import Credentials

    register_secrets(Credentials.from_env(os.environ).secret_values())


def safe(value: Any) -> Any:
    """A cell value with every registered secret redacted."""
    return redact(value) if isinstance(value, str) else value


def label(dotted: str) -> str:
    """`processing.jpg_quality` -> `Processing › JPG quality`."""
    section, _, name = dotted.partition(".")
    words = [_WORD_LABELS.get(w, w) for w in name.split("_")]
    if words and words[0] == words[0].lower():
        words[0] = words[0].capitalize()
    return f"{SECTION_LABELS.get(section, section.capitalize())} › {' '.join(words)}"


def _is_secret_name(name: str) -> bool:
    lowered = name.lower()
    # "keywords_file", "max_keywords" are settings, not keys.
    parts = lowered.replace("-", "_").split("_")
    return any(word in parts for word in SECRET_WORDS) or "api_key" in lowered


def settings_rows(snapshot: dict[str, Any]) -> list[tuple[str, str | int | float]]:
    """(readable label, value) for every setting in a snapshot, secrets left out."""
    return [(readable, value) for _dotted, readable, value in settings_items(snapshot)]


def settings_items(snapshot: dict[str, Any]) -> list[tuple[str, str, str | int | float]]:
    """(dotted name, readable label, value) for every setting, secrets left out."""
    rows: list[tuple[str, str, str | int | float]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                if not _is_secret_name(str(key)):
                    walk(f"{prefix}.{key}" if prefix else str(key), sub)
            return
        shown: str | int | float
        if isinstance(value, list):
            shown = ", ".join(str(v) for v in value)
        elif value is None:
            shown = ""
        elif isinstance(value, int | float) and not isinstance(value, bool):
            # Numbers stay numbers: Excel would flag "number stored as text".
            shown = value
        else:
            shown = str(value)
        readable = label(prefix) if "." in prefix else prefix
        rows.append((prefix, readable, safe(shown)))

    walk("", snapshot)
    return rows


def usage_rows(usage: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(service, counters, cost) per service; cost only when the usage dict has one."""
    rows = []
    for service, counters in sorted((usage or {}).items()):
        if not isinstance(counters, dict):
            continue
        parts = [
            f"{name} {value:g}" if isinstance(value, int | float) else f"{name} {value}"
            for name, value in sorted(counters.items())
            if name != "cost"
        ]
        cost = counters.get("cost")
        rows.append((service, ", ".join(parts), "" if cost is None else f"{cost}"))
    return rows


# ---------------------------------------------------------------------------------------------
# Images


@dataclasses.dataclass(frozen=True)
class ExportImage:
    """One image row as exports show it."""

    record: repository.ImageRecord
    file_name: str
    path: str | None
    title: str
    description: str
    keywords: tuple[str, ...]

    @property
    def status(self) -> str:
        return str(self.record.status)

    @property
    def approved(self) -> bool:
        return self.record.status == ImageStatus.APPROVED

    @property
    def reason(self) -> str:
        return self.record.qc_reason or self.record.error or ""

    @property
    def created(self) -> datetime:
        return self.record.created_at


def export_image(record: repository.ImageRecord) -> ExportImage:
    path = record.final_image_path or record.temp_image_path
    meta = record.image_metadata or {}
    keywords = meta.get("keywords") or []
    return ExportImage(
        record=record,
        file_name=Path(path).name if path else "",
        path=path,
        title=str(meta.get("title") or ""),
        description=str(meta.get("description") or ""),
        keywords=tuple(str(k) for k in keywords) if isinstance(keywords, list) else (),
    )


def job_images(execution_id: int) -> list[ExportImage]:
    """Every image of a job (the workbook and the report show them all)."""
    return [export_image(r) for r in repository.list_images(execution_id=execution_id)]


def approved_images(execution_id: int) -> Iterator[ExportImage]:
    """The approved images of a job, read from the store in batches."""
    for record in repository.iter_images(execution_id, status=ImageStatus.APPROVED):
        yield export_image(record)


# ---------------------------------------------------------------------------------------------
# Upload names and the changes they need


@dataclasses.dataclass
class StockEntry:
    """An approved image ready for upload: its stock name, stock metadata, what changed."""

    image: ExportImage
    name: str
    metadata: stock.StockMetadata
    changes: list[str]


def stock_entries(
    images: Iterable[ExportImage], rules: stock.SiteRules, namer: stock.StockNamer | None = None
) -> Iterator[StockEntry]:
    """Approved images with a file on disk, named and normalised for `rules`."""
    namer = namer or stock.StockNamer()
    for image in images:
        if not image.approved or not image.path:
            continue
        name, name_changes = namer.name(image.path)
        metadata, changes = stock.normalize_metadata(
            image.title, image.description, image.keywords, rules
        )
        yield StockEntry(image, name, metadata, name_changes + changes)


class ChangeLog:
    """Every change a site's limit forced, per image: streamed to the export report file; the
    first `keep` lines are also kept for the console."""

    def __init__(self, path: Path, keep: int = 200) -> None:
        self.path = path
        self.keep = keep
        self.shown: list[str] = []
        self.count = 0
        self._file = path.open("w", encoding="utf-8")
        self._file.write("Changes the stock sites' limits forced, one per line:\n")

    def note(self, line: str) -> None:
        self.count += 1
        if len(self.shown) < self.keep:
            self.shown.append(line)
        self._file.write(line + "\n")

    def add(self, entry: StockEntry, site: str) -> None:
        for change in entry.changes:
            self.note(
                f"job {entry.image.record.execution_id} image {entry.image.record.id} "
                f"({entry.name}) [{site}]: {change}"
            )

    def close(self) -> Path:
        if not self._file.closed:
            if not self.count:
                self._file.write("No change was needed.\n")
            self._file.close()
        return self.path


def thumbnail_jpeg(path: str | None, size: int, quality: int) -> bytes | None:
    """A JPEG at most `size` pixels a side of the image at `path` (transparency on white), or
    None when the file is gone or cannot be read: exports show it as missing, never fail."""
    if not path or not Path(path).is_file():
        return None
    try:
        with Image.open(path) as opened:
            opened.draft("RGB", (size * 2, size * 2))
            opened.thumbnail((size, size))
            picture = opened.convert("RGBA")
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    flat = Image.new("RGB", picture.size, "white")
    flat.paste(picture, mask=picture.getchannel("A"))
    buffer = io.BytesIO()
    flat.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
