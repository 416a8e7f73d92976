"""`genfactory serve` as a user runs it: one process serving prefect.yaml's deployments against
a local Prefect server; a run started with `prefect deployment run` executes in it and makes
images, and Ctrl-C (SIGINT to its process group) stops it cleanly, the job in flight resumable."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from genfactory.statuses import JobStatus
from genfactory.storage import repository
from genfactory.storage.db import dispose_engines
from tests.support import free_port, wait_for

pytestmark = [pytest.mark.prefect]

ROOT = Path(__file__).resolve().parent.parent
PREFECT = str(Path(sys.executable).parent / "prefect")


@pytest.fixture
def local_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """genfactory's local Prefect server on a free port, and the environment to reach it."""
    monkeypatch.setenv("GENFACTORY_PREFECT_PORT", str(free_port()))
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("GENFACTORY_PREFECT_SERVER", raising=False)
    from genfactory.engine import server

    status = server.start(timeout=120)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update({"PREFECT_API_URL": status.url, "PREFECT_RUNNER_POLL_FREQUENCY": "1"})
    try:
        yield env
    finally:
        server.stop()


def test_serve_runs_a_deployment_run_and_stops_cleanly_on_ctrl_c(
    tmp_path: Path, local_server: dict[str, str]
) -> None:
    env = local_server
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        serving = subprocess.Popen(
            [sys.executable, "-m", "genfactory.cli", "serve"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(lambda: "Serving generate-job/generate" in log.read_text(), 60, "serve")

        def run(params: dict[str, Any]) -> str:
            args = ["deployment", "run", "generate-job/generate", "--params", json.dumps(params)]
            done = subprocess.run(
                [PREFECT, *args],
                cwd=ROOT,
                env=env,
                capture_output=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
            return done.stdout.decode()

        small = {
            "job.output_dir": str(tmp_path / "out"),
            "job.temp_dir": str(tmp_path / "tmp"),
            "generation.local_long_side": 256,
            "generation.local_defect_rate": 0,
            "qc.min_width": 64,
            "qc.min_height": 64,
        }
        run({"count": 2, "label": "served", "overrides": small})
        served = wait_for(
            lambda: [e for e in repository.list_executions() if e.status == JobStatus.COMPLETED],
            120,
            "the served job to complete",
        )[0]
        assert served.label == "served"
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
            Path(str(i.final_image_path)).name
            for i in repository.list_images(execution_id=served.id, status="approved")
        )

        # A long job, then Ctrl-C while it runs.
        run({"count": 40, "label": "long", "overrides": {**small, "job.max_concurrency": 1}})
        wait_for(
            lambda: any(
                e.label == "long" and repository.image_counts(e.id).get("approved", 0) >= 1
                for e in repository.list_executions()
            ),
            120,
            "the long job to approve an image",
        )
        os.killpg(serving.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
        serving.wait(timeout=45)
    finally:
        if serving.poll() is None:
            os.killpg(serving.pid, signal.SIGKILL)
    output = log.read_text()
    assert serving.returncode == 130, output
    assert "Stopped serving." in output and "Traceback" not in output
    dispose_engines()
    long = next(e for e in repository.list_executions() if e.label == "long")
    assert JobStatus(long.status).is_resumable, (long.status, long.error_message)
    assert re.search(r"Serving generate-job/generate, resume-job/resume", output)
