"""Executions left `running` by a worker that died (killed, crashed, machine restarted) become
`interrupted`, ready for `genfactory resume`. Found the next time genfactory starts a job or
lists jobs: on this host by process id at once, on any host by a heartbeat older than
`control.STALE_AFTER_SECONDS`. Their images and slots are left as they are, so a resume picks
them up. Imports no Prefect, so the CLI's listings stay fast."""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta

from genfactory.engine.control import STALE_AFTER_SECONDS
from genfactory.statuses import JobStatus
from genfactory.storage import repository
from genfactory.storage.repository import TransitionError


def this_worker() -> tuple[str, int]:
    """(host name, process id) recorded on the executions this process runs."""
    return socket.gethostname(), os.getpid()


def _process_alive(pid: int) -> bool:
    if os.name != "posix":  # os.kill(pid, 0) would send CTRL_C_EVENT on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but not ours (EPERM), or unknown: never recover a live job
        return True
    return True


def _worker_gone(execution: repository.ExecutionRecord, host: str, pid: int) -> str | None:
    """Why the execution's worker is known to be gone, or None."""
    if execution.worker_host == host and execution.worker_pid not in (None, pid):
        if not _process_alive(int(str(execution.worker_pid))):
            return f"the process running it (pid {execution.worker_pid}) ended"
        return None
    beat = execution.heartbeat_at
    if beat is not None and datetime.now(UTC) - beat > timedelta(seconds=STALE_AFTER_SECONDS):
        return (
            f"its worker ({execution.worker_host}, pid {execution.worker_pid}) sent no heartbeat "
            f"for {int((datetime.now(UTC) - beat).total_seconds())} s"
        )
    return None


def recover_stale_executions() -> list[int]:
    """Mark `interrupted` every `running` execution whose worker is gone; returns their ids."""
    host, pid = this_worker()
    recovered = []
    for execution in repository.list_executions(limit=10_000, status=JobStatus.RUNNING):
        why = _worker_gone(execution, host, pid)
        if why is None:
            continue
        try:
            repository.transition_execution(
                execution.id,
                JobStatus.RUNNING,
                JobStatus.INTERRUPTED,
                error_message=f"interrupted: {why} before the job finished; "
                f"continue it with `genfactory resume {execution.id}`",
            )
        except TransitionError:
            continue  # it finished meanwhile
        repository.refresh_totals(execution.id)
        recovered.append(execution.id)
    return recovered
