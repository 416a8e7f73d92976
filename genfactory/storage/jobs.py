"""Executions (jobs): create, read, change status, count, control, delete."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from genfactory.statuses import JOB_TRANSITIONS, ImageStatus, JobStatus
from genfactory.storage.base import StatusChange, StoreBase, cas, cas_returning, fetch, get_row
from genfactory.storage.models import (
    ExecutionRecord,
    GeneratedImage,
    GenerationSlot,
    JobExecution,
    WorkItem,
    utcnow,
)


def _counts(session: Session, execution_id: int) -> dict[str, int]:
    rows = session.execute(
        select(GeneratedImage.status, func.count())
        .where(GeneratedImage.execution_id == execution_id)
        .group_by(GeneratedImage.status)
    )
    return {str(status): int(count) for status, count in rows}


def _totals(counts: dict[str, int]) -> dict[str, int]:
    return {
        "total_images": sum(counts.values()),
        "approved_images": counts.get(ImageStatus.APPROVED, 0),
        "qc_failed_images": counts.get(ImageStatus.QC_FAILED, 0),
        "failed_images": counts.get(ImageStatus.FAILED, 0)
        + counts.get(ImageStatus.RETRY_FAILED, 0),
    }


class Jobs(StoreBase):
    """The execution queries of the repository."""

    def create_execution(
        self,
        *,
        label: str,
        settings_snapshot: dict[str, Any],
        output_dir: str,
        temp_dir: str,
        log_path: str | None = None,
        flow_run_id: str | None = None,
        rerun_of_id: int | None = None,
        worker_host: str | None = None,
        worker_pid: int | None = None,
    ) -> ExecutionRecord:
        """A new `running` execution holding its own settings snapshot (docs/SPEC.md §11: jobs with
        one label never share, nor overwrite, each other's settings)."""
        with self._writing() as s:
            execution = JobExecution(
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
            return execution

    def get_execution(self, execution_id: int) -> ExecutionRecord:
        with self._read_tx() as s:
            return fetch(s, JobExecution, execution_id, "job")

    def find_execution_by_flow_run(self, flow_run_id: str) -> ExecutionRecord | None:
        with self._reading() as s:
            return s.scalars(
                select(JobExecution).where(JobExecution.flow_run_id == flow_run_id)
            ).first()

    def list_executions(self, limit: int = 50, status: str | None = None) -> list[ExecutionRecord]:
        with self._reading() as s:
            query = select(JobExecution).order_by(JobExecution.id.desc()).limit(limit)
            if status:
                query = query.where(JobExecution.status == status)
            return list(s.scalars(query))

    def image_counts(self, execution_id: int) -> dict[str, int]:
        """Images of an execution per status."""
        with self._reading() as s:
            return _counts(s, execution_id)

    def transition_execution(
        self, /, execution_id: int, expected: str | Collection[str], new: JobStatus, **values: Any
    ) -> ExecutionRecord:
        """Change an execution's status by compare-and-set (see `statuses.JOB_TRANSITIONS`)."""
        with self._writing() as s:
            return cas_returning(
                s,
                StatusChange(
                    JobExecution, JOB_TRANSITIONS, execution_id, expected, new, "job", values
                ),
            )

    def finish_execution(
        self,
        execution_id: int,
        *,
        status: JobStatus | None = None,
        error_message: str | None = None,
    ) -> ExecutionRecord:
        """Store the final counts and status of a `running` execution. Without a status:
        `completed` if any image was approved, else `failed` (nothing usable)."""
        with self._writing() as s:
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
            return cas_returning(
                s,
                StatusChange(
                    JobExecution,
                    JOB_TRANSITIONS,
                    execution_id,
                    JobStatus.RUNNING,
                    status,
                    "job",
                    values,
                ),
            )

    def refresh_totals(self, execution_id: int) -> None:
        """Store the current per-status counts on the execution (while it runs, for listings)."""
        with self._writing() as s:
            values = _totals(_counts(s, execution_id))
            s.execute(update(JobExecution).where(JobExecution.id == execution_id).values(**values))

    def set_execution_log_path(self, execution_id: int, log_path: str) -> None:
        with self._writing() as s:
            s.execute(
                update(JobExecution)
                .where(JobExecution.id == execution_id)
                .values(log_path=log_path)
            )

    def add_usage(self, execution_id: int, delta: dict[str, dict[str, float]]) -> None:
        """Add per-service counters to the execution's usage (incremented, never overwritten,
        so several processes and a resumed run all add up)."""
        if not any(delta.values()):
            return
        with self._writing() as s:
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

    def request_stop(self, execution_id: int, reason: str) -> ExecutionRecord:
        """Ask the running execution to stop gracefully; any process running it sees this."""
        with self._writing() as s:
            row = get_row(s, JobExecution, execution_id, "job")
            if row.stop_requested_at is None:
                row.stop_requested_at = utcnow()
                row.stop_reason = reason
            s.flush()
            return row

    def job_control(self, execution_id: int, *, beat: bool) -> tuple[str, str | None]:
        """(status, stop reason or None) of an execution; with `beat`, write its heartbeat."""
        with self._writing() as s:
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
        self,
        execution_id: int,
        *,
        flow_run_id: str | None,
        worker_host: str,
        worker_pid: int,
        resume: bool,
    ) -> ExecutionRecord:
        """This process runs the execution now: a new one (`running` already) or a resume
        (`cancelled`/`interrupted` -> `running`, the stop request cleared). Either way the
        flow run is added to the execution's list of flow runs."""
        with self._writing() as s:
            row = get_row(s, JobExecution, execution_id, "job")
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
                cas(
                    s,
                    StatusChange(
                        JobExecution,
                        JOB_TRANSITIONS,
                        execution_id,
                        (JobStatus.CANCELLED, JobStatus.INTERRUPTED),
                        JobStatus.RUNNING,
                        "job",
                        values,
                    ),
                )
            else:
                s.execute(
                    update(JobExecution).where(JobExecution.id == execution_id).values(**values)
                )
            s.flush()
            s.expire(row)
            return get_row(s, JobExecution, execution_id, "job")

    def stats(self) -> dict[str, Any]:
        """Store-wide counts: executions per status, images per status."""
        with self._reading() as s:
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

    def delete_execution(self, execution_id: int) -> None:
        """Delete an execution with its slots, images and queued work. Reruns of it keep
        their rows (`rerun_of_id` cleared)."""
        with self._writing() as s:
            get_row(s, JobExecution, execution_id, "job")
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
