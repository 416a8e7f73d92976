"""A job never stays `running` after its run ended: flow-state hooks for crashes, cancels and
failures, and recovery of executions whose process was killed (where no hook could run)."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from genfactory.logs import redact
from genfactory.statuses import JobStatus
from genfactory.storage import repository
from genfactory.tasks.finish import close_runtime
from genfactory.tasks.runtime import peek_runtime

logger = logging.getLogger("genfactory.lifecycle")


def this_worker() -> tuple[str, int]:
    """(host name, process id) recorded on the executions this process runs."""
    return socket.gethostname(), os.getpid()


def mark_stopped(flow_run: Any, status: JobStatus, message: str) -> None:
    """Record the final status of the execution started by `flow_run`, if still running."""
    try:
        execution = repository.find_execution_by_flow_run(str(flow_run.id))
        if execution is None or execution.status != JobStatus.RUNNING:
            return
        runtime = peek_runtime(execution.id)
        if runtime is not None:
            repository.record_usage(execution.id, runtime.context.usage.snapshot())
        repository.finish_execution(execution.id, status=status, error_message=redact(message))
        close_runtime(execution.id)
    except Exception:  # a hook must never mask the original failure
        logger.exception("could not record the end of flow run %s", getattr(flow_run, "id", "?"))


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def recover_stale_executions() -> list[int]:
    """Mark `failed` every execution still `running` on this host whose process is gone
    (killed, crashed, machine restarted); returns their ids. Executions run elsewhere are
    left to their own host."""
    host, pid = this_worker()
    recovered = []
    for execution in repository.list_executions(limit=10_000, status=JobStatus.RUNNING):
        if execution.worker_host != host or execution.worker_pid in (None, pid):
            continue
        if _process_alive(int(str(execution.worker_pid))):
            continue
        repository.finish_execution(
            execution.id,
            status=JobStatus.FAILED,
            error_message=f"interrupted: the process running it (pid {execution.worker_pid}) "
            "ended before the job finished",
        )
        recovered.append(execution.id)
    return recovered
