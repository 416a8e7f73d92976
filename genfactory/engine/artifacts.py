"""Job progress: a Prefect progress artifact plus in-process events (CLI progress bar)."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact

from genfactory.progress import ProgressEvent, job_fraction, publish

logger = logging.getLogger("genfactory.progress")

#: The progress artifact is written at most this often (and always at the last slot): one
#: API request per finished slot cost the flow's thread a blocking round trip each time.
ARTIFACT_INTERVAL_SECONDS = 2.0


@dataclass
class JobProgress:
    execution_id: int
    label: str
    total_slots: int
    artifact_id: UUID | None = None
    done_slots: int = 0
    #: time.monotonic() of the last artifact write.
    artifact_written: float = 0.0


def start_progress(
    execution_id: int, label: str, total_slots: int, done_slots: int = 0
) -> JobProgress:
    """Initialisation done: 20 % (plus the slots a resumed job had finished before)."""
    state = JobProgress(
        execution_id=execution_id, label=label, total_slots=total_slots, done_slots=done_slots
    )
    try:
        artifact = create_progress_artifact(
            progress=_percent(done_slots, total_slots),
            key=artifact_key(label, execution_id, "progress"),
            description=f"Job {execution_id} '{label}': {total_slots} generation slots",
        )
        state.artifact_id = artifact if isinstance(artifact, UUID) else None
        state.artifact_written = time.monotonic()
    except Exception as exc:  # the API may be gone at exit; our store is the truth
        logger.debug("progress artifact not created: %s", exc)
    _publish(state, "initialized")
    return state


def advance(state: JobProgress, message: str = "") -> None:
    """One more slot finished: the CLI hears of every one; the Prefect artifact follows at
    most every `ARTIFACT_INTERVAL_SECONDS` and at the last slot."""
    state.done_slots += 1
    now = time.monotonic()
    due = now - state.artifact_written >= ARTIFACT_INTERVAL_SECONDS
    if state.artifact_id and (due or state.done_slots >= state.total_slots):
        state.artifact_written = now
        try:
            update_progress_artifact(
                state.artifact_id, progress=_percent(state.done_slots, state.total_slots)
            )
        except Exception as exc:
            logger.debug("progress artifact not updated: %s", exc)
    _publish(state, message)


def artifact_key(label: str, execution_id: int, kind: str) -> str:
    """Prefect artifact key of a job: lowercase letters, digits and dashes only."""
    slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")[:60] or "job"
    return f"{slug}-{execution_id}-{kind}"


def _percent(done: int, total: int) -> float:
    return min(100.0, round(job_fraction(done, total) * 100, 2))


def _publish(state: JobProgress, message: str) -> None:
    publish(
        ProgressEvent(
            execution_id=state.execution_id,
            label=state.label,
            done_slots=state.done_slots,
            total_slots=state.total_slots,
            fraction=job_fraction(state.done_slots, state.total_slots),
            message=message,
        )
    )
