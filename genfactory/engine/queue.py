"""The store's work queue as the retry and rerun flows use it: this worker takes a batch, and
a batch whose worker died (killed, crashed) is taken up by the next one."""

from __future__ import annotations

import os
import socket

from genfactory.storage import repository
from genfactory.storage.repository import WorkRecord


def worker_gone(host: str | None, pid: int | None) -> bool:
    """True when the worker that holds a queue item is known to have ended: only decidable
    on this host (another host's worker is assumed alive)."""
    if host != socket.gethostname() or pid is None or os.name != "posix":
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists but not ours: never take over a live worker's batch
        return False
    return False


def claim_batch(kind: str) -> list[WorkRecord]:
    """The next batch of `kind` ("retry" or "rerun") for this process, or [] when none is
    left (or a live worker is running one: it takes up the rest after its own)."""
    return repository.claim_next_batch(
        kind, host=socket.gethostname(), pid=os.getpid(), gone=worker_gone
    )
