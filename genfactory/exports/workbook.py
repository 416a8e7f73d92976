"""Excel workbooks (pandas writes the tables, openpyxl formats them; docs/SPEC.md §8).

A job workbook has the sheets *Job Summary* (execution fields, counts, usage and cost per
service, then Setting/Value) and *Images* (one row per image, a thumbnail column, the final
path as a link). Headers are frozen, widths fitted, long text wrapped, the Images sheet filtered.

Thumbnails: 48 px on the long side, JPEG quality 70, about 1 KB each (measured: a 1,000-image
workbook of noisy 400x300 sources is 0.8 MB, 2,000 images of 768 px are 2 MB). The budget is
5 MB for 1,000 images (`THUMBNAIL_BUDGET`, tested): small enough to e-mail (common limits are
10-25 MB) and for Excel and LibreOffice to open at once, large enough to tell images apart.
Above `THUMBNAIL_MAX_IMAGES` images the column is left out (the workbook says so): decoding
10,000 originals would dominate the export.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.drawing.image import Image as SheetImage
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from genfactory.exports.common import (
    ExportImage,
    StockEntry,
    job_images,
    safe,
    settings_rows,
    thumbnail_jpeg,
    usage_rows,
)
from genfactory.storage import repository

THUMBNAIL_PX = 48
THUMBNAIL_QUALITY = 70
#: What a 1,000-image workbook with thumbnails must stay under (tests/test_export_workbook.py).
THUMBNAIL_BUDGET = 5 * 1024 * 1024
THUMBNAIL_MAX_IMAGES = 2_000
#: Column widths are fitted to the content up to this many characters; longer text wraps.
MAX_WIDTH = 60
WRAPPED = {"Title", "Description", "Keywords", "Prompt", "QC reason", "Value", "Usage"}

# Shared style objects: one per cell would cost more than writing the cell.
_WRAP = Alignment(wrap_text=True, vertical="top")
_TOP = Alignment(vertical="top")

IMAGE_COLUMNS = [
    "Thumbnail",
    "File name",
    "Final path",
    "Title",
    "Description",
    "Keywords",
    "Prompt",
    "Status",
    "QC reason",
    "Created (UTC)",
]


def _text(value: Any) -> Any:
    """A value Excel can hold: secrets redacted, control characters removed."""
    value = safe(value)
    if isinstance(value, str):
        return ILLEGAL_CHARACTERS_RE.sub("", value)
    return value


def _naive_utc(moment: datetime | None) -> datetime | None:
    # Excel has no time zones: every time is shown in UTC, and the header says so.
    return None if moment is None else moment.astimezone(UTC).replace(tzinfo=None)


def _frame(rows: Iterable[Sequence[Any]], columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame([[_text(v) for v in row] for row in rows], columns=list(columns))


def thumbnail_bytes(path: str | None) -> bytes | None:
    """A small JPEG of the image at `path`, or None when it cannot be read."""
    return thumbnail_jpeg(path, THUMBNAIL_PX, THUMBNAIL_QUALITY)


# ---------------------------------------------------------------------------------------------
# Formatting


def format_sheet(sheet: Worksheet, *, autofilter: bool = False, header_row: int = 1) -> None:
    """Bold frozen header, fitted widths, wrapped long text, cells kept as text."""
    headers = {cell.column: str(cell.value or "") for cell in sheet[header_row]}
    widths: dict[int, int] = {}
    for row in sheet.iter_rows():
        for cell in row:
            if cell.data_type == "f":
                # Text that starts with "=" is a title, not a formula to run.
                cell.data_type = "s"
            if cell.value is None:
                continue
            longest = max(len(line) for line in str(cell.value).splitlines() or [""])
            widths[cell.column] = max(widths.get(cell.column, 0), longest)
            wrap = headers.get(cell.column) in WRAPPED or longest > MAX_WIDTH
            cell.alignment = _WRAP if wrap else _TOP
    for cell in sheet[header_row]:
        cell.font = Font(bold=True)
    for column, width in widths.items():
        sheet.column_dimensions[get_column_letter(column)].width = min(width, MAX_WIDTH) + 2
    sheet.freeze_panes = sheet.cell(row=header_row + 1, column=1)
    if autofilter and sheet.max_row >= header_row:
        sheet.auto_filter.ref = sheet.dimensions


def _add_images_extras(sheet: Worksheet, images: Sequence[ExportImage], thumbnails: bool) -> None:
    path_column = IMAGE_COLUMNS.index("Final path") + 1
    for row, image in enumerate(images, start=2):
        if image.path:
            cell = sheet.cell(row=row, column=path_column)
            cell.hyperlink = Path(image.path).resolve().as_uri()
            cell.style = "Hyperlink"
        if thumbnails:
            data = thumbnail_bytes(image.path)
            if data:
                picture = SheetImage(io.BytesIO(data))
                sheet.add_image(picture, f"A{row}")
                # Points are 4/3 of a pixel: the row fits the thumbnail.
                sheet.row_dimensions[row].height = THUMBNAIL_PX * 0.75 + 4
    sheet.column_dimensions["A"].width = THUMBNAIL_PX / 7 + 2 if thumbnails else 4


# ---------------------------------------------------------------------------------------------
# Sheets


def summary_frames(execution: repository.ExecutionRecord) -> list[pd.DataFrame]:
    """The Job Summary tables: fields and counts, usage per service, settings."""
    counts = repository.image_counts(execution.id)
    fields: list[tuple[str, Any]] = [
        ("Job", execution.id),
        ("Label", execution.label),
        ("Status", str(execution.status)),
        ("Started (UTC)", _naive_utc(execution.started_at)),
        ("Completed (UTC)", _naive_utc(execution.completed_at)),
        ("Total images", execution.total_images or sum(counts.values())),
        ("Approved", execution.approved_images),
        ("QC failed", execution.qc_failed_images),
        ("Failed", execution.failed_images),
        *((f"Images {status}", count) for status, count in sorted(counts.items())),
        ("Error", execution.error_message or ""),
        ("Output folder", execution.output_dir or ""),
        ("Temp folder", execution.temp_dir or ""),
        ("Log", execution.log_path or ""),
        ("Rerun of job", execution.rerun_of_id or ""),
    ]
    usage = usage_rows(execution.usage) or [("none", "", "")]
    return [
        _frame(fields, ["Field", "Value"]),
        _frame(usage, ["Service", "Usage", "Cost"]),
        _frame(settings_rows(execution.settings_snapshot), ["Setting", "Value"]),
    ]


def images_frame(images: Sequence[ExportImage]) -> pd.DataFrame:
    return _frame(
        (
            (
                "",
                image.file_name,
                image.path or "",
                image.title,
                image.description,
                ", ".join(image.keywords),
                image.record.generation_prompt,
                image.status,
                image.reason,
                _naive_utc(image.created),
            )
            for image in images
        ),
        IMAGE_COLUMNS,
    )


def write_job_workbook(execution_id: int, path: Path, *, thumbnails: bool = True) -> Path:
    """The workbook of one job at `path`."""
    execution = repository.get_execution(execution_id)
    images = job_images(execution_id)
    thumbnails = thumbnails and len(images) <= THUMBNAIL_MAX_IMAGES
    frames = summary_frames(execution)
    if not thumbnails and images:
        frames[0] = pd.concat(
            [frames[0], _frame([("Thumbnails", "left out: too many images")], ["Field", "Value"])]
        )
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        start = 0
        for frame in frames:
            frame.to_excel(writer, sheet_name="Job Summary", index=False, startrow=start)
            start += len(frame) + 2
        images_frame(images).to_excel(writer, sheet_name="Images", index=False)
        book = writer.book
        format_sheet(book["Job Summary"])
        for row in book["Job Summary"].iter_rows():
            if row[0].value in ("Service", "Setting"):
                for cell in row:
                    cell.font = Font(bold=True)
        sheet = book["Images"]
        format_sheet(sheet, autofilter=True)
        _add_images_extras(sheet, images, thumbnails)
    return path


def write_jobs_summary(execution_ids: Sequence[int], path: Path) -> Path:
    """One row per job, for a multi-job export."""
    rows = []
    for execution_id in execution_ids:
        e = repository.get_execution(execution_id)
        costs = [str(cost) for _s, _u, cost in usage_rows(e.usage) if cost]
        rows.append(
            (
                e.id,
                e.label,
                str(e.status),
                _naive_utc(e.started_at),
                e.total_images,
                e.approved_images,
                e.qc_failed_images,
                e.failed_images,
                ", ".join(costs),
            )
        )
    columns = ["Job", "Label", "Status", "Started (UTC)", "Total", "Approved", "QC failed"]
    columns += ["Failed", "Cost"]
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        _frame(rows, columns).to_excel(writer, sheet_name="Jobs", index=False)
        format_sheet(writer.book["Jobs"], autofilter=True)
    return path


class MetadataWorkbook:
    """`metadata.xlsx` of an image ZIP (file name, title, description, keywords), written row
    by row (openpyxl's write-only mode) so a 10,000-image ZIP never holds the table."""

    COLUMNS = (("File name", 32), ("Title", 72), ("Description", 60), ("Keywords", 80))

    def __init__(self, path: Path) -> None:
        self.path = path
        self.book = Workbook(write_only=True)
        self.sheet = self.book.create_sheet("Metadata")
        # Write-only sheets are laid out before the first row: widths come from the limits.
        for index, (_name, width) in enumerate(self.COLUMNS, start=1):
            self.sheet.column_dimensions[get_column_letter(index)].width = width
        self.sheet.freeze_panes = "A2"
        self._wrap = Alignment(wrap_text=True, vertical="top")
        header = []
        for name, _width in self.COLUMNS:
            cell = WriteOnlyCell(self.sheet, value=name)
            cell.font = Font(bold=True)
            header.append(cell)
        self.sheet.append(header)
        self.rows = 1

    def add(self, entry: StockEntry) -> None:
        meta = entry.metadata
        values = (entry.name, meta.title, meta.description, ", ".join(meta.keywords))
        cells = []
        for value in values:
            cell = WriteOnlyCell(self.sheet, value=_text(value))
            cell.data_type = "s"  # a title starting with "=" is text, not a formula
            cell.alignment = self._wrap
            cells.append(cell)
        self.sheet.append(cells)
        self.rows += 1

    def close(self) -> Path:
        self.sheet.auto_filter.ref = f"A1:D{self.rows}"
        self.book.save(self.path)
        return self.path
