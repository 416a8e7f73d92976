"""Deleting a job and cleaning the temp directories (docs/SPEC.md §6): which files a job owns, and
which temp files no retry can need any more. Plain functions; the CLI asks and prints."""

from __future__ import annotations

import contextlib
import dataclasses
import re
import time
from collections.abc import Callable
from pathlib import Path

from genfactory.errors import UserError
from genfactory.files import (
    STAGED_DIR,
    files_in,
    image_name,
    owned_stem,
    partial_stem,
    partial_writes,
    safe_name,
)
from genfactory.image_folder import source_stem_of
from genfactory.media import EXTENSIONS, extension_for
from genfactory.processing.metadata import embedding_leftover_stem
from genfactory.statuses import ImageStatus, JobStatus
from genfactory.storage import repository
from genfactory.storage.db import data_dir
from genfactory.storage.repository import ExecutionRecord, SlotRecord

#: The extensions of the originals genfactory saves to temp (`media.extension_for`).
ORIGINAL_SUFFIXES = {f".{extension_for(media_type)}" for media_type in (*EXTENSIONS, None)}
#: What `clean` may remove from a temp directory: image files, and the hidden half-written
#: files of a killed write (`files.partial_writes`), never anything else.
IMAGE_SUFFIXES = ORIGINAL_SUFFIXES | {".jpeg", ".tiff"}


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
    files in temp, what its interrupted attempts left there, its log."""
    execution = repository.get_execution(job_id)
    report = FileReport()
    seen: set[Path] = set()

    def add(path: str | Path | None) -> None:
        if path and Path(path) not in seen and Path(path).is_file():
            seen.add(Path(path))
            report.add(Path(path))

    delivered: list[Path] = []
    for image in repository.iter_images(job_id):
        add(image.final_image_path)
        add(image.temp_image_path)
        if image.final_image_path:
            delivered.append(Path(image.final_image_path))
    for path in _owned_files(execution, repository.list_slots(job_id), delivered):
        add(path)
    add(execution.log_path)
    return report


def job_leftovers(job_id: int, *, written_before: float | None = None) -> list[Path]:
    """Files interrupted attempts of the job left behind that no image of it needs: originals no
    image row points at any more (an approval the kill cut short), staged files of approved
    images, and the hidden half-written or half-embedded files a killed process never renamed
    (those last written before `written_before`: a later one may still be being written)."""
    execution = repository.get_execution(job_id)
    slots = repository.list_slots(job_id)
    sources = {slot.slot: source_stem_of(slot.variables) for slot in slots}
    needed: set[Path] = set()
    approved: set[str] = set()
    delivered: list[Path] = []
    for image in repository.iter_images(job_id):
        if image.status != ImageStatus.APPROVED:
            if image.temp_image_path:  # a retry starts from it
                needed.add(Path(image.temp_image_path))
            continue
        name = image_name(execution.label, image.slot, image.image_index, sources.get(image.slot))
        approved.add(owned_stem(name, job_id))
        if image.final_image_path:
            delivered.append(Path(image.final_image_path))
    found = []
    for path in _owned_files(execution, slots, delivered):
        if path.name.startswith("."):
            try:
                if written_before is None or path.stat().st_mtime < written_before:
                    found.append(path)
            except OSError:
                pass
        elif path.parent.name == STAGED_DIR:
            if path.stem in approved:
                found.append(path)
        elif path not in needed:
            found.append(path)
    return found


def _owned_files(
    execution: ExecutionRecord, slots: list[SlotRecord], delivered: list[Path]
) -> list[Path]:
    """Every file in the job's temp and staging directories with one of its names (originals,
    staged files, their hidden half-written and half-embedded copies), and the half-written
    copies beside its delivered files."""
    found: list[Path] = []
    if execution.temp_dir:
        owns = _owner(execution.id, execution.label, slots)
        temp = Path(execution.temp_dir)
        for path in (*files_in(temp), *files_in(temp / STAGED_DIR)):
            if path.name.startswith("."):
                stem = partial_stem(path.name) or embedding_leftover_stem(path.name)
            else:
                stem = path.stem if path.suffix in ORIGINAL_SUFFIXES else None
            if stem is not None and owns(stem):
                found.append(path)
    names: dict[Path, set[str]] = {}
    for final in delivered:
        names.setdefault(final.parent, set()).add(final.name)
    for directory, taken in names.items():  # `replace_with_link` cut short
        found += partial_writes(directory, taken.__contains__)
    return found


def _owner(job_id: int, label: str, slots: list[SlotRecord]) -> Callable[[str], bool]:
    """Whether a temp file's stem is one this job writes (`files.image_name` of one of its
    slots' images, with the job's id): exact, so no other job's file and no user's file is
    taken for one of its own, whatever the label."""
    suffix = owned_stem("", job_id)
    numbers = {slot.slot for slot in slots}
    sources = {
        image_name(label, slot.slot, 0, source)
        for slot in slots
        if (source := source_stem_of(slot.variables))
    }
    generated = re.compile(re.escape(safe_name(label)) + r"_([0-9]+)_[0-9]+")  # image_name's

    def owns(stem: str) -> bool:
        if not stem.endswith(suffix):
            return False
        name = stem[: -len(suffix)]
        if name in sources:
            return True
        match = generated.fullmatch(name)
        return match is not None and int(match[1]) in numbers

    return owns


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
        for path in sorted(directory.rglob("*")):
            if not path.is_file():
                continue
            # Half-written files a killed process left: no retry reads them, whoever wrote them.
            if path.suffix.lower() not in IMAGE_SUFFIXES and partial_stem(path.name) is None:
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
