"""Every query of the store: the `Repository` object, and the module functions over the
default one.

`Repository(engine)` (or `Repository.over_engine(engine)`) is the injectable object:
tests and callers that hold one (`JobRuntime.store`) use its methods. The module functions
(`repository.get_execution(1)`...) call the same methods on a default repository resolved
lazily, on every call, from the configured store (`GENFACTORY_DATABASE_URL`, see `db.get_engine`),
so code written as `from genfactory.storage import repository` keeps working, and a test that
points the environment at another store gets that store.

Records are detached instances of the models (`ExecutionRecord` is `models.JobExecution`...),
read as `record.field`; changing one changes nothing in the store.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

from sqlalchemy import Engine

from genfactory.storage.base import NotFound, TransitionError
from genfactory.storage.db import get_engine
from genfactory.storage.images import IMAGE_FIELDS, Images
from genfactory.storage.jobs import Jobs
from genfactory.storage.models import ExecutionRecord, ImageRecord, SlotRecord, WorkRecord
from genfactory.storage.queue import WORK_DONE, WORK_FAILED, WORK_PENDING, WORK_RUNNING, Queue
from genfactory.storage.slots import SLOT_FIELDS, Slots

__all__ = [
    "IMAGE_FIELDS",
    "SLOT_FIELDS",
    "WORK_DONE",
    "WORK_FAILED",
    "WORK_PENDING",
    "WORK_RUNNING",
    "ExecutionRecord",
    "ImageRecord",
    "NotFound",
    "Repository",
    "SlotRecord",
    "TransitionError",
    "WorkRecord",
    "default_repository",
]


class Repository(Jobs, Slots, Images, Queue):
    """The store's queries over one session factory: executions (`jobs.py`), slots
    (`slots.py`), images (`images.py`) and the work queue (`queue.py`)."""


_default: tuple[Engine, Repository] | None = None
_default_lock = threading.Lock()


def default_repository() -> Repository:
    """The repository over the configured store, resolved again on every call (the engine
    is cached per URL by `db.get_engine`; the repository of the last engine is kept)."""
    global _default
    engine = get_engine()
    cached = _default
    if cached is not None and cached[0] is engine:
        return cached[1]
    with _default_lock:
        if _default is None or _default[0] is not engine:
            _default = (engine, Repository.over_engine(engine))
        return _default[1]


P = ParamSpec("P")
R = TypeVar("R")


def _on_default(method: Callable[Concatenate[Repository, P], R]) -> Callable[P, R]:
    """`method` as a module function calling it on `default_repository()`."""

    @functools.wraps(method)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        return method(default_repository(), *args, **kwargs)

    return call


# Executions
create_execution = _on_default(Repository.create_execution)
get_execution = _on_default(Repository.get_execution)
find_execution_by_flow_run = _on_default(Repository.find_execution_by_flow_run)
list_executions = _on_default(Repository.list_executions)
image_counts = _on_default(Repository.image_counts)
transition_execution = _on_default(Repository.transition_execution)
finish_execution = _on_default(Repository.finish_execution)
refresh_totals = _on_default(Repository.refresh_totals)
set_execution_log_path = _on_default(Repository.set_execution_log_path)
add_usage = _on_default(Repository.add_usage)
request_stop = _on_default(Repository.request_stop)
job_control = _on_default(Repository.job_control)
claim_execution = _on_default(Repository.claim_execution)
stats = _on_default(Repository.stats)
delete_execution = _on_default(Repository.delete_execution)
# Slots
add_slots = _on_default(Repository.add_slots)
get_slot = _on_default(Repository.get_slot)
get_slot_by_number = _on_default(Repository.get_slot_by_number)
list_slots = _on_default(Repository.list_slots)
update_slot = _on_default(Repository.update_slot)
transition_slot = _on_default(Repository.transition_slot)
open_slots = _on_default(Repository.open_slots)
# Images
add_image = _on_default(Repository.add_image)
add_images = _on_default(Repository.add_images)
get_image = _on_default(Repository.get_image)
list_images = _on_default(Repository.list_images)
update_image = _on_default(Repository.update_image)
transition_image = _on_default(Repository.transition_image)
open_images = _on_default(Repository.open_images)
approve_image = _on_default(Repository.approve_image)
approved_hashes = _on_default(Repository.approved_hashes)
iter_images = _on_default(Repository.iter_images)
add_image_history = _on_default(Repository.add_image_history)
# The work queue
enqueue_retries = _on_default(Repository.enqueue_retries)
enqueue_reruns = _on_default(Repository.enqueue_reruns)
claim_next_batch = _on_default(Repository.claim_next_batch)
finish_work = _on_default(Repository.finish_work)
list_work = _on_default(Repository.list_work)
unrecorded_rerun = _on_default(Repository.unrecorded_rerun)
