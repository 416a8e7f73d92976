"""Rerunning jobs in one process with the local providers: a new execution from the stored
slots (the keywords file may be gone), the source's rows untouched byte for byte, a bulk run one
job after another, and a bulk a killed worker left continued with the remaining jobs."""

from __future__ import annotations

import itertools
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from genfactory.errors import UserError
from genfactory.flows import generate_job
from genfactory.flows.rerun_jobs import rerun_jobs
from genfactory.statuses import JobStatus
from genfactory.storage import repository
from genfactory.storage.db import get_engine
from genfactory.tasks.rerun import queue_reruns, start_rerun
from tests.test_engine import job_settings

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_harness")]


def _dump(execution_id: int) -> list[Any]:
    """Every stored row of an execution, as the database holds it."""
    rows: list[Any] = []
    with get_engine().connect() as conn:
        for table, column in (
            ("job_executions", "id"),
            ("generation_slots", "execution_id"),
            ("generated_images", "execution_id"),
        ):
            query = text(f"SELECT * FROM {table} WHERE {column} = :id ORDER BY id")
            rows.extend(tuple(row) for row in conn.execute(query, {"id": execution_id}))
    return rows


def _jobs(tmp_path: Path, count: int) -> list[int]:
    keywords = tmp_path / "keywords.txt"
    keywords.write_text("red fox\nlemon on a table\nmountain lake\n")
    ids = []
    for n in range(count):
        settings = job_settings(
            tmp_path / f"job{n}",
            **{"job.keywords_file": str(keywords), "job.count": 2, "job.label": f"source{n}"},
        )
        ids.append(int(generate_job(settings)["execution_id"]))
    keywords.unlink()  # a rerun needs only the store
    return ids


def test_a_bulk_rerun_runs_one_job_after_another_and_leaves_the_sources_untouched(
    tmp_path: Path,
) -> None:
    sources = _jobs(tmp_path, 3)
    before = {job: _dump(job) for job in sources}

    summaries = rerun_jobs(job_ids=sources, overrides={"processing.convert_format": "jpg"})

    assert {job: _dump(job) for job in sources} == before
    reruns = [repository.get_execution(s["execution_id"]) for s in summaries]
    assert [r.rerun_of_id for r in reruns] == sources
    assert all(r.status == JobStatus.COMPLETED for r in reruns)
    for rerun, source in zip(reruns, sources, strict=True):
        assert [(s.keyword, s.aspect_ratio) for s in repository.list_slots(rerun.id)] == [
            (s.keyword, s.aspect_ratio) for s in repository.list_slots(source)
        ]
        assert rerun.label.startswith(f"source{sources.index(source)}_rerun_")
        files = [i.final_image_path for i in repository.list_images(execution_id=rerun.id)]
        assert files and all(str(f).endswith(".jpg") for f in files)
    for earlier, later in itertools.pairwise(reruns):
        assert earlier.completed_at is not None and later.started_at is not None
        assert earlier.completed_at <= later.started_at  # never overlapping


def test_a_bulk_a_killed_worker_left_continues_with_the_job_it_ran_and_the_rest(
    tmp_path: Path,
) -> None:
    sources = _jobs(tmp_path, 3)
    queue_reruns(sources)
    # A worker took the bulk, created the first rerun and was killed in its middle.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    items = repository.claim_next_batch(
        "rerun", host=socket.gethostname(), pid=dead.pid, gone=lambda h, p: False
    )
    plan = start_rerun(items[0].id, items[0].target_id, None, {})
    assert plan is not None
    repository.transition_execution(plan.execution_id, JobStatus.RUNNING, JobStatus.INTERRUPTED)

    summaries = rerun_jobs()

    assert summaries[0]["execution_id"] == plan.execution_id  # resumed, not new
    reruns = [e for e in repository.list_executions() if e.rerun_of_id is not None]
    assert sorted(e.rerun_of_id for e in reruns) == sorted(sources)  # one rerun per job
    assert all(e.status == JobStatus.COMPLETED for e in reruns)
    assert {w.status for w in repository.list_work("rerun")} == {"done"}


def test_two_queued_reruns_of_one_job_make_two_executions(tmp_path: Path) -> None:
    """Two `genfactory rerun J` queued before either ran: the second batch must not take the
    first batch's finished execution for one a killed worker left ("created since I was
    queued"), or its rerun never runs."""
    (source,) = _jobs(tmp_path, 1)
    queue_reruns([source])
    queue_reruns([source])

    summaries = rerun_jobs()
    summaries += rerun_jobs()

    reruns = [e for e in repository.list_executions() if e.rerun_of_id == source]
    assert len(reruns) == 2
    assert all(e.status == JobStatus.COMPLETED for e in reruns)
    assert sorted(s["execution_id"] for s in summaries) == sorted(e.id for e in reruns)
    assert {w.result_id for w in repository.list_work("rerun")} == {e.id for e in reruns}


def test_a_rerun_of_an_unknown_job_or_with_a_bad_setting_queues_nothing(tmp_path: Path) -> None:
    sources = _jobs(tmp_path, 1)
    with pytest.raises(repository.NotFound, match="job 999 does not exist"):
        queue_reruns([sources[0], 999])
    with pytest.raises(UserError, match="jpg_quality"):
        queue_reruns(sources, {"processing.jpg_quality": 0})
    assert repository.list_work("rerun") == []
