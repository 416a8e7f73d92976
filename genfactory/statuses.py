"""Every status a job execution, a generation slot or an image can have (SPEC §5).

Stored as plain strings so adding a status later needs no schema migration.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}


class SlotStatus(StrEnum):
    """A generation slot: one prompt sent to the image provider."""

    PENDING = "pending"
    GENERATING = "generating"
    GENERATED = "generated"
    FAILED = "failed"


class ImageStatus(StrEnum):
    GENERATED = "generated"
    APPROVED = "approved"
    QC_FAILED = "qc_failed"
    FAILED = "failed"
    RETRY_PENDING = "retry_pending"
    PROCESSING = "processing"
    RETRY_FAILED = "retry_failed"


#: Statuses an image may be retried from (SPEC §5).
RETRYABLE_IMAGE_STATUSES = frozenset(
    {ImageStatus.QC_FAILED, ImageStatus.FAILED, ImageStatus.RETRY_FAILED}
)
