"""The results store schema (docs/SPEC.md §7): SQLAlchemy 2 typed models, written once.

The models are also the records callers get back: the repository hands out detached
instances (`ExecutionRecord` is `JobExecution`...), read as `record.field`. Statuses are
stored as strings (see `genfactory.statuses`) so new statuses need no migration. Any change
here needs an Alembic revision in `storage/migrations/versions/`; tests/test_schema.py fails
when the migrations and these models disagree.

Columns marked `info=FIXED` are written when their row is created, or only by their own
repository method (`status` by a transition, `attempts` by `count_attempt`, `history` by
`add_image_history`): the `update_*` allow-lists are the other columns (`updatable`).
"""

from __future__ import annotations

import functools
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeAlias

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_mapping_id() -> str:
    return uuid.uuid4().hex


#: Column info of a column `update_image` / `update_slot` may not set (see the module doc).
FIXED: dict[str, Any] = {"fixed": True}


class UTCDateTime(TypeDecorator[datetime]):
    """`DateTime(timezone=True)` that always reads back an aware UTC time (SQLite hands back
    naive datetimes; every time in the store is UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}

    def as_dict(self) -> dict[str, Any]:
        """Every column of the row by attribute name (the record's fields), e.g. for JSON."""
        return {key: getattr(self, key) for key in column_keys(type(self))}

    def __eq__(self, other: object) -> bool:
        """Records compare by value, like the dataclasses they replace (the ORM itself tracks
        instances by identity, never by `==`)."""
        if not isinstance(other, Base):
            return NotImplemented
        return type(self) is type(other) and self.as_dict() == other.as_dict()

    #: By identity: a record holds dicts, so no value hash (the old records had none either).
    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={getattr(self, 'id', None)!r})"


@functools.cache
def column_names(model: type[Base]) -> dict[str, str]:
    """Attribute name -> column name of a model's columns, in table order (`image_metadata` is
    stored as `metadata`)."""
    return {attr.key: attr.columns[0].name for attr in sa_inspect(model).column_attrs}


@functools.cache
def column_keys(model: type[Base]) -> tuple[str, ...]:
    """The attribute names of a model's columns, in table order."""
    return tuple(column_names(model))


_TIMESTAMPS = frozenset({"created_at", "updated_at"})


def updatable(model: type[Base]) -> frozenset[str]:
    """The columns `update_*` may set: all but the primary key, the timestamps and those
    marked `info=FIXED`."""
    return frozenset(
        attr.key
        for attr in sa_inspect(model).column_attrs
        if not attr.columns[0].primary_key
        and attr.key not in _TIMESTAMPS
        and not attr.columns[0].info.get("fixed")
    )


class JobExecution(Base):
    __tablename__ = "job_executions"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: The execution this one reran, when it is a rerun.
    rerun_of_id: Mapped[int | None] = mapped_column(
        ForeignKey("job_executions.id", ondelete="SET NULL")
    )
    label: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), index=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    total_images: Mapped[int] = mapped_column(Integer, default=0)
    approved_images: Mapped[int] = mapped_column(Integer, default=0)
    qc_failed_images: Mapped[int] = mapped_column(Integer, default=0)
    failed_images: Mapped[int] = mapped_column(Integer, default=0)
    error_message: Mapped[str | None] = mapped_column(Text)
    #: The settings as run, secrets removed (exports and reruns read this).
    settings_snapshot: Mapped[dict[str, Any]] = mapped_column(JSON)
    flow_run_id: Mapped[str | None] = mapped_column(String(64), index=True)
    #: Host and process running the execution: a `running` row whose process is gone is stale.
    worker_host: Mapped[str | None] = mapped_column(String(255))
    worker_pid: Mapped[int | None] = mapped_column(Integer)
    #: Per-service calls, retries, failures and consumption (credits, tokens, cost).
    usage: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    output_dir: Mapped[str | None] = mapped_column(Text)
    temp_dir: Mapped[str | None] = mapped_column(Text)
    log_path: Mapped[str | None] = mapped_column(Text)
    #: Set by `genfactory jobs stop`, Ctrl-C or a cancel in the UI; the running job polls it.
    stop_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    stop_reason: Mapped[str | None] = mapped_column(Text)
    #: Written by the running job every few seconds: a `running` row whose heartbeat is old
    #: belongs to a worker that died, on any host.
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: Every Prefect flow run that worked on this execution (the first run, then resumes).
    flow_run_ids: Mapped[list[Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    slots: Mapped[list[GenerationSlot]] = relationship(
        back_populates="execution", cascade="all, delete-orphan", passive_deletes=True
    )
    images: Mapped[list[GeneratedImage]] = relationship(
        back_populates="execution", cascade="all, delete-orphan", passive_deletes=True
    )


class GenerationSlot(Base):
    """One prompt sent to the image provider; the unit a resume picks up from."""

    __tablename__ = "generation_slots"
    __table_args__ = (
        Index("ix_generation_slots_execution_slot", "execution_id", "slot", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    execution_id: Mapped[int] = mapped_column(
        ForeignKey("job_executions.id", ondelete="CASCADE"), info=FIXED
    )
    slot: Mapped[int] = mapped_column(Integer, info=FIXED)
    keyword: Mapped[str] = mapped_column(Text, info=FIXED)
    variables: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, info=FIXED)
    aspect_ratio: Mapped[str] = mapped_column(String(20), info=FIXED)
    width: Mapped[int] = mapped_column(Integer, info=FIXED)
    height: Mapped[int] = mapped_column(Integer, info=FIXED)
    system_prompt: Mapped[str] = mapped_column(Text, info=FIXED)
    prompt: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), info=FIXED)
    #: The provider's task id, recorded as soon as it exists, so a resume polls, not re-creates.
    provider_task_id: Mapped[str | None] = mapped_column(String(200))
    attempts: Mapped[int] = mapped_column(Integer, default=0, info=FIXED)
    error: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(50))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    execution: Mapped[JobExecution] = relationship(back_populates="slots")


class GeneratedImage(Base):
    __tablename__ = "generated_images"
    __table_args__ = (
        Index("ix_generated_images_execution_status", "execution_id", "status"),
        # One row per image of a generation: a retried or resumed slot can never add twice.
        Index("ix_generated_images_slot_image", "execution_id", "slot", "image_index", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    image_mapping_id: Mapped[str] = mapped_column(
        String(64), unique=True, default=new_mapping_id, info=FIXED
    )
    execution_id: Mapped[int] = mapped_column(
        ForeignKey("job_executions.id", ondelete="CASCADE"), info=FIXED
    )
    slot: Mapped[int] = mapped_column(Integer, info=FIXED)
    image_index: Mapped[int] = mapped_column(Integer, default=0, info=FIXED)
    generation_prompt: Mapped[str] = mapped_column(Text, info=FIXED)
    keyword: Mapped[str | None] = mapped_column(Text, info=FIXED)
    aspect_ratio: Mapped[str | None] = mapped_column(String(20), info=FIXED)
    seed: Mapped[int | None] = mapped_column(Integer, info=FIXED)
    status: Mapped[str] = mapped_column(String(20), index=True, info=FIXED)
    qc_reason: Mapped[str | None] = mapped_column(Text)
    temp_image_path: Mapped[str | None] = mapped_column(Text)
    final_image_path: Mapped[str | None] = mapped_column(Text)
    media_type: Mapped[str | None] = mapped_column(String(50))
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    #: Perceptual hash (hex) of the approved image, for near-duplicate checks.
    phash: Mapped[str | None] = mapped_column(String(32))
    # "metadata" is reserved by SQLAlchemy's declarative base, hence the attribute name.
    image_metadata: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    processing_settings: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(50))
    #: True when `genfactory images approve` overrode a qc_failed verdict.
    approved_by_hand: Mapped[bool | None] = mapped_column(Boolean)
    #: Every retry or manual approval: when, with which settings, how it ended.
    history: Mapped[list[Any] | None] = mapped_column(JSON, info=FIXED)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    execution: Mapped[JobExecution] = relationship(back_populates="images")


class WorkItem(Base):
    """One queued retry (an image) or rerun (a job), so a crash loses no queued work: the
    items of a batch run one after another, and the next `genfactory retry` / `rerun` takes
    up what a dead worker left."""

    __tablename__ = "work_queue"
    __table_args__ = (Index("ix_work_queue_kind_status", "kind", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    #: "retry" (target: an image) or "rerun" (target: the execution to run again).
    kind: Mapped[str] = mapped_column(String(20))
    batch: Mapped[str] = mapped_column(String(64))
    position: Mapped[int] = mapped_column(Integer)
    target_id: Mapped[int] = mapped_column(Integer)
    #: The job the retried image belongs to.
    execution_id: Mapped[int | None] = mapped_column(Integer)
    #: The execution a rerun created.
    result_id: Mapped[int | None] = mapped_column(Integer)
    #: Dotted-name setting overrides (`--set`), secrets never.
    overrides: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: A manual approval (no near-duplicate check), not a retry.
    manual: Mapped[bool] = mapped_column(Boolean, default=False)
    #: pending, running, done or failed.
    status: Mapped[str] = mapped_column(String(20))
    worker_host: Mapped[str | None] = mapped_column(String(255))
    worker_pid: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


#: The records the repository hands out: detached instances of the models, read-only by
#: convention (changing one changes nothing in the store).
ExecutionRecord: TypeAlias = JobExecution
SlotRecord: TypeAlias = GenerationSlot
ImageRecord: TypeAlias = GeneratedImage
WorkRecord: TypeAlias = WorkItem
