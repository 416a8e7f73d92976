"""The image ZIP: approved files under their stock names, `metadata.xlsx` and the Adobe CSV.

Streamed in one pass: each image is copied from disk into the archive in chunks
(`ZipFile.write`) while its metadata row goes to the workbook and the CSV, both written row by
row; the store is read in batches. What stays per image is its stock name (names are unique).
Images are stored, not deflated (JPEG/PNG/WebP are compressed already: deflating costs CPU for
nothing); the workbook and CSVs are deflated.
"""

from __future__ import annotations

import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path

from genfactory.exports.common import ChangeLog, StockEntry
from genfactory.exports.stock_csv import adobe_csv, adobe_row
from genfactory.exports.workbook import MetadataWorkbook


def write_image_zip(entries: Iterable[StockEntry], path: Path, log: ChangeLog) -> list[str]:
    """Write the ZIP at `path` in one pass over `entries`; returns its member names in order.

    The changes `log` collects while `entries` is consumed go in as `export_report.txt`.
    """
    members: list[str] = []
    # ZIP64 so archives past 4 GB (10,000 large images) stay valid.
    with (
        tempfile.TemporaryDirectory(prefix="genfactory-zip-") as scratch,
        zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive,
    ):
        workbook = MetadataWorkbook(Path(scratch) / "metadata.xlsx")
        with adobe_csv(Path(scratch) / "adobe_stock.csv") as table:
            for entry in entries:
                archive.write(
                    str(entry.image.path), arcname=entry.name, compress_type=zipfile.ZIP_STORED
                )
                members.append(entry.name)
                workbook.add(entry)
                table.write(adobe_row(entry))
        archive.write(workbook.close(), arcname="metadata.xlsx")
        members.append("metadata.xlsx")
        for csv_path in table.paths:
            archive.write(csv_path, arcname=csv_path.name)
            members.append(csv_path.name)
        archive.write(log.close(), arcname="export_report.txt")
        members.append("export_report.txt")
    return members
