"""A job's fan-out and end: the heap frozen while its slots run, its runtime closed, and a job
never left `running` after its run ended (the flow-state hooks for crashes, cancels and
failures; killed processes, where no hook runs, are found by `engine.recovery`)."""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import Iterator
from typing import Any

from genfactory.engine.runtime import peek_runtime, release_runtime
from genfactory.logs import close_job_log, redact
from genfactory.startup import resume_collection
from genfactory.statuses import JobStatus
from genfactory.storage import repository
from genfactory.storage.repository import TransitionError

logger = logging.getLogger("genfactory.lifecycle")


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Keep the objects alive at the fan-out's start (Prefect, pydantic and SQLAlchemy's
    modules and caches: ~230,000 of them) out of the cyclic garbage collector while the slots
    run. A full collection walked them all again, ~0.1 s with the GIL held, every slot thread
    stalled meanwhile; frozen, one takes ~0.01 s. No collection first: the start-up's garbage
    (about 7,000 objects, the collector paused since the console script began: `startup`) is
    not worth the first slot's ~0.1 s. Unfrozen afterwards, so a long-lived worker collects
    them (and any garbage frozen with them) again."""
    gc.freeze()
    resume_collection()  # the command's start-up is over (its imports are done)
    try:
        yield
    finally:
        gc.unfreeze()


def mark_stopped(execution_id: int | None, status: JobStatus, message: str) -> None:
    """Record that the run working on `execution_id` ended early, if it is still `running`:
    `interrupted` (crash, failure: resumable) or `cancelled`. Open slots and images are left
    as they are for `genfactory resume`."""
    if execution_id is None:
        return
    try:
        message = redact(message)
        runtime = peek_runtime(execution_id)
        if runtime is not None:
            runtime.stop(message, by_user=status == JobStatus.CANCELLED)
            runtime.flush_usage()
        repository.transition_execution(
            execution_id, JobStatus.RUNNING, status, error_message=message
        )
        repository.refresh_totals(execution_id)
    except TransitionError:
        pass  # already ended
    except Exception:  # a hook must never mask the original failure
        logger.exception("could not record the end of job %s", execution_id)
    finally:
        close_runtime(execution_id)


def execution_of_flow_run(flow_run: Any) -> int | None:
    """The execution a flow run worked on (a new job or a resume)."""
    try:
        execution = repository.find_execution_by_flow_run(str(flow_run.id))
    except Exception:
        return None
    return execution.id if execution is not None else None


def close_runtime(execution_id: int) -> None:
    """Close providers and the job's log file."""
    runtime = release_runtime(execution_id)
    if runtime is not None and runtime.log_handler is not None:
        close_job_log(runtime.log_handler)
