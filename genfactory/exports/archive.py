"""The image ZIP: approved files under their stock names, `metadata.xlsx` and the Adobe CSV.

Streamed: each image is copied from disk into the archive in chunks (`ZipFile.write`), so
memory holds one chunk, never the images; the metadata rows are the only per-image state.
Images are stored, not deflated (JPEG/PNG/WebP are compressed already: deflating costs CPU for
nothing); the workbook and CSVs are deflated.
"""

from __future__ import annotations

import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path

from genfactory.exports.common import StockEntry
from genfactory.exports.stock_csv import write_adobe_csv
from genfactory.exports.workbook import write_metadata_workbook


def write_image_zip(entries: Iterable[StockEntry], path: Path, *, report: str = "") -> list[str]:
    """Write the ZIP at `path`; returns its member names in order."""
    kept: list[StockEntry] = []
    members: list[str] = []
    # ZIP64 so archives past 4 GB (10,000 large images) stay valid.
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        for entry in entries:
            source = Path(str(entry.image.path))
            if not source.is_file():
                continue
            archive.write(source, arcname=entry.name, compress_type=zipfile.ZIP_STORED)
            members.append(entry.name)
            # Only the metadata stays: the image itself is already in the archive.
            kept.append(entry)
        with tempfile.TemporaryDirectory(prefix="genfactory-zip-") as scratch:
            workbook = write_metadata_workbook(kept, Path(scratch) / "metadata.xlsx")
            archive.write(workbook, arcname="metadata.xlsx")
            members.append("metadata.xlsx")
            for csv_path in write_adobe_csv(kept, Path(scratch) / "adobe_stock.csv"):
                archive.write(csv_path, arcname=csv_path.name)
                members.append(csv_path.name)
        if report:
            archive.writestr("export_report.txt", report)
            members.append("export_report.txt")
    return members
