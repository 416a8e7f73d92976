"""The job engine's state machine: every status a job execution, a generation slot or an image
can have, and every change allowed between them (docs/SPEC.md §5).

The store applies each change as a compare-and-set (`UPDATE … WHERE status = expected`); a
change not listed here, or from a status other than the one expected, is refused with an error
naming both (`storage.repository.TransitionError`). Statuses are stored as plain strings, so a new
status needs no schema migration.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any


class JobStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    #: A graceful stop (jobs stop, Ctrl-C, a cancel in the Prefect UI): resumable.
    CANCELLED = "cancelled"
    #: The process was killed or crashed: resumable.
    INTERRUPTED = "interrupted"

    @property
    def is_final(self) -> bool:
        return self in {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}

    @property
    def is_resumable(self) -> bool:
        return self in RESUMABLE_JOB_STATUSES


class SlotStatus(StrEnum):
    """A generation slot: one prompt sent to the image provider."""

    PENDING = "pending"
    #: The create call may have been sent; the provider's task id is recorded once known.
    GENERATING = "generating"
    GENERATED = "generated"
    FAILED = "failed"


class ImageStatus(StrEnum):
    GENERATED = "generated"
    QC_PASSED = "qc_passed"
    PROCESSED = "processed"
    APPROVED = "approved"
    QC_FAILED = "qc_failed"
    FAILED = "failed"
    RETRY_PENDING = "retry_pending"
    PROCESSING = "processing"
    RETRY_FAILED = "retry_failed"


RESUMABLE_JOB_STATUSES = frozenset({JobStatus.CANCELLED, JobStatus.INTERRUPTED})

#: Images that need no more work from the job engine.
FINAL_IMAGE_STATUSES = frozenset(
    {ImageStatus.APPROVED, ImageStatus.QC_FAILED, ImageStatus.FAILED, ImageStatus.RETRY_FAILED}
)
#: Images the job engine still has to carry on (a resume picks them up).
OPEN_IMAGE_STATUSES = frozenset(
    {ImageStatus.GENERATED, ImageStatus.QC_PASSED, ImageStatus.PROCESSED}
)
FINAL_SLOT_STATUSES = frozenset({SlotStatus.GENERATED, SlotStatus.FAILED})

#: Statuses an image may be retried from (docs/SPEC.md §5).
RETRYABLE_IMAGE_STATUSES = frozenset(
    {ImageStatus.QC_FAILED, ImageStatus.FAILED, ImageStatus.RETRY_FAILED}
)

JOB_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.PENDING: frozenset({JobStatus.RUNNING, JobStatus.FAILED, JobStatus.CANCELLED}),
    JobStatus.RUNNING: frozenset(
        {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.INTERRUPTED}
    ),
    JobStatus.CANCELLED: frozenset({JobStatus.RUNNING}),
    JobStatus.INTERRUPTED: frozenset({JobStatus.RUNNING, JobStatus.FAILED}),
    JobStatus.COMPLETED: frozenset(),
    JobStatus.FAILED: frozenset(),
}

SLOT_TRANSITIONS: dict[SlotStatus, frozenset[SlotStatus]] = {
    SlotStatus.PENDING: frozenset({SlotStatus.GENERATING, SlotStatus.FAILED}),
    # generating -> generating: a resumed slot counts another attempt.
    SlotStatus.GENERATING: frozenset(
        {SlotStatus.GENERATING, SlotStatus.GENERATED, SlotStatus.FAILED}
    ),
    SlotStatus.GENERATED: frozenset(),
    SlotStatus.FAILED: frozenset(),
}

IMAGE_TRANSITIONS: dict[ImageStatus, frozenset[ImageStatus]] = {
    ImageStatus.GENERATED: frozenset(
        {ImageStatus.QC_PASSED, ImageStatus.QC_FAILED, ImageStatus.FAILED}
    ),
    # qc_passed -> qc_failed: a near-duplicate of an approved image, found before processing.
    ImageStatus.QC_PASSED: frozenset(
        {ImageStatus.PROCESSED, ImageStatus.QC_FAILED, ImageStatus.FAILED}
    ),
    # processed -> qc_failed: a near-duplicate approved meanwhile, found at approval.
    ImageStatus.PROCESSED: frozenset(
        {ImageStatus.APPROVED, ImageStatus.QC_FAILED, ImageStatus.FAILED}
    ),
    ImageStatus.APPROVED: frozenset(),
    ImageStatus.QC_FAILED: frozenset({ImageStatus.RETRY_PENDING}),
    ImageStatus.FAILED: frozenset({ImageStatus.RETRY_PENDING}),
    ImageStatus.RETRY_FAILED: frozenset({ImageStatus.RETRY_PENDING}),
    ImageStatus.RETRY_PENDING: frozenset({ImageStatus.PROCESSING, ImageStatus.RETRY_FAILED}),
    ImageStatus.PROCESSING: frozenset({ImageStatus.APPROVED, ImageStatus.RETRY_FAILED}),
}


def allowed(table: Mapping[Any, frozenset[Any]], current: object, new: object) -> bool:
    """True when `current -> new` is a change the state machine allows."""
    return new in table.get(current, frozenset())
