"""Stock upload CSVs for approved images: Adobe Stock and Freepik (none for Shutterstock: it
refuses AI-generated content).

Adobe Stock's CSV upload: header `Filename,Title,Keywords,Category,Releases`, UTF-8, at most
5,000 rows and 1 MB per file; keywords comma-separated inside their quoted cell, most important
first; Category (a number 1-21) and Releases are optional and left empty.

Freepik: no authoritative Freepik page on the CSV format was found (searched the docs and
pages corpora: support.freepik.com/hc/en-us/articles/115003799325 "Content Submission
Requirements" and freepik.com/ai/contributors/ftp-upload-method say a CSV can carry the metadata
but not its columns). The format used here is the contributor panel's CSV template as described
by third parties (e.g. blog.photokeyworder.ai, "The complete Magnific (ex-Freepik) contributor
guide", 2026-06-29) and by open-source uploaders: semicolon-separated
`Filename;Title;Keywords;Prompt;Model`, UTF-8 without BOM, keywords comma-separated; a filled
Prompt and Model is the AI-generated marker. Check it against the panel's template before
relying on it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import BinaryIO

from genfactory import stock
from genfactory.exports.common import StockEntry, safe

ADOBE_HEADER = ["Filename", "Title", "Keywords", "Category", "Releases"]
FREEPIK_HEADER = ["Filename", "Title", "Keywords", "Prompt", "Model"]
MAX_ROWS = 5_000
MAX_BYTES = 1_000_000
#: Freepik's panel asks which generator made an AI image; our image providers map to these.
FREEPIK_MODELS = {
    "piapi": "Midjourney",
    "openai": "DALL-E",
    "sdwebui": "Stable Diffusion",
    "runware": "Stable Diffusion",
}
#: A prompt longer than this is cut (the panel's field is a short text).
FREEPIK_PROMPT_MAX = 1_000


def adobe_row(entry: StockEntry) -> list[str]:
    meta = entry.metadata
    return [entry.name, meta.title, ",".join(meta.keywords), "", ""]


def freepik_row(entry: StockEntry, model: str) -> list[str]:
    meta = entry.metadata
    prompt = stock.cut_text(entry.image.record.generation_prompt, FREEPIK_PROMPT_MAX)
    return [entry.name, meta.title, ",".join(meta.keywords), prompt, model]


def freepik_model(image_provider: str | None) -> str:
    return FREEPIK_MODELS.get(str(image_provider or ""), "Other")


def _line(row: Sequence[str], delimiter: str) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator="\n").writerow(
        [safe(value) for value in row]
    )
    return buffer.getvalue()


class SplitCsv:
    """CSV files of ≤ `max_rows` rows and ≤ `max_bytes` bytes each (header included), written
    row by row; `path_for(n)` names file n (1-based). Use as a context manager."""

    def __init__(
        self,
        header: Sequence[str],
        path_for: Callable[[int], Path],
        *,
        delimiter: str = ",",
        max_rows: int = MAX_ROWS,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        self.delimiter = delimiter
        self.header_line = _line(header, delimiter).encode("utf-8")
        self.path_for = path_for
        self.max_rows, self.max_bytes = max_rows, max_bytes
        self.paths: list[Path] = []
        self._handle: BinaryIO | None = None
        self._rows = self._bytes = 0

    def write(self, row: Sequence[str]) -> None:
        data = _line(row, self.delimiter).encode("utf-8")
        if len(self.header_line) + len(data) > self.max_bytes:
            raise ValueError(f"one CSV row is over {self.max_bytes} bytes: {row[0]}")
        full = self._rows >= self.max_rows or self._bytes + len(data) > self.max_bytes
        if self._handle is None or full:
            self.close()
            self.paths.append(self.path_for(len(self.paths) + 1))
            self._handle = self.paths[-1].open("wb")
            self._handle.write(self.header_line)
            self._rows, self._bytes = 0, len(self.header_line)
        self._handle.write(data)
        self._rows += 1
        self._bytes += len(data)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> SplitCsv:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def write_split_csv(
    rows: Iterable[Sequence[str]],
    header: Sequence[str],
    path_for: Callable[[int], Path],
    *,
    delimiter: str = ",",
) -> list[Path]:
    """Write `rows` under `header` into as many files as the limits need."""
    with SplitCsv(header, path_for, delimiter=delimiter) as out:
        for row in rows:
            out.write(row)
    return out.paths


def numbered(base: Path) -> Callable[[int], Path]:
    """`adobe_stock.csv`, then `adobe_stock_2.csv`, `adobe_stock_3.csv`..."""

    def path_for(number: int) -> Path:
        return base if number == 1 else base.with_name(f"{base.stem}_{number}{base.suffix}")

    return path_for


def adobe_csv(base: Path) -> SplitCsv:
    return SplitCsv(ADOBE_HEADER, numbered(base))


def freepik_csv(base: Path) -> SplitCsv:
    return SplitCsv(FREEPIK_HEADER, numbered(base), delimiter=";")
