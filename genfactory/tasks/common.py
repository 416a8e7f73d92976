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
from prefect.tasks import exponential_backoff

from genfactory.errors import error_code, is_retryable
from genfactory.logs import redact, scrub_exception
from genfactory.statuses import ImageStatus
from genfactory.storage import repository
from genfactory.storage.repository import ImageRecord

#: The longest Retry-After a task retry waits for; longer waits fail the step.
MAX_RETRY_AFTER_SECONDS = 300.0

#: Our store holds results; Prefect result persistence would only leave files behind.
TASK_OPTIONS: dict[str, Any] = {"persist_result": False, "cache_policy": NO_CACHE}


def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry condition: retry only errors that may go away (see errors.is_retryable)."""
    try:
        state.result(raise_on_failure=True)
    except BaseException as exc:
        if not is_retryable(exc):
            return False
        # The service said when to come back (429 Retry-After): wait that long before the
        # scheduled retry instead of spending it too early.
        retry_after = getattr(exc, "retry_after", None)
        if retry_after:
            if float(retry_after) > MAX_RETRY_AFTER_SECONDS:
                return False  # the service is out for longer than a job should wait
            time.sleep(float(retry_after))
        return True
    return False


def final_attempt() -> bool:
    """True in the last try Prefect will make of the current task (and outside any task)."""
    from prefect.context import TaskRunContext

    context = TaskRunContext.get()
    if context is None:
        return True
    return context.task_run.run_count > (context.task.retries or 0)


def will_retry(exc: BaseException) -> bool:
    """True when the current task will be retried after raising `exc`."""
    retry_after = float(getattr(exc, "retry_after", None) or 0)
    return is_retryable(exc) and retry_after <= MAX_RETRY_AFTER_SECONDS and not final_attempt()


def retry_options(retries: int, backoff_seconds: float) -> dict[str, Any]:
    """Task options for `retries` retries with exponential backoff and jitter."""
    if retries <= 0:
        return {"retries": 0}
    return {
        "retries": retries,
        "retry_delay_seconds": exponential_backoff(backoff_factor=max(backoff_seconds, 0.01))(
            retries
        ),
        "retry_jitter_factor": 0.5,
        "retry_condition_fn": retry_if_transient,
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
    parts = [f"[{step}{'/' + fields['sub_step'] if fields.get('sub_step') else ''}]"]
    if fields.get("slot") is not None:
        parts.append(f"slot {fields['slot']}")
    if fields.get("image_index") is not None:
        parts.append(f"image {fields['image_index']}")
    text = " ".join(parts) + f": {message}"
    if fields.get("duration_ms") is not None:
        text += f" ({fields['duration_ms']} ms)"
    run_logger().log(level, redact(text), extra={"step": step, **fields})


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
) -> bool:
    """Mark an image `failed` with its reason and log it; False.

    A failed image lives in the temp directory only, with its unprocessed original (kept for
    a retry): a processed file already in the output directory is removed.
    """
    if image.final_image_path and image.temp_image_path:
        Path(image.final_image_path).unlink(missing_ok=True)
        fields["final_image_path"] = None
    repository.update_image(
        image.id, status=ImageStatus.FAILED, error=message, error_code=code, **fields
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
    return False


def abandon_image(image_id: int) -> None:
    """The job stopped while this image was in flight: it stays `generated` (resumable), with
    its original in temp and no half-delivered file in the output directory."""
    image = repository.get_image(image_id)
    if image.final_image_path and image.temp_image_path:
        Path(image.final_image_path).unlink(missing_ok=True)
        repository.update_image(image_id, final_image_path=None)


def describe_error(exc: BaseException) -> str:
    """One line for the store and logs: the error's own sentence, redacted."""
    text = str(exc).strip() or exc.__class__.__name__
    return redact(text.splitlines()[0] if "\n" in text else text)[:1000]


__all__ = [
    "TASK_OPTIONS",
    "abandon_image",
    "describe_error",
    "error_code",
    "fail_image",
    "log_step",
    "retry_options",
    "run_logger",
    "scrub_errors",
    "scrubbed",
    "timed",
    "will_retry",
]
