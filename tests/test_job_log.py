"""The job log file: Prefect's routine per-task state lines are dropped while a job runs
without debug, and only while some such job runs."""

from __future__ import annotations

import logging
from pathlib import Path

from genfactory import logs


def _routine_record() -> logging.LogRecord:
    return logging.LogRecord(
        "prefect.task_runs", logging.INFO, __file__, 1, "Finished in state Completed()", None, None
    )


def test_routine_state_lines_are_dropped_only_while_a_quiet_job_runs(tmp_path: Path) -> None:
    task_runs = logging.getLogger("prefect.task_runs")
    first = logs.open_job_log(tmp_path / "a.log")
    second = logs.open_job_log(tmp_path / "b.log")
    assert not task_runs.filter(_routine_record())  # dropped before any handler sees it

    logs.close_job_log(first)
    logs.close_job_log(first)  # closing twice must not release the second job's filter
    assert not task_runs.filter(_routine_record())

    logs.close_job_log(second)
    assert task_runs.filter(_routine_record())  # no job runs: Prefect's lines are back


def test_a_debug_job_keeps_the_routine_lines(tmp_path: Path) -> None:
    handler = logs.open_job_log(tmp_path / "debug.log", debug=True)
    try:
        assert logging.getLogger("prefect.task_runs").filter(_routine_record())
    finally:
        logs.close_job_log(handler)
