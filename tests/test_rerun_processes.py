"""Retries and reruns killed with SIGKILL, as a user drives them from terminals: real
`genfactory` processes against the fake services and a local Prefect server; the next
`genfactory retry` / `genfactory rerun` carries on from the store's queue."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from genfactory.config import load_settings
from genfactory.statuses import ImageStatus, JobStatus
from genfactory.storage import repository
from genfactory.storage.db import dispose_engines
from genfactory.tasks.initialize import prepare
from tests import test_engine_processes as engine
from tests.fakes.server import FakeServices
from tests.support import wait_for

pytestmark = [pytest.mark.prefect]

prefect_server = engine.prefect_server
fake = engine.fake


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*engine.GENFACTORY, *args], cwd=engine.ROOT, env=env, capture_output=True, timeout=240
    )


def _kill(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    wait_for(lambda: not engine._group_alive(process.pid), 30, "the killed processes")


def test_a_retry_killed_mid_batch_is_finished_by_the_next_retry_without_qc(
    tmp_path: Path, prefect_server: dict[str, str], fake: FakeServices
) -> None:
    env = engine._env(prefect_server, fake)
    fake.qc_reject_words = ("subject",)  # every image rejected
    done = _run(["run", "--config", str(engine._config(tmp_path, fake, 3))], env)
    assert done.returncode == 1, done.stdout.decode()  # nothing approved
    job = repository.list_executions(limit=1)[0].id
    rejected = repository.list_images(execution_id=job)
    assert len(rejected) == 12 and {i.status for i in rejected} == {ImageStatus.QC_FAILED}
    fake.clear_requests()
    fake.set_latency("openai", 0.5)  # metadata calls slow enough to kill mid-batch

    process = engine._start(["retry", "--job", str(job)], env)
    try:
        wait_for(
            lambda: repository.image_counts(job).get("approved", 0) >= 2, 120, "the first retries"
        )
    except AssertionError:
        process.kill()
        raise AssertionError(process.communicate()[0].decode()[-3000:]) from None
    _kill(process)
    counts = repository.image_counts(job)
    assert counts.get("approved", 0) < 12

    again = _run(["retry"], env)

    assert again.returncode == 0, again.stdout.decode()
    dispose_engines()
    images = repository.list_images(execution_id=job)
    assert {i.status for i in images} == {ImageStatus.APPROVED}
    outputs = engine._files(tmp_path / "out")
    assert len(outputs) == 12 and not any("-2." in name for name in outputs)
    chats = fake.requests("openai", path="/chat/completions")
    assert not [r for r in chats if "quality_check" in str(r.json.get("response_format"))]
    execution = repository.get_execution(job)
    assert execution.status == JobStatus.FAILED and execution.approved_images == 12


def _source_jobs(tmp_path: Path, fake: FakeServices, count: int) -> list[int]:
    """Finished jobs with stored slots (a rerun needs no more), their keywords file gone."""
    config = engine._config(tmp_path, fake, 2)
    ids = []
    for n in range(count):
        settings = load_settings(config, overrides={"job.label": f"src{n}"}, environ=fake.env())
        resolved, slots = prepare(settings)
        execution = repository.create_execution(
            label=f"src{n}",
            settings_snapshot=resolved.model_dump(mode="json"),
            output_dir=str(resolved.job.output_dir),
            temp_dir=str(resolved.job.temp_dir),
        )
        repository.add_slots(execution.id, slots)
        repository.finish_execution(execution.id, status=JobStatus.FAILED, error_message="test")
        ids.append(execution.id)
    (tmp_path / "keywords.txt").unlink()
    return ids


def test_a_bulk_rerun_killed_mid_way_continues_with_the_remaining_jobs_one_at_a_time(
    tmp_path: Path,
    prefect_server: dict[str, str],
    fake: FakeServices,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = engine._env(prefect_server, fake)
    for name, value in fake.env().items():
        monkeypatch.setenv(name, value)
    sources = _source_jobs(tmp_path, fake, 3)

    def rerun_of(source: int) -> repository.ExecutionRecord | None:
        found = [e for e in repository.list_executions() if e.rerun_of_id == source]
        return found[0] if found else None

    process = engine._start(["rerun", *map(str, sources)], env)
    wait_for(lambda: rerun_of(sources[1]) is not None, 180, "the second rerun")
    _kill(process)
    assert rerun_of(sources[2]) is None  # never two at once: the third has not started

    again = _run(["rerun"], env)

    dispose_engines()
    reruns = [rerun_of(source) for source in sources]
    # The killed rerun is resumed to its end (a slot killed mid-create fails rather than pay
    # twice, docs/SPEC.md §5); the others complete.
    assert all(r is not None for r in reruns), again.stdout.decode()
    assert [r.status for r in reruns if r] == [
        JobStatus.COMPLETED,
        reruns[1].status if reruns[1] and reruns[1].status == JobStatus.FAILED else "completed",
        JobStatus.COMPLETED,
    ]
    assert len([e for e in repository.list_executions() if e.rerun_of_id]) == 3
    first, second, third = reruns
    assert first and second and third
    assert first.completed_at and second.started_at and second.completed_at and third.started_at
    assert first.completed_at <= second.started_at and second.completed_at <= third.started_at
    assert {w.status for w in repository.list_work("rerun")} == {"done"}
