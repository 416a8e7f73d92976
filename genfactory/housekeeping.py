"""Deleting a job and cleaning the temp directories (docs/SPEC.md §6): which files a job owns, and
which temp files no retry can need any more. Plain functions; the CLI asks and prints."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path

from genfactory.errors import UserError
from genfactory.files import STAGED_DIR, partial_writes
from genfactory.statuses import ImageStatus, JobStatus
from genfactory.storage import repository
from genfactory.storage.db import data_dir

#: What `clean` may remove from a temp directory: image files, and the hidden half-written
#: files of a killed write (`files.partial_writes`), never anything else.
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


@dataclasses.dataclass
class FileReport:
    files: list[Path] = dataclasses.field(default_factory=list)
    bytes: int = 0

    def add(self, path: Path) -> None:
        try:
            self.bytes += path.stat().st_size
        except OSError:
            return
        self.files.append(path)


def job_files(job_id: int) -> FileReport:
    """Every file the job owns that exists: its approved outputs, its originals and staged
    files in temp, its log."""
    execution = repository.get_execution(job_id)
    report = FileReport()
    seen: set[Path] = set()

    def add(path: str | Path | None) -> None:
        if path and Path(path) not in seen and Path(path).is_file():
            seen.add(Path(path))
            report.add(Path(path))

    for image in repository.list_images(execution_id=job_id):
        add(image.final_image_path)
        add(image.temp_image_path)
    if execution.temp_dir:
        staging = Path(execution.temp_dir) / STAGED_DIR
        if staging.is_dir():
            for path in sorted(staging.glob(f"*_e{job_id}.*")):
                add(path)
        for directory in (Path(execution.temp_dir), staging):
            for path in partial_writes(directory, f"_e{job_id}"):  # a killed write's
                add(path)
    add(execution.log_path)
    return report


def delete_job(job_id: int, *, keep_files: bool) -> FileReport:
    """Remove exactly the job's rows (and, unless `keep_files`, its files); returns the files
    removed. A running job is refused."""
    execution = repository.get_execution(job_id)
    if execution.status == JobStatus.RUNNING:
        raise UserError(
            f"job {job_id} is running; stop it first with `genfactory jobs stop {job_id}`"
        )
    report = FileReport() if keep_files else job_files(job_id)
    repository.delete_execution(job_id)
    for path in report.files:
        path.unlink(missing_ok=True)
    if not keep_files and execution.output_dir:
        _remove_if_empty(Path(execution.output_dir))
    return report


def _remove_if_empty(directory: Path) -> None:
    with contextlib.suppress(OSError):
        directory.rmdir()  # only when empty: a shared output directory stays


def parse_age(text: str) -> float:
    """'7d', '12h', '30m', '45s' or '0' -> seconds; a clear UserError otherwise."""
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    raw = text.strip().lower()
    try:
        value = float(raw[:-1]) * units[raw[-1]] if raw and raw[-1] in units else float(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise UserError(f"--older-than {text!r} is not an age; write e.g. 7d, 12h, 30m or 0")
    return value


def temp_dirs() -> list[Path]:
    """The default temp directory and every job's, as far as they exist."""
    dirs = {data_dir() / "temp"}
    for execution in repository.list_executions(limit=1_000_000):
        if execution.temp_dir:
            dirs.add(Path(execution.temp_dir))
    return sorted(d for d in dirs if d.is_dir())


def clean_candidates(older_than: float) -> FileReport:
    """Temp image files no retry can need: not the original of an image that is not approved,
    not staged by a job that is running or an image in flight, older than `older_than` s."""
    needed: set[Path] = set()
    busy_jobs: set[int] = set()
    for execution in repository.list_executions(limit=1_000_000):
        if execution.status == JobStatus.RUNNING:
            busy_jobs.add(execution.id)
    for image in repository.list_images():
        if image.temp_image_path and image.status != ImageStatus.APPROVED:
            needed.add(Path(image.temp_image_path).resolve())
        if image.status in (ImageStatus.PROCESSED, ImageStatus.PROCESSING):
            busy_jobs.add(image.execution_id)
    queued = {w.target_id for w in repository.list_work("retry", ("pending", "running"))}
    for image_id in queued:
        original = repository.get_image(image_id).temp_image_path
        if original:
            needed.add(Path(original).resolve())
    # A running job may hold a file it downloaded a moment ago and has not recorded yet.
    min_age = max(older_than, 3600.0) if busy_jobs else older_than
    now = time.time()
    report = FileReport()
    for directory in temp_dirs():
        # Half-written files a killed process left: no retry reads them, whoever wrote them.
        partial = set(partial_writes(directory)) | set(partial_writes(directory / STAGED_DIR))
        for path in sorted(directory.rglob("*")):
            if not path.is_file():
                continue
            if path.suffix.lower() not in IMAGE_SUFFIXES and path not in partial:
                continue
            if path.resolve() in needed or _staged_by(path, busy_jobs):
                continue
            try:
                if now - path.stat().st_mtime < min_age:
                    continue
            except OSError:
                continue
            report.add(path)
    return report


def _staged_by(path: Path, jobs: set[int]) -> bool:
    if path.parent.name != STAGED_DIR:
        return False
    tail = path.stem.rsplit("_e", 1)
    return len(tail) == 2 and tail[1].isdigit() and int(tail[1]) in jobs


def clean(older_than: float, *, dry_run: bool) -> FileReport:
    """Remove (or, with `dry_run`, only list) what `clean_candidates` finds."""
    report = clean_candidates(older_than)
    if not dry_run:
        for path in report.files:
            path.unlink(missing_ok=True)
    return report
