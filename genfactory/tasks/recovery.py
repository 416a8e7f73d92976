"""Executions left `running` by a process that was killed (no hook could run), recovered the
next time genfactory starts a job or lists jobs on the same machine. Imports no Prefect, so
the CLI's listings stay fast."""

from __future__ import annotations

import os
import socket

from genfactory.statuses import JobStatus
from genfactory.storage import repository


def this_worker() -> tuple[str, int]:
    """(host name, process id) recorded on the executions this process runs."""
    return socket.gethostname(), os.getpid()


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
