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


def write_split_csv(
    rows: Iterable[Sequence[str]],
    header: Sequence[str],
    path_for: Callable[[int], Path],
    *,
    delimiter: str = ",",
    max_rows: int = MAX_ROWS,
    max_bytes: int = MAX_BYTES,
) -> list[Path]:
    """Write `rows` under `header` into files of ≤ `max_rows` rows and ≤ `max_bytes` bytes
    (header included); `path_for(n)` names file n (1-based). Streams: one row in memory."""
    header_line = _line(header, delimiter).encode("utf-8")
    paths: list[Path] = []
    handle = None
    rows_in_file = bytes_in_file = 0
    try:
        for row in rows:
            data = _line(row, delimiter).encode("utf-8")
            if len(header_line) + len(data) > max_bytes:
                raise ValueError(f"one CSV row is over {max_bytes} bytes: {row[0]}")
            if handle is None or rows_in_file >= max_rows or bytes_in_file + len(data) > max_bytes:
                if handle is not None:
                    handle.close()
                paths.append(path_for(len(paths) + 1))
                handle = paths[-1].open("wb")
                handle.write(header_line)
                rows_in_file, bytes_in_file = 0, len(header_line)
            handle.write(data)
            rows_in_file += 1
            bytes_in_file += len(data)
    finally:
        if handle is not None:
            handle.close()
    return paths


def numbered(base: Path) -> Callable[[int], Path]:
    """`adobe_stock.csv`, then `adobe_stock_2.csv`, `adobe_stock_3.csv`..."""

    def path_for(number: int) -> Path:
        return base if number == 1 else base.with_name(f"{base.stem}_{number}{base.suffix}")

    return path_for


def write_adobe_csv(entries: Iterable[StockEntry], base: Path) -> list[Path]:
    return write_split_csv((adobe_row(e) for e in entries), ADOBE_HEADER, numbered(base))


def write_freepik_csv(
    entries: Iterable[StockEntry], base: Path, model_for: Callable[[StockEntry], str]
) -> list[Path]:
    return write_split_csv(
        (freepik_row(e, model_for(e)) for e in entries),
        FREEPIK_HEADER,
        numbered(base),
        delimiter=";",
    )
