"""A job never stays `running` after its run ended: flow-state hooks for crashes, cancels and
failures (killed processes, where no hook runs, are handled by `tasks.recovery`)."""

from __future__ import annotations

import logging
from typing import Any

from genfactory.logs import redact
from genfactory.statuses import JobStatus
from genfactory.storage import repository
from genfactory.tasks.finish import close_runtime
from genfactory.tasks.recovery import close_unfinished_images
from genfactory.tasks.runtime import peek_runtime

logger = logging.getLogger("genfactory.lifecycle")


def mark_stopped(flow_run: Any, status: JobStatus, message: str) -> None:
    """Record the final status of the execution started by `flow_run`, if still running."""
    try:
        execution = repository.find_execution_by_flow_run(str(flow_run.id))
        if execution is None or execution.status != JobStatus.RUNNING:
            return
        message = redact(message)
        runtime = peek_runtime(execution.id)
        if runtime is not None:
            runtime.stop(message)  # threads still running start nothing new
            repository.record_usage(execution.id, runtime.context.usage.snapshot())
        close_unfinished_images(execution.id, f"job {status}: {message}", str(status))
        repository.finish_execution(execution.id, status=status, error_message=message)
        close_runtime(execution.id)
    except Exception:  # a hook must never mask the original failure
        logger.exception("could not record the end of flow run %s", getattr(flow_run, "id", "?"))
