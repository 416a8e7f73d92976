"""Every query of the store. Callers pass plain values and get plain records back.

Transactions are short (one `with _session() as s` each) so many concurrent slots can write to
SQLite without "database is locked".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from genfactory.statuses import ImageStatus, JobStatus, SlotStatus
from genfactory.storage.db import get_engine
from genfactory.storage.models import (
    GeneratedImage,
    GenerationSlot,
    JobConfiguration,
    JobExecution,
    utcnow,
)


class NotFound(LookupError):
    """No row with that id."""


@contextmanager
def _session() -> Iterator[Session]:
    with Session(get_engine(), expire_on_commit=False) as session, session.begin():
        yield session


# ---------------------------------------------------------------------------------------------
# Records: plain values handed to callers


@dataclasses.dataclass(frozen=True)
class ExecutionRecord:
    id: int
    configuration_id: int | None
    rerun_of_id: int | None
    label: str
    status: str
    started_at: datetime | None
    completed_at: datetime | None
    total_images: int
    approved_images: int
    qc_failed_images: int
    failed_images: int
    error_message: str | None
    settings_snapshot: dict[str, Any]
    flow_run_id: str | None
    worker_host: str | None
    worker_pid: int | None
    usage: dict[str, Any]
    output_dir: str | None
    temp_dir: str | None
    log_path: str | None
    created_at: datetime


@dataclasses.dataclass(frozen=True)
class SlotRecord:
    id: int
    execution_id: int
    slot: int
    keyword: str
    variables: dict[str, Any]
    aspect_ratio: str
    width: int
    height: int
    system_prompt: str
    prompt: str | None
    status: str
    provider_task_id: str | None
    attempts: int
    error: str | None
    error_code: str | None


@dataclasses.dataclass(frozen=True)
class ImageRecord:
    id: int
    image_mapping_id: str
    execution_id: int
    slot: int
    image_index: int
    generation_prompt: str
    keyword: str | None
    aspect_ratio: str | None
    seed: int | None
    status: str
    qc_reason: str | None
    temp_image_path: str | None
    final_image_path: str | None
    media_type: str | None
    width: int | None
    height: int | None
    phash: str | None
    image_metadata: dict[str, Any] | None
    processing_settings: dict[str, Any] | None
    error: str | None
    error_code: str | None
    created_at: datetime


def _get(session: Session, model: type[Any], row_id: int, what: str) -> Any:
    row = session.get(model, row_id)
    if row is None:
        raise NotFound(f"{what} {row_id} does not exist")
    return row


def _record(cls: type[Any], row: Any) -> Any:
    values = {f.name: getattr(row, f.name) for f in dataclasses.fields(cls)}
    for key, value in values.items():
        # SQLite hands back naive datetimes; every time in the store is UTC.
        if isinstance(value, datetime) and value.tzinfo is None:
            values[key] = value.replace(tzinfo=UTC)
    return cls(**values)


# ---------------------------------------------------------------------------------------------
# Executions


def create_execution(
    *,
    label: str,
    settings_snapshot: dict[str, Any],
    output_dir: str,
    temp_dir: str,
    log_path: str | None = None,
    flow_run_id: str | None = None,
    configuration_id: int | None = None,
    rerun_of_id: int | None = None,
    worker_host: str | None = None,
    worker_pid: int | None = None,
) -> ExecutionRecord:
    """A new `running` execution; with no configuration given, its own new configuration row.

    Executions never share a configuration row implicitly (SPEC §11: jobs with one label
    overwrote each other's settings).
    """
    with _session() as s:
        if configuration_id is None:
            config = JobConfiguration(name=label, settings=settings_snapshot)
            s.add(config)
            s.flush()
            configuration_id = config.id
        execution = JobExecution(
            configuration_id=configuration_id,
            rerun_of_id=rerun_of_id,
            label=label,
            status=JobStatus.RUNNING,
            started_at=utcnow(),
            settings_snapshot=settings_snapshot,
            flow_run_id=flow_run_id,
            worker_host=worker_host,
            worker_pid=worker_pid,
            usage={},
            output_dir=output_dir,
            temp_dir=temp_dir,
            log_path=log_path,
        )
        s.add(execution)
        s.flush()
        return _record(ExecutionRecord, execution)


def get_execution(execution_id: int) -> ExecutionRecord:
    with _session() as s:
        row = _get(s, JobExecution, execution_id, "job")
        return _record(ExecutionRecord, row)


def find_execution_by_flow_run(flow_run_id: str) -> ExecutionRecord | None:
    with _session() as s:
        row = s.scalars(select(JobExecution).where(JobExecution.flow_run_id == flow_run_id)).first()
        return None if row is None else _record(ExecutionRecord, row)


def list_executions(limit: int = 50, status: str | None = None) -> list[ExecutionRecord]:
    with _session() as s:
        query = select(JobExecution).order_by(JobExecution.id.desc()).limit(limit)
        if status:
            query = query.where(JobExecution.status == status)
        return [_record(ExecutionRecord, row) for row in s.scalars(query)]


def image_counts(execution_id: int) -> dict[str, int]:
    """Images of an execution per status."""
    with _session() as s:
        rows = s.execute(
            select(GeneratedImage.status, func.count())
            .where(GeneratedImage.execution_id == execution_id)
            .group_by(GeneratedImage.status)
        )
        return {status: count for status, count in rows}


def finish_execution(
    execution_id: int, *, status: JobStatus | None = None, error_message: str | None = None
) -> ExecutionRecord:
    """Store the final counts and status. Without a status: `completed` if any image was
    approved, else `failed` (nothing usable)."""
    counts = image_counts(execution_id)
    approved = counts.get(ImageStatus.APPROVED, 0)
    qc_failed = counts.get(ImageStatus.QC_FAILED, 0)
    failed = counts.get(ImageStatus.FAILED, 0) + counts.get(ImageStatus.RETRY_FAILED, 0)
    if status is None:
        status = JobStatus.COMPLETED if approved else JobStatus.FAILED
        if not approved and error_message is None:
            error_message = "no image was approved" + ("" if counts else ": no image was generated")
    with _session() as s:
        row = _get(s, JobExecution, execution_id, "job")
        row.status = status
        row.completed_at = utcnow()
        row.total_images = sum(counts.values())
        row.approved_images = approved
        row.qc_failed_images = qc_failed
        row.failed_images = failed
        if error_message is not None:
            row.error_message = error_message
        s.flush()
        return _record(ExecutionRecord, row)


def set_execution_log_path(execution_id: int, log_path: str) -> None:
    with _session() as s:
        s.execute(
            update(JobExecution).where(JobExecution.id == execution_id).values(log_path=log_path)
        )


def record_usage(execution_id: int, usage: dict[str, Any]) -> None:
    with _session() as s:
        s.execute(update(JobExecution).where(JobExecution.id == execution_id).values(usage=usage))


# ---------------------------------------------------------------------------------------------
# Slots


def add_slots(execution_id: int, slots: Sequence[dict[str, Any]]) -> list[int]:
    """Insert the generation slots of an execution; returns their ids in slot order."""
    with _session() as s:
        rows = [
            GenerationSlot(execution_id=execution_id, status=SlotStatus.PENDING, **slot)
            for slot in slots
        ]
        s.add_all(rows)
        s.flush()
        return [row.id for row in rows]


def get_slot(slot_id: int) -> SlotRecord:
    with _session() as s:
        row = _get(s, GenerationSlot, slot_id, "slot")
        return _record(SlotRecord, row)


def list_slots(execution_id: int) -> list[SlotRecord]:
    with _session() as s:
        rows = s.scalars(
            select(GenerationSlot)
            .where(GenerationSlot.execution_id == execution_id)
            .order_by(GenerationSlot.slot)
        )
        return [_record(SlotRecord, row) for row in rows]


_SLOT_FIELDS = {"prompt", "status", "provider_task_id", "error", "error_code"}


def update_slot(slot_id: int, *, count_attempt: bool = False, **fields: Any) -> None:
    unknown = set(fields) - _SLOT_FIELDS
    if unknown:
        raise ValueError(f"cannot update slot fields {sorted(unknown)}")
    values = dict(fields)
    if count_attempt:
        values["attempts"] = GenerationSlot.attempts + 1
    with _session() as s:
        s.execute(update(GenerationSlot).where(GenerationSlot.id == slot_id).values(**values))


# ---------------------------------------------------------------------------------------------
# Images


def add_image(
    *,
    execution_id: int,
    slot: int,
    image_index: int,
    generation_prompt: str,
    temp_image_path: str,
    **fields: Any,
) -> ImageRecord:
    """Record one downloaded image, status `generated` (see `add_images`)."""
    image = {
        "image_index": image_index,
        "generation_prompt": generation_prompt,
        "temp_image_path": temp_image_path,
        **fields,
    }
    return get_image(add_images(execution_id, slot, [image])[0])


def add_images(execution_id: int, slot: int, images: Sequence[dict[str, Any]]) -> list[int]:
    """Record all images of one generation in one transaction (all or none), status
    `generated`; each dict holds the `add_image` fields. Returns their ids in order."""
    with _session() as s:
        rows = [
            GeneratedImage(
                execution_id=execution_id, slot=slot, status=ImageStatus.GENERATED, **image
            )
            for image in images
        ]
        s.add_all(rows)
        s.flush()
        return [row.id for row in rows]


def get_image(image_id: int) -> ImageRecord:
    with _session() as s:
        row = _get(s, GeneratedImage, image_id, "image")
        return _record(ImageRecord, row)


def list_images(
    *,
    execution_id: int | None = None,
    status: str | None = None,
    slot: int | None = None,
    limit: int | None = None,
) -> list[ImageRecord]:
    with _session() as s:
        query = select(GeneratedImage).order_by(
            GeneratedImage.execution_id, GeneratedImage.slot, GeneratedImage.image_index
        )
        if execution_id is not None:
            query = query.where(GeneratedImage.execution_id == execution_id)
        if status:
            query = query.where(GeneratedImage.status == status)
        if slot is not None:
            query = query.where(GeneratedImage.slot == slot)
        if limit:
            query = query.limit(limit)
        return [_record(ImageRecord, row) for row in s.scalars(query)]


_IMAGE_FIELDS = {
    "status",
    "qc_reason",
    "temp_image_path",
    "final_image_path",
    "media_type",
    "width",
    "height",
    "phash",
    "image_metadata",
    "processing_settings",
    "error",
    "error_code",
}


def update_image(image_id: int, **fields: Any) -> ImageRecord:
    """Update an image row; only the fields the pipeline owns may change."""
    unknown = set(fields) - _IMAGE_FIELDS
    if unknown:
        raise ValueError(f"cannot update image fields {sorted(unknown)}")
    with _session() as s:
        row = _get(s, GeneratedImage, image_id, "image")
        for key, value in fields.items():
            setattr(row, key, value)
        s.flush()
        return _record(ImageRecord, row)


def approved_hashes(execution_id: int | None) -> list[tuple[int, str]]:
    """(image id, perceptual hash) of approved images, of one execution or the whole store,
    oldest first."""
    with _session() as s:
        query = (
            select(GeneratedImage.id, GeneratedImage.phash)
            .where(GeneratedImage.phash.is_not(None))
            .where(GeneratedImage.status == ImageStatus.APPROVED)
            .order_by(GeneratedImage.updated_at, GeneratedImage.id)
        )
        if execution_id is not None:
            query = query.where(GeneratedImage.execution_id == execution_id)
        return [(image_id, str(phash)) for image_id, phash in s.execute(query)]


# ---------------------------------------------------------------------------------------------
# Statistics


def stats() -> dict[str, Any]:
    """Store-wide counts: executions per status, images per status."""
    with _session() as s:
        jobs = dict(
            s.execute(select(JobExecution.status, func.count()).group_by(JobExecution.status)).all()
        )
        images = dict(
            s.execute(
                select(GeneratedImage.status, func.count()).group_by(GeneratedImage.status)
            ).all()
        )
    return {"jobs": jobs, "images": images}


# ---------------------------------------------------------------------------------------------
# Exports


def iter_images(
    execution_id: int, *, status: str | None = None, batch: int = 500
) -> Iterator[ImageRecord]:
    """An execution's images in `list_images` order, read `batch` rows at a time, so an export
    of a 10,000-image job holds one batch of rows, not all of them."""
    offset = 0
    while True:
        with _session() as s:
            query = (
                select(GeneratedImage)
                .where(GeneratedImage.execution_id == execution_id)
                .order_by(GeneratedImage.slot, GeneratedImage.image_index, GeneratedImage.id)
                .offset(offset)
                .limit(batch)
            )
            if status:
                query = query.where(GeneratedImage.status == status)
            rows = [_record(ImageRecord, row) for row in s.scalars(query)]
        yield from rows
        if len(rows) < batch:
            return
        offset += batch
