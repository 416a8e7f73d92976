"""Every query of the store. Callers pass plain values and get plain records back.

Transactions are short (one `with _session() as s` each) so many concurrent slots can write to
SQLite without "database is locked".
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, select, text, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session

from genfactory.statuses import (
    IMAGE_TRANSITIONS,
    JOB_TRANSITIONS,
    OPEN_IMAGE_STATUSES,
    SLOT_TRANSITIONS,
    ImageStatus,
    JobStatus,
    SlotStatus,
    allowed,
)
from genfactory.storage.db import get_engine
from genfactory.storage.models import (
    GeneratedImage,
    GenerationSlot,
    JobConfiguration,
    JobExecution,
    WorkItem,
    utcnow,
)


class NotFound(LookupError):
    """No row with that id."""


class TransitionError(RuntimeError):
    """A status change the state machine refuses, or one whose row was not in the expected
    status (another process changed it first)."""


#: Held while approving on PostgreSQL, so near-duplicate twins approved by two processes at
#: once are judged one after the other (SQLite's BEGIN IMMEDIATE serialises writers already).
_PG_APPROVAL_LOCK = 7_311_043


@contextmanager
def _session() -> Iterator[Session]:
    """A short write transaction (BEGIN IMMEDIATE on SQLite: writers queue up front)."""
    with Session(get_engine(), expire_on_commit=False) as session, session.begin():
        yield session


@contextmanager
def _reading() -> Iterator[Session]:
    """A short read transaction: on SQLite a plain BEGIN, so readers never wait for the write
    lock (WAL lets them read beside a writer)."""
    engine = get_engine().execution_options(genfactory_read_only=True)
    with Session(engine, expire_on_commit=False) as session, session.begin():
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
    stop_requested_at: datetime | None = None
    stop_reason: str | None = None
    heartbeat_at: datetime | None = None
    flow_run_ids: list[Any] | None = None


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
    approved_by_hand: bool | None = None
    history: list[Any] | None = None


def _get(session: Session, model: type[Any], row_id: int, what: str) -> Any:
    row = session.get(model, row_id)
    if row is None:
        raise NotFound(f"{what} {row_id} does not exist")
    return row


_NAMES: dict[Any, dict[str, str]] = {}
_LABELLED: dict[Any, tuple[Any, ...]] = {}


def _column_names(model: type[Any]) -> dict[str, str]:
    """Attribute name -> column name (`image_metadata` is stored as `metadata`)."""
    if model not in _NAMES:
        _NAMES[model] = {a.key: a.columns[0].name for a in sa_inspect(model).column_attrs}
    return _NAMES[model]


def _columns(cls: type[Any], model: type[Any]) -> tuple[Any, ...]:
    """The table columns a record class holds, labelled by attribute name."""
    key = (cls, model)
    if key not in _LABELLED:
        names = _column_names(model)
        _LABELLED[key] = tuple(
            model.__table__.c[names[f.name]].label(f.name) for f in dataclasses.fields(cls)
        )
    return _LABELLED[key]


_BY_ID: dict[Any, Any] = {}


def _select_by_id(cls: type[Any], model: type[Any]) -> Any:
    """`SELECT <the record's columns> WHERE id = :row_id`, built once per record class: a
    statement built anew per call costs SQLAlchemy its cache key each time (~0.15 ms)."""
    key = (cls, model)
    if key not in _BY_ID:
        _BY_ID[key] = select(*_columns(cls, model)).where(
            model.__table__.c.id == bindparam("row_id")
        )
    return _BY_ID[key]


def _fetch(session: Session, cls: type[Any], model: type[Any], row_id: int, what: str) -> Any:
    """One row as a record, by a Core select on the session's connection: the hot path of
    every step skips the ORM's per-statement work."""
    row = session.connection().execute(_select_by_id(cls, model), {"row_id": row_id}).first()
    if row is None:
        raise NotFound(f"{what} {row_id} does not exist")
    return _record(cls, row._mapping, mapping=True)


def _record(cls: type[Any], row: Any, *, mapping: bool = False) -> Any:
    if mapping:
        values = {f.name: row[f.name] for f in dataclasses.fields(cls)}
    else:
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
    with _reading() as s:
        record: ExecutionRecord = _fetch(s, ExecutionRecord, JobExecution, execution_id, "job")
        return record


def find_execution_by_flow_run(flow_run_id: str) -> ExecutionRecord | None:
    with _reading() as s:
        row = s.scalars(select(JobExecution).where(JobExecution.flow_run_id == flow_run_id)).first()
        return None if row is None else _record(ExecutionRecord, row)


def list_executions(limit: int = 50, status: str | None = None) -> list[ExecutionRecord]:
    with _reading() as s:
        query = select(JobExecution).order_by(JobExecution.id.desc()).limit(limit)
        if status:
            query = query.where(JobExecution.status == status)
        return [_record(ExecutionRecord, row) for row in s.scalars(query)]


def image_counts(execution_id: int) -> dict[str, int]:
    """Images of an execution per status."""
    with _reading() as s:
        rows = s.execute(
            select(GeneratedImage.status, func.count())
            .where(GeneratedImage.execution_id == execution_id)
            .group_by(GeneratedImage.status)
        )
        return {status: count for status, count in rows}


def _counts(session: Session, execution_id: int) -> dict[str, int]:
    rows = session.execute(
        select(GeneratedImage.status, func.count())
        .where(GeneratedImage.execution_id == execution_id)
        .group_by(GeneratedImage.status)
    )
    return {status: count for status, count in rows}


def _cas(
    session: Session,
    model: type[Any],
    table: dict[Any, frozenset[Any]],
    row_id: int,
    expected: str | Collection[str],
    new: str,
    what: str,
    values: dict[str, Any],
    record: type[Any] | None = None,
) -> Any:
    """Compare-and-set one row's status: `UPDATE … WHERE id = ? AND status IN expected`.
    With `record`, returns the updated row as that record class (UPDATE … RETURNING)."""
    expected_set = {expected} if isinstance(expected, str) else set(expected)
    for current in expected_set:
        if not allowed(table, current, new):
            raise TransitionError(f"{what} {row_id}: {current} -> {new} is not a status change")
    rows = model.__table__
    names = _column_names(model)
    statement = (
        update(rows)
        .where(rows.c.id == row_id, rows.c.status.in_(expected_set))
        .values({names[key]: value for key, value in {"status": new, **values}.items()})
    )
    connection = session.connection()
    if record is not None:
        row = connection.execute(statement.returning(*_columns(record, model))).first()
        if row is not None:
            return _record(record, row._mapping, mapping=True)
    elif connection.execute(statement).rowcount == 1:
        return None
    found = connection.execute(select(rows.c.status).where(rows.c.id == row_id)).scalar()
    if found is None:
        raise NotFound(f"{what} {row_id} does not exist")
    raise TransitionError(
        f"{what} {row_id} is {found}, expected {' or '.join(sorted(expected_set))}"
        f" (to become {new})"
    )


def transition_execution(
    execution_id: int, expected: str | Collection[str], new: JobStatus, **values: Any
) -> ExecutionRecord:
    """Change an execution's status by compare-and-set (see `statuses.JOB_TRANSITIONS`)."""
    with _session() as s:
        _cas(s, JobExecution, JOB_TRANSITIONS, execution_id, expected, new, "job", values)
        return _record(ExecutionRecord, _get(s, JobExecution, execution_id, "job"))


def finish_execution(
    execution_id: int, *, status: JobStatus | None = None, error_message: str | None = None
) -> ExecutionRecord:
    """Store the final counts and status of a `running` execution. Without a status:
    `completed` if any image was approved, else `failed` (nothing usable)."""
    with _session() as s:
        counts = _counts(s, execution_id)
        approved = counts.get(ImageStatus.APPROVED, 0)
        if status is None:
            status = JobStatus.COMPLETED if approved else JobStatus.FAILED
            if not approved and error_message is None:
                error_message = "no image was approved" + (
                    "" if counts else ": no image was generated"
                )
        values: dict[str, Any] = {"completed_at": utcnow(), **_totals(counts)}
        if error_message is not None:
            values["error_message"] = error_message
        _cas(
            s, JobExecution, JOB_TRANSITIONS, execution_id, JobStatus.RUNNING, status, "job", values
        )
        return _record(ExecutionRecord, _get(s, JobExecution, execution_id, "job"))


def _totals(counts: dict[str, int]) -> dict[str, int]:
    return {
        "total_images": sum(counts.values()),
        "approved_images": counts.get(ImageStatus.APPROVED, 0),
        "qc_failed_images": counts.get(ImageStatus.QC_FAILED, 0),
        "failed_images": counts.get(ImageStatus.FAILED, 0)
        + counts.get(ImageStatus.RETRY_FAILED, 0),
    }


def refresh_totals(execution_id: int) -> None:
    """Store the current per-status counts on the execution (while it runs, for listings)."""
    with _session() as s:
        values = _totals(_counts(s, execution_id))
        s.execute(update(JobExecution).where(JobExecution.id == execution_id).values(**values))


def set_execution_log_path(execution_id: int, log_path: str) -> None:
    with _session() as s:
        s.execute(
            update(JobExecution).where(JobExecution.id == execution_id).values(log_path=log_path)
        )


def add_usage(execution_id: int, delta: dict[str, dict[str, float]]) -> None:
    """Add per-service counters to the execution's usage (incremented, never overwritten, so
    several processes and a resumed run all add up)."""
    if not any(delta.values()):
        return
    with _session() as s:
        query = select(JobExecution).where(JobExecution.id == execution_id)
        if s.get_bind().dialect.name == "postgresql":
            query = query.with_for_update()
        row = s.scalars(query).one()
        usage = {service: dict(values) for service, values in (row.usage or {}).items()}
        for service, values in delta.items():
            entry = usage.setdefault(service, {})
            for key, amount in values.items():
                entry[key] = round(entry.get(key, 0) + amount, 6)
        row.usage = usage


def request_stop(execution_id: int, reason: str) -> ExecutionRecord:
    """Ask the running execution to stop gracefully; any process running it sees this."""
    with _session() as s:
        row = _get(s, JobExecution, execution_id, "job")
        if row.stop_requested_at is None:
            row.stop_requested_at = utcnow()
            row.stop_reason = reason
        s.flush()
        return _record(ExecutionRecord, row)


def job_control(execution_id: int, *, beat: bool) -> tuple[str, str | None]:
    """(status, stop reason or None) of an execution; with `beat`, write its heartbeat."""
    with _session() as s:
        if beat:
            s.execute(
                update(JobExecution)
                .where(JobExecution.id == execution_id)
                .values(heartbeat_at=utcnow())
            )
        row = s.execute(
            select(JobExecution.status, JobExecution.stop_reason).where(
                JobExecution.id == execution_id
            )
        ).one()
        return str(row[0]), row[1]


def claim_execution(
    execution_id: int,
    *,
    flow_run_id: str | None,
    worker_host: str,
    worker_pid: int,
    resume: bool,
) -> ExecutionRecord:
    """This process runs the execution now: a new one (`running` already) or a resume
    (`cancelled`/`interrupted` -> `running`, the stop request cleared). Either way the flow run
    is added to the execution's list of flow runs."""
    with _session() as s:
        row = _get(s, JobExecution, execution_id, "job")
        runs = list(row.flow_run_ids or [])
        if flow_run_id and flow_run_id not in runs:
            runs.append(flow_run_id)
        values: dict[str, Any] = {
            "flow_run_ids": runs,
            "worker_host": worker_host,
            "worker_pid": worker_pid,
            "heartbeat_at": utcnow(),
        }
        if flow_run_id:
            values["flow_run_id"] = flow_run_id
        if resume:
            values.update(
                stop_requested_at=None, stop_reason=None, completed_at=None, error_message=None
            )
            _cas(
                s,
                JobExecution,
                JOB_TRANSITIONS,
                execution_id,
                (JobStatus.CANCELLED, JobStatus.INTERRUPTED),
                JobStatus.RUNNING,
                "job",
                values,
            )
        else:
            s.execute(update(JobExecution).where(JobExecution.id == execution_id).values(**values))
        s.flush()
        s.expire(row)
        return _record(ExecutionRecord, _get(s, JobExecution, execution_id, "job"))


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
    with _reading() as s:
        record: SlotRecord = _fetch(s, SlotRecord, GenerationSlot, slot_id, "slot")
        return record


def get_slot_by_number(execution_id: int, slot: int) -> SlotRecord | None:
    """Slot number `slot` of an execution, or None."""
    with _reading() as s:
        row = s.scalars(
            select(GenerationSlot).where(
                GenerationSlot.execution_id == execution_id, GenerationSlot.slot == slot
            )
        ).first()
        return None if row is None else _record(SlotRecord, row)


def list_slots(execution_id: int) -> list[SlotRecord]:
    with _reading() as s:
        rows = s.scalars(
            select(GenerationSlot)
            .where(GenerationSlot.execution_id == execution_id)
            .order_by(GenerationSlot.slot)
        )
        return [_record(SlotRecord, row) for row in rows]


_SLOT_FIELDS = {"prompt", "provider_task_id", "error", "error_code"}


def update_slot(slot_id: int, **fields: Any) -> None:
    """Update a slot's data; its status changes only through `transition_slot`."""
    unknown = set(fields) - _SLOT_FIELDS
    if unknown:
        raise ValueError(f"cannot update slot fields {sorted(unknown)}")
    with _session() as s:
        s.execute(update(GenerationSlot).where(GenerationSlot.id == slot_id).values(**fields))


def transition_slot(
    slot_id: int,
    expected: str | Collection[str],
    new: SlotStatus,
    *,
    count_attempt: bool = False,
    **fields: Any,
) -> None:
    """Change a slot's status by compare-and-set (see `statuses.SLOT_TRANSITIONS`)."""
    unknown = set(fields) - _SLOT_FIELDS
    if unknown:
        raise ValueError(f"cannot update slot fields {sorted(unknown)}")
    values = dict(fields)
    if count_attempt:
        values["attempts"] = GenerationSlot.attempts + 1
    with _session() as s:
        _cas(s, GenerationSlot, SLOT_TRANSITIONS, slot_id, expected, new, "slot", values)


def open_slots(execution_id: int) -> list[SlotRecord]:
    """Slots of an execution not yet generated or failed, in slot order."""
    with _reading() as s:
        rows = s.scalars(
            select(GenerationSlot)
            .where(
                GenerationSlot.execution_id == execution_id,
                GenerationSlot.status.in_((SlotStatus.PENDING, SlotStatus.GENERATING)),
            )
            .order_by(GenerationSlot.slot)
        )
        return [_record(SlotRecord, row) for row in rows]


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


def add_images(
    execution_id: int,
    slot: int,
    images: Sequence[dict[str, Any]],
    *,
    slot_id: int | None = None,
    slot_fields: dict[str, Any] | None = None,
) -> list[int]:
    """Record all images of one generation in one transaction (all or none), status
    `generated` unless a dict says otherwise; each dict holds the `add_image` fields. With
    `slot_id`, the slot becomes `generated` in the same transaction. Returns the ids in order."""
    with _session() as s:
        rows = [
            GeneratedImage(
                execution_id=execution_id,
                slot=slot,
                **{"status": ImageStatus.GENERATED, **image},
            )
            for image in images
        ]
        s.add_all(rows)
        s.flush()
        if slot_id is not None:
            _cas(
                s,
                GenerationSlot,
                SLOT_TRANSITIONS,
                slot_id,
                SlotStatus.GENERATING,
                SlotStatus.GENERATED,
                "slot",
                {"error": None, "error_code": None, **(slot_fields or {})},
            )
        return [row.id for row in rows]


def get_image(image_id: int) -> ImageRecord:
    with _reading() as s:
        record: ImageRecord = _fetch(s, ImageRecord, GeneratedImage, image_id, "image")
        return record


def list_images(
    *,
    execution_id: int | None = None,
    status: str | None = None,
    slot: int | None = None,
    limit: int | None = None,
) -> list[ImageRecord]:
    with _reading() as s:
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
    "approved_by_hand",
}


def update_image(image_id: int, **fields: Any) -> ImageRecord:
    """Update an image row's data; only the fields the pipeline owns may change, and its
    status only through `transition_image`."""
    unknown = set(fields) - _IMAGE_FIELDS - {"status"}
    if unknown or "status" in fields:
        raise ValueError(f"cannot update image fields {sorted(unknown or {'status'})}")
    with _session() as s:
        row = _get(s, GeneratedImage, image_id, "image")
        for key, value in fields.items():
            setattr(row, key, value)
        s.flush()
        return _record(ImageRecord, row)


def transition_image(
    image_id: int, expected: str | Collection[str], new: ImageStatus, **fields: Any
) -> ImageRecord:
    """Change an image's status by compare-and-set (see `statuses.IMAGE_TRANSITIONS`), with
    the data that goes with it; raises TransitionError when the image was not `expected`."""
    unknown = set(fields) - _IMAGE_FIELDS
    if unknown:
        raise ValueError(f"cannot update image fields {sorted(unknown)}")
    with _session() as s:
        record: ImageRecord = _cas(
            s,
            GeneratedImage,
            IMAGE_TRANSITIONS,
            image_id,
            expected,
            new,
            "image",
            fields,
            ImageRecord,
        )
        return record


def open_images(execution_id: int) -> list[ImageRecord]:
    """Images of an execution the job engine has not finished (generated, qc_passed,
    processed), in slot order."""
    with _reading() as s:
        rows = s.scalars(
            select(GeneratedImage)
            .where(
                GeneratedImage.execution_id == execution_id,
                GeneratedImage.status.in_(OPEN_IMAGE_STATUSES),
            )
            .order_by(GeneratedImage.slot, GeneratedImage.image_index)
        )
        return [_record(ImageRecord, row) for row in rows]


def approve_image(
    image_id: int,
    judge: Callable[[list[tuple[int, str]]], int | None] | None,
    scope_execution_id: int | None,
    *,
    expected: str = ImageStatus.PROCESSED,
    rejected: ImageStatus = ImageStatus.QC_FAILED,
    **fields: Any,
) -> tuple[ImageRecord, int | None]:
    """Approve a `processed` image (setting `fields`) unless `judge` finds it a near-duplicate
    of an approved one (then `qc_failed`): (the image, the id it duplicates or None). `judge`
    gets the (id, hash) of the approved images in scope. The check and the approval are one
    transaction, serialised across processes (an advisory lock on PostgreSQL, BEGIN IMMEDIATE
    on SQLite), so two near-twins approved at once cannot both pass."""
    with _session() as s:
        if judge is not None and s.get_bind().dialect.name == "postgresql":
            s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_APPROVAL_LOCK})
        duplicate_of = None
        if judge is not None:
            query = (
                select(GeneratedImage.id, GeneratedImage.phash)
                .where(GeneratedImage.phash.is_not(None))
                .where(GeneratedImage.status == ImageStatus.APPROVED)
                .where(GeneratedImage.id != image_id)
                .order_by(GeneratedImage.updated_at, GeneratedImage.id)
            )
            if scope_execution_id is not None:
                query = query.where(GeneratedImage.execution_id == scope_execution_id)
            duplicate_of = judge([(other, str(h)) for other, h in s.execute(query)])
        if duplicate_of is not None:
            values: dict[str, Any] = {"qc_reason": f"near-duplicate of {duplicate_of}"}
            new = rejected
        else:
            values = {"error": None, "error_code": None, **fields}
            new = ImageStatus.APPROVED
        _cas(
            s,
            GeneratedImage,
            IMAGE_TRANSITIONS,
            image_id,
            expected,
            new,
            "image",
            values,
        )
        return _record(ImageRecord, _get(s, GeneratedImage, image_id, "image")), duplicate_of


def approved_hashes(execution_id: int | None) -> list[tuple[int, str]]:
    """(image id, perceptual hash) of approved images, of one execution or the whole store,
    oldest first."""
    with _reading() as s:
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
    with _reading() as s:
        jobs: dict[str, int] = {
            str(status): int(n)
            for status, n in s.execute(
                select(JobExecution.status, func.count()).group_by(JobExecution.status)
            ).all()
        }
        images: dict[str, int] = {
            str(status): int(n)
            for status, n in s.execute(
                select(GeneratedImage.status, func.count()).group_by(GeneratedImage.status)
            ).all()
        }
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


# ---------------------------------------------------------------------------------------------
# Retries, reruns and manual approval: the work queue, image history, deleting jobs


@dataclasses.dataclass(frozen=True)
class WorkRecord:
    id: int
    kind: str
    batch: str
    position: int
    target_id: int
    execution_id: int | None
    result_id: int | None
    overrides: dict[str, Any]
    manual: bool
    status: str
    worker_host: str | None
    worker_pid: int | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


#: Work queue item statuses: a `running` item whose worker is gone is taken up again.
WORK_PENDING, WORK_RUNNING, WORK_DONE, WORK_FAILED = "pending", "running", "done", "failed"


def enqueue_retries(
    image_ids: Sequence[int],
    from_statuses: Collection[str],
    *,
    overrides: dict[str, Any],
    manual: bool,
) -> str:
    """Queue one batch of image retries: every image becomes `retry_pending` and gets a
    queue item, in one transaction (all or none). Returns the batch id; raises
    TransitionError naming the first image not in `from_statuses`."""
    batch = uuid.uuid4().hex
    with _session() as s:
        for position, image_id in enumerate(image_ids):
            _cas(
                s,
                GeneratedImage,
                IMAGE_TRANSITIONS,
                image_id,
                from_statuses,
                ImageStatus.RETRY_PENDING,
                "image",
                {},
            )
            row = _get(s, GeneratedImage, image_id, "image")
            s.add(
                WorkItem(
                    kind="retry",
                    batch=batch,
                    position=position,
                    target_id=image_id,
                    execution_id=row.execution_id,
                    overrides=dict(overrides),
                    manual=manual,
                    status=WORK_PENDING,
                )
            )
    return batch


def enqueue_reruns(execution_ids: Sequence[int], *, overrides: dict[str, Any]) -> str:
    """Queue one batch of reruns (run one after another, in the order given)."""
    batch = uuid.uuid4().hex
    with _session() as s:
        for position, execution_id in enumerate(execution_ids):
            _get(s, JobExecution, execution_id, "job")
            s.add(
                WorkItem(
                    kind="rerun",
                    batch=batch,
                    position=position,
                    target_id=execution_id,
                    overrides=dict(overrides),
                    manual=False,
                    status=WORK_PENDING,
                )
            )
    return batch


def claim_next_batch(
    kind: str, *, host: str, pid: int, gone: Callable[[str | None, int | None], bool]
) -> list[WorkRecord]:
    """Take the oldest batch of `kind` with work left (pending items, or running items whose
    worker is `gone`) for this worker; its unfinished items, in order. Empty when there is
    none, or when a live worker holds a running batch of `kind` (batches never overlap: that
    worker takes this one up after its own)."""
    with _session() as s:
        running = s.scalars(
            select(WorkItem).where(WorkItem.kind == kind, WorkItem.status == WORK_RUNNING)
        ).all()
        for item in running:
            if (item.worker_host, item.worker_pid) != (host, pid) and not gone(
                item.worker_host, item.worker_pid
            ):
                return []
        open_items = s.scalars(
            select(WorkItem)
            .where(WorkItem.kind == kind, WorkItem.status.in_((WORK_PENDING, WORK_RUNNING)))
            .order_by(WorkItem.id)
        ).all()
        if not open_items:
            return []
        batch = open_items[0].batch
        items = sorted((i for i in open_items if i.batch == batch), key=lambda i: i.position)
        for item in items:
            item.status = WORK_RUNNING
            item.worker_host, item.worker_pid = host, pid
            item.started_at = item.started_at or utcnow()
        s.flush()
        return [_record(WorkRecord, item) for item in items]


def finish_work(
    item_id: int, status: str, *, error: str | None = None, result_id: int | None = None
) -> None:
    """Mark a queue item done or failed (or record the execution a rerun created)."""
    values: dict[str, Any] = {"status": status}
    if status in (WORK_DONE, WORK_FAILED):
        values["finished_at"] = utcnow()
    if error is not None:
        values["error"] = error
    if result_id is not None:
        values["result_id"] = result_id
    with _session() as s:
        s.execute(update(WorkItem).where(WorkItem.id == item_id).values(**values))


def list_work(kind: str | None = None, statuses: Collection[str] | None = None) -> list[WorkRecord]:
    with _session() as s:
        query = select(WorkItem).order_by(WorkItem.id)
        if kind:
            query = query.where(WorkItem.kind == kind)
        if statuses:
            query = query.where(WorkItem.status.in_(statuses))
        return [_record(WorkRecord, row) for row in s.scalars(query)]


def add_image_history(image_id: int, entry: dict[str, Any]) -> None:
    """Append one attempt (retry or manual approval) to an image's history."""
    with _session() as s:
        row = _get(s, GeneratedImage, image_id, "image")
        row.history = [*(row.history or []), entry]


def executions_by_id(execution_ids: Collection[int]) -> list[ExecutionRecord]:
    with _session() as s:
        rows = s.scalars(
            select(JobExecution).where(JobExecution.id.in_(execution_ids)).order_by(JobExecution.id)
        )
        return [_record(ExecutionRecord, row) for row in rows]


def delete_execution(execution_id: int) -> None:
    """Delete an execution with its slots, images and queued work; its configuration row
    too when no other execution uses it. Reruns of it keep their rows (`rerun_of_id` cleared)."""
    with _session() as s:
        row = _get(s, JobExecution, execution_id, "job")
        configuration_id = row.configuration_id
        image_ids = select(GeneratedImage.id).where(GeneratedImage.execution_id == execution_id)
        s.execute(
            delete(WorkItem).where(
                (WorkItem.execution_id == execution_id)
                | ((WorkItem.kind == "retry") & WorkItem.target_id.in_(image_ids))
                | ((WorkItem.kind == "rerun") & (WorkItem.target_id == execution_id))
            )
        )
        s.execute(
            update(JobExecution)
            .where(JobExecution.rerun_of_id == execution_id)
            .values(rerun_of_id=None)
        )
        s.execute(delete(GeneratedImage).where(GeneratedImage.execution_id == execution_id))
        s.execute(delete(GenerationSlot).where(GenerationSlot.execution_id == execution_id))
        s.execute(delete(JobExecution).where(JobExecution.id == execution_id))
        if configuration_id is not None:
            others = s.scalar(
                select(func.count())
                .select_from(JobExecution)
                .where(JobExecution.configuration_id == configuration_id)
            )
            if not others:
                s.execute(delete(JobConfiguration).where(JobConfiguration.id == configuration_id))
