"""Executions left `running` by a process that was killed (no hook could run), recovered the
next time genfactory starts a job or lists jobs on the same machine. Imports no Prefect, so
the CLI's listings stay fast."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from genfactory.statuses import ImageStatus, JobStatus
from genfactory.storage import repository


def this_worker() -> tuple[str, int]:
    """(host name, process id) recorded on the executions this process runs."""
    return socket.gethostname(), os.getpid()


def close_unfinished_images(execution_id: int, reason: str, code: str) -> int:
    """The execution has ended: every image still `generated` becomes `failed` with `reason`.

    It keeps its unprocessed original in temp (for a retry); a processed file it already had
    in the output directory, not yet approved, is removed so nobody uploads it. Returns how
    many images were closed.
    """
    images = repository.list_images(execution_id=execution_id, status=ImageStatus.GENERATED)
    for image in images:
        fields: dict[str, object] = {}
        if image.final_image_path and image.temp_image_path:
            Path(image.final_image_path).unlink(missing_ok=True)
            fields["final_image_path"] = None
        repository.update_image(
            image.id, status=ImageStatus.FAILED, error=reason, error_code=code, **fields
        )
    return len(images)


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


def recover_stale_executions() -> list[int]:
    """Mark `failed` every execution still `running` on this host whose process is gone
    (killed, crashed, machine restarted); returns their ids. Executions run elsewhere are
    left to their own host: a run in a container that is gone, on a shared store, stays
    `running` until Prefect reports its flow run crashed."""
    host, pid = this_worker()
    recovered = []
    for execution in repository.list_executions(limit=10_000, status=JobStatus.RUNNING):
        if execution.worker_host != host or execution.worker_pid in (None, pid):
            continue
        if _process_alive(int(str(execution.worker_pid))):
            continue
        message = (
            f"interrupted: the process running it (pid {execution.worker_pid}) ended before "
            "the job finished"
        )
        close_unfinished_images(execution.id, message, "interrupted")
        repository.finish_execution(execution.id, status=JobStatus.FAILED, error_message=message)
        recovered.append(execution.id)
    return recovered
