"""One export: which jobs, which format, where it goes. The CLI and the `export_job` flow's task
both call `run_export`.

`out` is a file for one job, a folder (or, for xlsx and zip, a `.zip`) for several; without it
the export goes to `<data dir>/exports/` under a name made of the job ids.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from enum import StrEnum
from pathlib import Path

from genfactory import stock
from genfactory.errors import UserError
from genfactory.exports.common import (
    ChangeLog,
    StockEntry,
    approved_images,
    register_environment_secrets,
    stock_entries,
)
from genfactory.exports.report import write_report
from genfactory.exports.stock_csv import (
    adobe_csv,
    adobe_row,
    freepik_csv,
    freepik_model,
    freepik_row,
)
from genfactory.statuses import ImageStatus
from genfactory.storage import repository
from genfactory.storage.db import data_dir


class ExportFormat(StrEnum):
    XLSX = "xlsx"
    ADOBE_CSV = "adobe-csv"
    FREEPIK_CSV = "freepik-csv"
    ZIP = "zip"
    HTML = "html"


@dataclasses.dataclass
class ExportResult:
    format: str
    #: The export's main file or folder (printed at the end).
    path: Path
    files: list[Path]
    #: The first changes the stock limits forced (all of them are in the report).
    changes: list[str]
    report: Path | None = None
    changes_total: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "format": self.format,
            "path": str(self.path),
            "files": [str(p) for p in self.files],
            "changes": list(self.changes),
            "changes_total": self.changes_total,
            "report": str(self.report) if self.report else None,
        }


def default_dir() -> Path:
    return data_dir() / "exports"


def _stem(execution_ids: Sequence[int]) -> str:
    if len(execution_ids) == 1:
        label = repository.get_execution(execution_ids[0]).label
        slug = re.sub(r"[^A-Za-z0-9_-]+", "_", label).strip("_")[:40]
        return f"job_{execution_ids[0]}" + (f"_{slug}" if slug else "")
    return "jobs_" + "_".join(str(i) for i in execution_ids[:10])


def _is_dir(out: Path, suffixes: Sequence[str]) -> bool:
    return out.is_dir() or out.suffix.lower() not in suffixes


def _target(out: Path | None, name: str, suffixes: Sequence[str]) -> Path:
    """The file to write: `out` itself, or `name` inside `out` (or the default folder)."""
    if out is None:
        folder = default_dir()
    elif _is_dir(out, suffixes):
        folder = out
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        return out
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def _atomic(path: Path, write: Callable[[Path], object]) -> Path:
    """Write through a temporary file beside `path`: a failed export leaves no half file."""
    handle, scratch = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(handle)
    try:
        write(Path(scratch))
        os.replace(scratch, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(scratch)
        raise
    return path


def _link_or_copy(source: Path, target: Path) -> None:
    # A hard link costs no space; across file systems, a copy.
    with contextlib.suppress(FileNotFoundError):
        target.unlink()
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _check_approved(execution_ids: Sequence[int]) -> None:
    approved = sum(repository.image_counts(i).get(ImageStatus.APPROVED, 0) for i in execution_ids)
    if not approved:
        jobs = ", ".join(str(i) for i in execution_ids)
        raise UserError(
            f"job {jobs} has no approved image, so there is nothing to upload; "
            "export --format xlsx or html to see why"
        )


def _upload_entries(
    execution_ids: Sequence[int], rules: stock.SiteRules, log: ChangeLog
) -> Iterator[StockEntry]:
    """Approved images with their file on disk, named and normalised, read in batches; the
    changes go to `log`, and so does an approved image whose file is gone (left out, never
    silently)."""
    namer = stock.StockNamer()
    for execution_id in execution_ids:
        for entry in stock_entries(approved_images(execution_id), rules, namer):
            if Path(str(entry.image.path)).is_file():
                log.add(entry, rules.name)
                yield entry
            else:
                log.note(
                    f"job {execution_id} image {entry.image.record.id}: left out, its file "
                    f"{entry.image.path} is gone"
                )


def _nothing_written(execution_ids: Sequence[int]) -> UserError:
    jobs = ", ".join(str(i) for i in execution_ids)
    return UserError(
        f"no approved file of job {jobs} is on disk any more, so there is nothing to upload; "
        "export --format xlsx to see the paths"
    )


def run_export(
    execution_ids: Sequence[int], fmt: ExportFormat | str, out: Path | None = None
) -> ExportResult:
    """Export the jobs; raises UserError for a bad request, NotFound for an unknown job."""
    try:
        fmt = ExportFormat(fmt)
    except ValueError:
        choices = ", ".join(f.value for f in ExportFormat)
        raise UserError(f"unknown export format {fmt!r}; choose one of {choices}") from None
    ids = list(dict.fromkeys(int(i) for i in execution_ids))
    if not ids:
        raise UserError("no job given; name at least one job id, e.g. genfactory export 1")
    for execution_id in ids:
        repository.get_execution(execution_id)  # NotFound names the job
    register_environment_secrets()
    out = Path(out).expanduser() if out is not None else None
    stem = _stem(ids)
    if fmt is ExportFormat.XLSX:
        return _xlsx(ids, out, stem)
    if fmt is ExportFormat.HTML:
        return _html(ids, out, stem)
    if fmt is ExportFormat.ZIP:
        return _zip(ids, out, stem)
    return _csv(ids, out, stem, fmt)


def _xlsx(ids: list[int], out: Path | None, stem: str) -> ExportResult:
    from genfactory.exports.workbook import write_job_workbook, write_jobs_summary

    if len(ids) == 1:
        path = _target(out, f"{stem}.xlsx", [".xlsx"])
        _atomic(path, lambda p: write_job_workbook(ids[0], p))
        return ExportResult("xlsx", path, [path], [])
    path = _target(out, f"{stem}.zip", [".zip"])

    def write(target: Path) -> None:
        with (
            tempfile.TemporaryDirectory(prefix="genfactory-xlsx-") as scratch,
            zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive,
        ):
            summary = write_jobs_summary(ids, Path(scratch) / "summary.xlsx")
            archive.write(summary, arcname=summary.name)
            for execution_id in ids:
                name = f"{_stem([execution_id])}.xlsx"
                archive.write(write_job_workbook(execution_id, Path(scratch) / name), name)

    _atomic(path, write)
    return ExportResult("xlsx", path, [path], [])


def _html(ids: list[int], out: Path | None, stem: str) -> ExportResult:
    if len(ids) == 1:
        path = _target(out, f"{stem}_report.html", [".html", ".htm"])
        _atomic(path, lambda p: write_report(ids[0], p))
        return ExportResult("html", path, [path], [])
    if out is not None and not _is_dir(out, [".html", ".htm"]):
        raise UserError(
            f"--out {out} is one file but {len(ids)} jobs make one report each; give a folder"
        )
    folder = out or default_dir()
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for execution_id in ids:
        path = folder / f"{_stem([execution_id])}_report.html"
        files.append(_atomic(path, functools.partial(write_report, execution_id)))
    return ExportResult("html", folder, files, [])


def _zip(ids: list[int], out: Path | None, stem: str) -> ExportResult:
    from genfactory.exports.archive import write_image_zip  # pandas/openpyxl: on use

    path = _target(out, f"{stem}_images.zip", [".zip"])
    _check_approved(ids)
    with tempfile.TemporaryDirectory(prefix="genfactory-export-") as scratch:
        log = ChangeLog(Path(scratch) / "export_report.txt")
        members: list[str] = []

        def write(target: Path) -> None:
            members.extend(write_image_zip(_upload_entries(ids, stock.ADOBE, log), target, log))
            if all(m in ("metadata.xlsx", "export_report.txt") for m in members):
                raise _nothing_written(ids)

        _atomic(path, write)
    return ExportResult("zip", path, [path], log.shown, None, log.count)


def _csv(ids: list[int], out: Path | None, stem: str, fmt: ExportFormat) -> ExportResult:
    adobe = fmt is ExportFormat.ADOBE_CSV
    rules = stock.ADOBE if adobe else stock.FREEPIK
    site = "adobe" if adobe else "freepik"
    if out is not None and out.suffix.lower() == ".csv":
        base, images_dir = out, out.with_name(f"{out.stem}_images")
        report_path, main = out.with_name(f"{out.stem}_report.txt"), out
    else:
        folder = out if out is not None else default_dir() / f"{stem}_{site}"
        if folder.suffix.lower() == ".zip":
            raise UserError(f"--out {folder} is a ZIP; {fmt} writes a .csv file or a folder")
        base = folder / ("adobe_stock.csv" if adobe else "freepik.csv")
        images_dir, report_path, main = folder / "images", folder / "export_report.txt", folder
    _check_approved(ids)
    images_dir.mkdir(parents=True, exist_ok=True)
    models = {
        i: freepik_model(
            (repository.get_execution(i).settings_snapshot.get("providers") or {}).get("image")
        )
        for i in ids
    }
    log = ChangeLog(report_path)
    try:
        with adobe_csv(base) if adobe else freepik_csv(base) as table:
            for entry in _upload_entries(ids, rules, log):
                _link_or_copy(Path(str(entry.image.path)), images_dir / entry.name)
                model = models[entry.image.record.execution_id]
                table.write(adobe_row(entry) if adobe else freepik_row(entry, model))
    finally:
        log.close()
    if not table.paths:
        raise _nothing_written(ids)
    return ExportResult(
        str(fmt), main, [*table.paths, images_dir, report_path], log.shown, report_path, log.count
    )
