"""Logging: secret redaction for every record, structured step fields, the per-job log file.

Redaction is installed as a log-record factory, so it covers every logger (ours, Prefect's,
httpx's) and every handler (console, file, Prefect's API handler) before anything is written.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import Any

REDACTED = "[REDACTED]"
STRUCTURED_FIELDS = (
    "step",
    "sub_step",
    "execution_id",
    "slot",
    "image_index",
    "duration_ms",
    "error_code",
)

_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None
_lock = threading.Lock()
_installed = False


def register_secrets(values: Iterable[str]) -> None:
    """Add secret strings that must never appear in any log record, exception text or artifact."""
    global _pattern
    with _lock:
        # Short values would redact ordinary words; real API keys are long.
        _secrets.update(v for v in values if v and len(v) >= 6)
        if _secrets:
            alternatives = sorted((re.escape(s) for s in _secrets), key=len, reverse=True)
            _pattern = re.compile("|".join(alternatives))
    install_redaction()


def redact(text: str) -> str:
    """`text` with every registered secret replaced by [REDACTED]."""
    pattern = _pattern
    if pattern is None or not text:
        return text
    return pattern.sub(REDACTED, text)


def describe_error(exc: BaseException) -> str:
    """One line for the store and logs: the error's own sentence, redacted."""
    text = str(exc).strip() or exc.__class__.__name__
    return redact(text.splitlines()[0] if "\n" in text else text)[:1000]


def redact_value(value: Any) -> Any:
    """Redact strings inside nested dicts/lists (artifacts, stored JSON)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    return value


def install_redaction() -> None:
    """Wrap the log-record factory once so every record is redacted when created."""
    global _installed
    with _lock:
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            if _pattern is not None:
                _redact_record(record)
            return record

        logging.setLogRecordFactory(factory)
        _installed = True


def _redact_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # a broken format string must not lose the record
        message = str(record.msg)
    record.msg = redact(message)
    record.args = None
    if record.exc_info and record.exc_info[1] is not None:
        record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)))
        # Formatters would format exc_info again, unredacted: keep only the text.
        record.exc_info = None
    if isinstance(record.__dict__.get("error"), str):
        record.__dict__["error"] = redact(record.__dict__["error"])


class RoutineStatesFilter(logging.Filter):
    """Drops Prefect's "Finished in state Completed()" lines: one per task run, they would
    outnumber the job's own lines in a big job's log (debug logs keep them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Finished in state Completed(")


class RedactingFilter(logging.Filter):
    """Belt and braces for handlers that receive records made before redaction was installed."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _pattern is not None:
            _redact_record(record)
        return True


class StructuredFormatter(logging.Formatter):
    """`time level run message key=value...`: the Prefect run (task or flow run name, else
    the logger) and the structured step fields."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(run)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        record.run = (
            record.__dict__.get("task_run_name")
            or record.__dict__.get("flow_run_name")
            or record.name
        )
        line = super().format(record)
        fields = [
            f"{name}={record.__dict__[name]}"
            for name in STRUCTURED_FIELDS
            if record.__dict__.get(name) is not None
        ]
        return f"{line} {' '.join(fields)}" if fields else line


#: Loggers whose records belong in a job's log file.
JOB_LOGGERS = ("genfactory", "prefect.flow_runs", "prefect.task_runs")


#: One filter on Prefect's task-run logger while any job runs without debug: the routine
#: "Finished in state Completed()" record (1.5 per image) is then not made into a log line for
#: the console or shipped to the Prefect API at all; the run's state shows it in the UI.
_ROUTINE_FILTER = RoutineStatesFilter()
_routine_users = 0
_routine_lock = threading.Lock()


def _drop_routine_states(on: bool) -> None:
    global _routine_users
    with _routine_lock:
        _routine_users += 1 if on else -1
        logger = logging.getLogger("prefect.task_runs")
        if _routine_users > 0:
            logger.addFilter(_ROUTINE_FILTER)
        else:
            _routine_users = 0
            logger.removeFilter(_ROUTINE_FILTER)


def open_job_log(path: Path, *, debug: bool = False) -> logging.Handler:
    """Start writing job logs to `path`; returns the handler to pass to `close_job_log`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG if debug else logging.INFO)
    handler.setFormatter(StructuredFormatter())
    handler.addFilter(RedactingFilter())
    if not debug:
        handler.addFilter(_ROUTINE_FILTER)
        _drop_routine_states(True)
    for name in JOB_LOGGERS:
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        if debug or logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.DEBUG if debug else logging.INFO)
    return handler


def close_job_log(handler: logging.Handler) -> None:
    for name in JOB_LOGGERS:
        logging.getLogger(name).removeHandler(handler)
    if _ROUTINE_FILTER in handler.filters:
        # Taken off the handler, so closing it twice releases the logger filter only once.
        handler.removeFilter(_ROUTINE_FILTER)
        _drop_routine_states(False)
    handler.close()


def scrub_exception(exc: BaseException) -> BaseException:
    """Redact secrets from an exception's arguments in place (and from its causes), so neither
    Prefect's state messages nor a traceback can carry a key. Returns `exc`."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        current.args = tuple(redact(a) if isinstance(a, str) else a for a in current.args)
        for attr in ("raw", "message"):
            value = current.__dict__.get(attr)
            if isinstance(value, str):
                current.__dict__[attr] = redact(value)
        current = current.__cause__ or current.__context__
    return exc
