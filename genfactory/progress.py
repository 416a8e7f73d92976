"""In-process progress events: the flow publishes, the CLI's progress bar listens."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ProgressEvent:
    execution_id: int
    label: str
    done_slots: int
    total_slots: int
    #: Overall job progress 0–1: initialisation is the first 20 %, slots the remaining 80 %.
    fraction: float
    message: str = ""


Listener = Callable[[ProgressEvent], None]
_listeners: list[Listener] = []
_lock = threading.Lock()

INIT_SHARE = 0.2


def job_fraction(done_slots: int, total_slots: int) -> float:
    """docs/SPEC.md §1: initialisation is 20 %, the per-image work the remaining 80 %."""
    if total_slots <= 0:
        return 1.0
    return INIT_SHARE + (1 - INIT_SHARE) * done_slots / total_slots


def subscribe(listener: Listener) -> None:
    with _lock:
        _listeners.append(listener)


def unsubscribe(listener: Listener) -> None:
    with _lock:
        if listener in _listeners:
            _listeners.remove(listener)


def publish(event: ProgressEvent) -> None:
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        listener(event)
