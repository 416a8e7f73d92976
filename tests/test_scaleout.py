"""Several workers, as README "From one machine to many" sets them up: `prefect server start`
with its database on PostgreSQL, the results store on PostgreSQL, the deployments of
prefect.yaml registered with `prefect deploy`, two process workers sharing one data directory.
Two jobs started at once with `prefect deployment run` each run on their own worker, lose no
image, and share one per-service limit; an interval schedule fires and runs a job."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from genfactory.statuses import FINAL_IMAGE_STATUSES, ImageStatus, JobStatus, SlotStatus
from genfactory.storage import repository
from genfactory.storage.db import dispose_engines
from tests.fakes.server import FakeServices
from tests.support import free_port, wait_for

pytestmark = [pytest.mark.scaleout, pytest.mark.postgres, pytest.mark.prefect]

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PREFECT = [str(BIN / "prefect")]
#: What a worker's log must never show (the store and Prefect's database are both PostgreSQL).
DB_ERRORS = re.compile(
    r"OperationalError|IntegrityError|deadlock|psycopg\.errors|asyncpg\.exceptions|"
    r"TransitionError|could not serialize"
)


def _healthy(url: str) -> bool:
    import urllib.request

    with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
        return bool(answer.status == 200)


@dataclass
class Cluster:
    api_url: str
    env: dict[str, str]  # a worker's environment (also used for the prefect CLI)
    data_dir: Path
    logs: dict[str, Path]
    fake: FakeServices

    def prefect(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run(
            [*PREFECT, *args], cwd=ROOT, env=self.env, capture_output=True, timeout=timeout
        )
        output = done.stdout.decode() + done.stderr.decode()
        assert done.returncode == 0, f"prefect {' '.join(args)}:\n{output}"
        return output

    def worker_log(self, name: str) -> str:
        return self.logs[name].read_text(errors="replace")


def _database(admin_url: str, prefix: str) -> tuple[str, str]:
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return name, make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def _drop(admin_url: str, name: str) -> None:
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def cluster(postgres_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    home = tmp_path_factory.mktemp("scaleout")
    prefect_db, prefect_url = _database(postgres_server, "scaleout_prefect")
    store_db, store_url = _database(postgres_server, "scaleout_store")
    asyncpg_url = make_url(prefect_url).set(drivername="postgresql+asyncpg")
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    fake = FakeServices(image_long_side=128, polls_until_done=2).start()
    fake.qc_reject_words = ()
    fake.set_latency("piapi", 0.3)  # calls overlap unless the limit holds them apart
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "PREFECT_"))}
    base.update(
        {
            "PREFECT_HOME": str(home / "prefect-home"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_LOGGING_LEVEL": "INFO",
        }
    )
    server_env = {
        **base,
        "PREFECT_API_DATABASE_CONNECTION_URL": asyncpg_url.render_as_string(hide_password=False),
        "PREFECT_UI_ENABLED": "false",
        # The scheduler looks for due schedules every 2 s instead of every 60 s.
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
    }
    worker_env = {
        **base,
        **fake.env(),
        "PREFECT_API_URL": api_url,
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        # Shared by every worker: the store and the data directory (output, temp, logs).
        "GENFACTORY_DATABASE_URL": store_url,
        "GENFACTORY_DATA_DIR": str(home / "shared"),
        "GENFACTORY_PROJECT_DIR": str(ROOT),
        "GENFACTORY_PROCESS_POOL": "0",
    }
    logs = {name: home / f"{name}.log" for name in ("server", "worker-1", "worker-2")}
    processes: list[subprocess.Popen[bytes]] = []
    try:
        server = _start(
            [*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            server_env,
            logs["server"],
        )
        processes.append(server)
        wait_for(lambda: _healthy(api_url), 150, "the Prefect server on PostgreSQL")
        cluster = Cluster(api_url, worker_env, home / "shared", logs, fake)
        cluster.prefect("work-pool", "create", "genfactory", "--type", "process")
        cluster.prefect("--no-prompt", "deploy", "--all")
        for name in (
            "generate-job/generate",
            "retry-images/retry",
            "rerun-jobs/rerun",
            "export-job/export",
        ):
            cluster.prefect("deployment", "inspect", name)  # registered by deploy --all
        for name in ("worker-1", "worker-2"):
            # --limit 1: a worker takes one job at a time, so two jobs need both workers.
            args = ["worker", "start", "--pool", "genfactory", "--type", "process"]
            processes.append(
                _start([*PREFECT, *args, "--name", name, "--limit", "1"], worker_env, logs[name])
            )
        for name in ("worker-1", "worker-2"):
            wait_for(lambda n=name: "started" in cluster.worker_log(n), 60, f"{name}")
        saved = os.environ.get("GENFACTORY_DATABASE_URL")
        yield cluster
        if saved is not None:
            os.environ["GENFACTORY_DATABASE_URL"] = saved
    finally:
        for process in reversed(processes):
            _stop(process)
        fake.stop()
        dispose_engines()
        _drop(postgres_server, prefect_db)
        _drop(postgres_server, store_db)


@pytest.fixture
def shared_store(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> Cluster:
    """This test process reads the store the workers write."""
    monkeypatch.setenv("GENFACTORY_DATABASE_URL", cluster.env["GENFACTORY_DATABASE_URL"])
    monkeypatch.setenv("GENFACTORY_DATA_DIR", str(cluster.data_dir))
    dispose_engines()
    return cluster


def _keywords(tmp_path: Path, count: int) -> Path:
    path = tmp_path / "keywords.txt"
    path.write_text("\n".join(f"scaled subject {i}" for i in range(count)) + "\n")
    return path


def _flow_run(cluster: Cluster, run_id: str) -> Any:
    from prefect.client.orchestration import SyncPrefectClient

    with SyncPrefectClient(cluster.api_url) as client:
        return client.read_flow_run(uuid.UUID(run_id))


def _execution_of(run_id: str) -> repository.ExecutionRecord:
    matches = [e for e in repository.list_executions(limit=50) if e.flow_run_id == run_id]
    assert len(matches) == 1, f"no job for flow run {run_id}"
    return matches[0]


def _check_nothing_lost(execution: repository.ExecutionRecord, count: int) -> None:
    """Every slot finished, every image in a final state, every approved image's file on the
    shared disk and nothing else of the job in the output or temp directory."""
    assert execution.status == JobStatus.COMPLETED, execution.error_message
    slots = repository.list_slots(execution.id)
    assert len(slots) == count and {s.status for s in slots} == {SlotStatus.GENERATED}
    images = repository.list_images(execution_id=execution.id)
    per_slot = {s.slot: 0 for s in slots}
    for image in images:
        per_slot[image.slot] += 1
    assert len(set(per_slot.values())) == 1 and min(per_slot.values()) >= 1, per_slot
    assert {i.status for i in images} <= set(FINAL_IMAGE_STATUSES)
    approved = [i for i in images if i.status == ImageStatus.APPROVED]
    assert approved
    files = sorted(Path(str(i.final_image_path)).name for i in approved)
    assert all(Path(str(i.final_image_path)).is_file() for i in approved)
    output = sorted(
        p.name for p in Path(execution.output_dir).iterdir() if p.name.startswith(execution.label)
    )
    assert output == files
    leftovers = [p for p in Path(execution.temp_dir).rglob(f"{execution.label}_*") if p.is_file()]
    kept = {
        Path(str(i.temp_image_path)).name
        for i in images
        if i.status in (ImageStatus.QC_FAILED, ImageStatus.FAILED)
    }
    assert {p.name for p in leftovers} <= kept  # only rejected originals stay in temp


def test_two_jobs_at_once_on_two_workers_lose_no_image_and_share_the_service_limit(
    tmp_path: Path, shared_store: Cluster
) -> None:
    cluster = shared_store
    count = 4
    keywords = _keywords(tmp_path, count)
    run_ids = []
    for n in (1, 2):
        params = {
            "keywords_file": str(keywords),
            "count": count,
            "label": f"scale{n}",
            "overrides": {
                "providers.image": "piapi",
                "piapi.base_url": cluster.fake.urls["piapi"],
                "generation.polling_interval_seconds": 0.2,
                "qc.min_width": 64,
                "qc.min_height": 64,
                "job.max_concurrency": 2,
                # One piapi call in flight across both workers (Prefect global limit).
                "concurrency.piapi": 1,
                "concurrency.scope": "prefect",
            },
        }
        output = cluster.prefect(
            "deployment", "run", "generate-job/generate", "--params", json.dumps(params)
        )
        run_ids.append(re.search(r"UUID: ([0-9a-f-]{36})", output).group(1))  # type: ignore[union-attr]

    def finished() -> list[Any] | None:
        runs = [_flow_run(cluster, run_id) for run_id in run_ids]
        return runs if all(r.state and r.state.is_final() for r in runs) else None

    runs = wait_for(finished, 170, "both jobs to finish")
    for run in runs:
        assert run.state.is_completed(), f"{run.name}: {run.state.message}"
        assert run.name == f"generate-job/{run.parameters['label']}"
        assert "genfactory" in run.tags
    # Each worker ran one of the two jobs.
    for name in ("worker-1", "worker-2"):
        log = cluster.worker_log(name)
        assert sum(run_id in log for run_id in run_ids) >= 1, f"{name} ran no job:\n{log[-3000:]}"
        assert not DB_ERRORS.search(log), log[-5000:]

    dispose_engines()
    for run_id in run_ids:
        _check_nothing_lost(_execution_of(run_id), count)
    creates = [r for r in cluster.fake.requests("piapi") if r.method == "POST"]
    assert len(creates) == 2 * count  # one create per slot, none repeated
    assert cluster.fake.peak("piapi") == 1  # 4 slots on 2 workers, never 2 calls at once

    from prefect.client.orchestration import SyncPrefectClient

    with SyncPrefectClient(cluster.api_url) as client:
        limit = client.read_global_concurrency_limit_by_name("genfactory-piapi")
    assert limit.limit == 1 and limit.active_slots == 0


def test_an_interval_schedule_fires_and_runs_a_job_on_a_worker(
    tmp_path: Path, shared_store: Cluster
) -> None:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.client.schemas.schedules import IntervalSchedule

    cluster = shared_store
    keywords = _keywords(tmp_path, 2)
    parameters = {
        "keywords_file": str(keywords),
        "count": 2,
        "overrides": {
            "generation.local_long_side": 256,
            "qc.min_width": 64,
            "qc.min_height": 64,
            # Unseeded renders with the default 15 % defects failed both images' QC in about
            # one run of 45 ("no image was approved"); this test is about the schedule.
            "generation.local_defect_rate": 0,
        },
    }
    with SyncPrefectClient(cluster.api_url) as client:
        deployment = client.read_deployment_by_name("generate-job/generate")
        start = datetime.now(UTC) + timedelta(seconds=2)
        schedule = IntervalSchedule(interval=timedelta(seconds=20), anchor_date=start)
        created = client.create_deployment_schedules(
            deployment.id,
            [
                DeploymentScheduleCreate(
                    schedule=schedule, active=True, max_scheduled_runs=1, parameters=parameters
                )
            ],
        )

        def first_scheduled_run() -> Any:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
            )
            done = [r for r in runs if r.auto_scheduled and r.state and r.state.is_final()]
            return done[0] if done else None

        try:
            run = wait_for(first_scheduled_run, 120, "a scheduled run to finish")
        finally:
            client.delete_deployment_schedule(deployment.id, created[0].id)
    assert run.state.is_completed(), run.state.message
    dispose_engines()
    execution = _execution_of(str(run.id))
    assert run.name == f"generate-job/{execution.label}"
    _check_nothing_lost(execution, 2)
