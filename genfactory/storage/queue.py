"""The work queue: retries (images) and reruns (jobs) queued in batches, so a crash loses no
queued work and the next `genfactory retry` / `rerun` takes up what a dead worker left."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Sequence
from typing import Any

from sqlalchemy import exists, select, update

from genfactory.statuses import IMAGE_TRANSITIONS, ImageStatus
from genfactory.storage.base import StatusChange, StoreBase, cas, get_row
from genfactory.storage.models import (
    ExecutionRecord,
    GeneratedImage,
    GenerationSlot,
    JobExecution,
    WorkItem,
    WorkRecord,
    utcnow,
)

#: Work queue item statuses: a `running` item whose worker is gone is taken up again.
WORK_PENDING, WORK_RUNNING, WORK_DONE, WORK_FAILED = "pending", "running", "done", "failed"


class Queue(StoreBase):
    """The work-queue queries of the repository."""

    def enqueue_retries(
        self,
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
        with self._writing() as s:
            for position, image_id in enumerate(image_ids):
                cas(
                    s,
                    StatusChange(
                        GeneratedImage,
                        IMAGE_TRANSITIONS,
                        image_id,
                        from_statuses,
                        ImageStatus.RETRY_PENDING,
                        "image",
                        {},
                    ),
                )
                row = get_row(s, GeneratedImage, image_id, "image")
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

    def enqueue_reruns(self, execution_ids: Sequence[int], *, overrides: dict[str, Any]) -> str:
        """Queue one batch of reruns (run one after another, in the order given)."""
        batch = uuid.uuid4().hex
        with self._writing() as s:
            for position, execution_id in enumerate(execution_ids):
                get_row(s, JobExecution, execution_id, "job")
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
        self, kind: str, *, host: str, pid: int, gone: Callable[[str | None, int | None], bool]
    ) -> list[WorkRecord]:
        """Take the oldest batch of `kind` with work left (pending items, or running items
        whose worker is `gone`) for this worker; its unfinished items, in order. Empty when
        there is none, or when a live worker holds a running batch of `kind` (batches never
        overlap: that worker takes this one up after its own)."""
        with self._writing() as s:
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
            return items

    def finish_work(
        self,
        item_id: int,
        status: str,
        *,
        error: str | None = None,
        result_id: int | None = None,
    ) -> None:
        """Mark a queue item done or failed (or record the execution a rerun created)."""
        values: dict[str, Any] = {"status": status}
        if status in (WORK_DONE, WORK_FAILED):
            values["finished_at"] = utcnow()
        if error is not None:
            values["error"] = error
        if result_id is not None:
            values["result_id"] = result_id
        with self._writing() as s:
            s.execute(update(WorkItem).where(WorkItem.id == item_id).values(**values))

    def list_work(
        self, kind: str | None = None, statuses: Collection[str] | None = None
    ) -> list[WorkRecord]:
        with self._reading() as s:
            query = select(WorkItem).order_by(WorkItem.id)
            if kind:
                query = query.where(WorkItem.kind == kind)
            if statuses:
                query = query.where(WorkItem.status.in_(statuses))
            return list(s.scalars(query))

    def unrecorded_rerun(self, item_id: int, source_id: int) -> ExecutionRecord | None:
        """The rerun execution of `source_id` a worker created for queue item `item_id` but
        was killed before recording: created since the item was queued, with its slots, and
        the result of no queue item. None when there is none."""
        with self._reading() as s:
            queued_at = select(WorkItem.created_at).where(WorkItem.id == item_id)
            recorded = select(WorkItem.result_id).where(WorkItem.result_id.is_not(None))
            query = (
                select(JobExecution)
                .where(JobExecution.rerun_of_id == source_id)
                .where(JobExecution.created_at >= queued_at.scalar_subquery())
                .where(JobExecution.id.not_in(recorded))
                .where(exists().where(GenerationSlot.execution_id == JobExecution.id))
                .order_by(JobExecution.id)
                .limit(1)
            )
            return s.scalars(query).first()
