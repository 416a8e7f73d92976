"""What the step tasks share: task options, the retry rule, structured step logging."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from genfactory.errors import GenfactoryError, error_code
from genfactory.logs import describe_error, redact, scrub_exception
from genfactory.statuses import OPEN_IMAGE_STATUSES, ImageStatus
from genfactory.storage import repository
from genfactory.storage.repository import ImageRecord

#: Our store holds results; Prefect result persistence would only leave files behind.
TASK_OPTIONS: dict[str, Any] = {"persist_result": False, "cache_policy": NO_CACHE}


def worth_retrying(exc: BaseException) -> bool:
    """The engine's retry rule: provider errors are never retried here (the HTTP layer owns
    transient retries, so a paid call is never multiplied); anything else (the store was busy,
    the orchestration API failed) is, since every step is re-entrant."""
    return not isinstance(exc, GenfactoryError)


def retry_orchestration(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry condition of the engine's tasks (`worth_retrying`)."""
    try:
        state.result(raise_on_failure=True)
    except BaseException as exc:
        return worth_retrying(exc)
    return False


#: Options of the engine's slot and image tasks: one more try for orchestration errors.
ENGINE_TASK_OPTIONS: dict[str, Any] = {
    **TASK_OPTIONS,
    "retries": 2,
    "retry_delay_seconds": 1,
    "retry_condition_fn": retry_orchestration,
}


def run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """Prefect's run logger inside a run, our own logger elsewhere."""
    try:
        return get_run_logger()
    except Exception:
        return logging.getLogger("genfactory")


def log_step(
    message: str,
    *,
    step: str,
    level: int = logging.INFO,
    **fields: Any,
) -> None:
    """One log line with the structured fields (step, sub_step, image_index, duration_ms…)."""
    logger = run_logger()
    if not logger.isEnabledFor(level):
        return  # a debug line of a job that is not in debug mode costs nothing more
    parts = [f"[{step}{'/' + fields['sub_step'] if fields.get('sub_step') else ''}]"]
    if fields.get("slot") is not None:
        parts.append(f"slot {fields['slot']}")
    if fields.get("image_index") is not None:
        parts.append(f"image {fields['image_index']}")
    text = " ".join(parts) + f": {message}"
    if fields.get("duration_ms") is not None:
        text += f" ({fields['duration_ms']} ms)"
    logger.log(level, redact(text), extra={"step": step, **fields})


@contextmanager
def scrubbed() -> Iterator[None]:
    """Around provider calls: an exception leaves with every secret redacted from its text."""
    try:
        yield
    except BaseException as exc:
        scrub_exception(exc)
        raise


F = TypeVar("F", bound=Callable[..., Any])


def scrub_errors(fn: F) -> F:
    """Decorator for step functions: exceptions leave with secrets redacted."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with scrubbed():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


@contextmanager
def timed() -> Iterator[dict[str, int]]:
    """Measure a block: `with timed() as t: ...; t["ms"]`."""
    holder = {"ms": 0}
    start = time.perf_counter()
    try:
        yield holder
    finally:
        holder["ms"] = int((time.perf_counter() - start) * 1000)


def fail_image(
    image: ImageRecord,
    step: str,
    message: str,
    code: str,
    *,
    sub_step: str | None = None,
    level: int = logging.WARNING,
    **fields: Any,
) -> ImageRecord:
    """Mark an unfinished image `failed` with its reason and log it.

    A failed image lives in the temp directory only, with its unprocessed original (kept for
    a retry): no file of it is ever in the output directory.
    """
    if image.final_image_path and "final_image_path" not in fields:
        # A name reserved in the output directory by an approval that never happened.
        Path(image.final_image_path).unlink(missing_ok=True)
        fields["final_image_path"] = None
    failed = repository.transition_image(
        image.id, OPEN_IMAGE_STATUSES, ImageStatus.FAILED, error=message, error_code=code, **fields
    )
    log_step(
        f"failed: {message}",
        step=step,
        sub_step=sub_step,
        slot=image.slot,
        image_index=image.image_index,
        error_code=code,
        level=level,
    )
    return failed


__all__ = [
    "ENGINE_TASK_OPTIONS",
    "TASK_OPTIONS",
    "describe_error",
    "error_code",
    "fail_image",
    "log_step",
    "run_logger",
    "scrub_errors",
    "scrubbed",
    "timed",
    "worth_retrying",
]
