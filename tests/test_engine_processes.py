"""The job engine across processes, as a user drives it from terminals: a job killed with
SIGKILL and resumed, a stop asked from another process, Ctrl-C (SIGINT to the process group).

Each job runs as a real `genfactory` command in its own process group, against the fake
services over loopback and a local Prefect server started by genfactory itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from genfactory.statuses import FINAL_IMAGE_STATUSES, FINAL_SLOT_STATUSES, JobStatus, SlotStatus
from genfactory.storage import repository
from genfactory.storage.db import dispose_engines
from tests.fakes.server import FakeServices
from tests.support import free_port, wait_for

pytestmark = [pytest.mark.prefect]

ROOT = Path(__file__).resolve().parent.parent
GENFACTORY = [sys.executable, "-m", "genfactory.cli"]


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A local Prefect server started the way `genfactory server start` starts it."""
    home = tmp_path_factory.mktemp("prefect-server")
    env = {
        "GENFACTORY_DATA_DIR": str(home / "data"),
        "GENFACTORY_PREFECT_PORT": str(free_port()),
        "PREFECT_HOME": str(home / "prefect-home"),
    }
    saved = {k: os.environ.get(k) for k in (*env, "PREFECT_API_URL")}
    os.environ.update(env)
    os.environ.pop("PREFECT_API_URL", None)
    from genfactory.engine import server

    try:
        status = server.start(timeout=120)
        yield {"PREFECT_API_URL": status.url, "PREFECT_HOME": env["PREFECT_HOME"]}
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def fake() -> Iterator[FakeServices]:
    # About 1 s per generation: long enough to interrupt a job in the middle.
    fake = FakeServices(image_long_side=128, polls_until_done=6).start()
    fake.qc_reject_words = ()
    try:
        yield fake
    finally:
        fake.stop()


def _config(tmp_path: Path, fake: FakeServices, count: int) -> Path:
    keywords = tmp_path / "keywords.txt"
    keywords.write_text("\n".join(f"subject {i}" for i in range(count)) + "\n")
    config = tmp_path / "job.toml"
    config.write_text(
        f"""
[job]
keywords_file = "{keywords}"
count = {count}
max_concurrency = 2
seed = 5
output_dir = "{tmp_path / "out"}"
temp_dir = "{tmp_path / "tmp"}"
label = "engine"

[providers]
image = "piapi"
qc = "openai"
metadata = "openai"

[generation]
polling_interval_seconds = 0.2
http_timeout_seconds = 5

[qc]
min_width = 64
min_height = 64

[piapi]
base_url = "{fake.urls["piapi"]}"

[openai]
base_url = "{fake.urls["openai"]}"
"""
    )
    return config


def _env(prefect: dict[str, str], fake: FakeServices) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(prefect)
    env.update(fake.env())
    env["GENFACTORY_PROCESS_POOL"] = "1"  # the pool, as users run it: no worker may outlive
    env.pop("GENFACTORY_PREFECT_SERVER", None)
    return env


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*GENFACTORY, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, like a terminal's foreground job
    )


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _approved_count(after: int = 0) -> int:
    """Approved images of the newest job, if it is newer than job `after`."""
    executions = repository.list_executions(limit=1)
    if not executions or executions[0].id <= after:
        return 0
    return repository.image_counts(executions[0].id).get("approved", 0)


def _outcome(execution_id: int) -> set[tuple[int, int, str]]:
    return {
        (image.slot, image.image_index, str(image.status))
        for image in repository.list_images(execution_id=execution_id)
    }


def _task_run_names(api_url: str, flow_run_ids: list[str]) -> list[str]:
    """The names of the task runs the Prefect server recorded for these flow runs."""
    answer = httpx.post(
        f"{api_url}/task_runs/filter",
        json={"flow_runs": {"id": {"any_": flow_run_ids}}, "limit": 200},
        timeout=10,
    )
    answer.raise_for_status()
    return [run["name"] for run in answer.json()]


def _server_environment(api_url: str) -> list[bytes]:
    """The environment of the `prefect server start` process serving `api_url`."""
    port = api_url.rsplit(":", 1)[1].split("/", 1)[0]
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
            if b"server" in command and port.encode() in command and b"--port" in command:
                return (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
    raise AssertionError(f"no Prefect server process serves {api_url}")


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*") if p.is_file())


def test_a_killed_job_resumes_to_the_same_result_without_paying_twice(
    tmp_path: Path, prefect_server: dict[str, str], fake: FakeServices
) -> None:
    count = 6
    env = _env(prefect_server, fake)
    # The uninterrupted run, for comparison.
    reference = tmp_path / "reference"
    reference.mkdir()
    done = subprocess.run(
        [*GENFACTORY, "run", "--config", str(_config(reference, fake, count))],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout.decode()
    first = repository.list_executions(limit=1)[0].id
    expected = _outcome(first)
    assert len(expected) == count * 4
    # The UI shows every slot and image of the run under its own name (the local server
    # records task runs in batches: all of them arrive within its flush interval).
    names = {f"generate/{slot}" for slot in range(count)} | {
        f"image/{slot}-{index}" for slot, index, _ in expected
    }
    flow_runs = repository.get_execution(first).flow_run_ids or []
    wait_for(
        lambda: set(_task_run_names(prefect_server["PREFECT_API_URL"], flow_runs)) >= names,
        30,
        "the Prefect server to record every task run",
    )
    recorded = _task_run_names(prefect_server["PREFECT_API_URL"], flow_runs)
    assert sorted(name for name in recorded if "/" in name) == sorted(names)  # each once
    environment = _server_environment(prefect_server["PREFECT_API_URL"])
    assert b"PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE=100" in environment
    fake.clear_requests()
    earlier_tasks = set(fake.tasks())  # the uninterrupted run's

    work = tmp_path / "killed"
    work.mkdir()
    process = _start(["run", "--config", str(_config(work, fake, count))], env)
    wait_for(lambda: _approved_count(first) >= 2, 120, "the job to approve its first images")
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    execution = repository.list_executions(limit=1)[0]
    in_create = {  # its create sent, or about to be, and no task id back
        s.slot
        for s in repository.list_slots(execution.id)
        if s.status == SlotStatus.GENERATING and not s.provider_task_id
    }
    assert execution.status == JobStatus.RUNNING  # nobody could record the kill
    assert repository.image_counts(execution.id).get("approved", 0) < count * 4
    # The pool workers of the killed process exit on their own.
    wait_for(lambda: not _group_alive(process.pid), 30, "the killed job's processes to exit")

    resumed = subprocess.run(
        [*GENFACTORY, "resume", str(execution.id)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=240,
    )
    output = resumed.stdout.decode()
    assert resumed.returncode == 0, output
    dispose_engines()
    after = repository.get_execution(execution.id)
    assert after.status == JobStatus.COMPLETED
    slots = repository.list_slots(execution.id)
    # A kill between a slot's paid create going out and its task id coming back leaves a create
    # nobody can tell was charged: by design that slot fails `ambiguous_create` and is never
    # created again (tests/test_engine_spending.py). It is a window of one request per running
    # slot, rarely hit; every other slot ends as in the uninterrupted run.
    ambiguous = {s.slot for s in slots if s.error_code == "ambiguous_create"}
    assert ambiguous <= in_create, slots
    assert all(s.status == SlotStatus.FAILED for s in slots if s.slot in ambiguous)
    assert _outcome(execution.id) == {o for o in expected if o[0] not in ambiguous}, slots
    assert len(after.flow_run_ids or []) == 2  # the first run and the resume

    # What PiAPI charges for is a task it created. A create the kill cut off mid-body never
    # arrived whole: the service refused it (400) and created nothing.
    created = [task for key, task in fake.tasks().items() if key not in earlier_tasks]
    prompts = Counter(task["prompt"] for task in created)
    assert count - len(ambiguous) <= len(created) <= count  # one create per slot at most
    assert set(prompts.values()) == {1}
    vision = [r for r in fake.requests("openai") if "json_schema" in str(r.json)]
    images = (count - len(ambiguous)) * 4
    # QC and metadata once per image each; a call in flight at the kill (at most one per slot
    # running, max_concurrency = 2) had no answer recorded and is made again by the resume.
    assert len(vision) <= 2 * images + 2

    assert all(s.status in FINAL_SLOT_STATUSES for s in slots)
    rows = repository.list_images(execution_id=execution.id)
    assert all(i.status in FINAL_IMAGE_STATUSES for i in rows)
    outputs = _files(work / "out")
    assert len(outputs) == images and not any("-2." in name for name in outputs)
    assert sorted(Path(str(i.final_image_path)).name for i in rows) == outputs
    assert _files(work / "tmp") == []  # every original and staged file gone after approval


def test_a_stop_from_another_process_is_honoured_and_the_job_resumes(
    tmp_path: Path, prefect_server: dict[str, str], fake: FakeServices
) -> None:
    env = _env(prefect_server, fake)
    process = _start(["run", "--config", str(_config(tmp_path, fake, 8))], env)
    wait_for(lambda: _approved_count() >= 1, 120, "the job to approve an image")
    execution = repository.list_executions(limit=1)[0]
    stop = subprocess.run(
        [*GENFACTORY, "jobs", "stop", str(execution.id)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert stop.returncode == 0, stop.stdout.decode()
    output, _ = process.communicate(timeout=60)
    dispose_engines()
    stopped = repository.get_execution(execution.id)
    assert stopped.status == JobStatus.CANCELLED, output.decode()
    assert "genfactory resume" in output.decode()
    assert process.returncode == 1
    left = repository.open_slots(execution.id)
    assert left  # slots not started stay for the resume

    resumed = subprocess.run(
        [*GENFACTORY, "resume", str(execution.id)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=240,
    )
    assert resumed.returncode == 0, resumed.stdout.decode()
    # Run logs go to the job's log file, as for `run`: the terminal shows the progress.
    assert "| INFO" not in resumed.stderr.decode() + resumed.stdout.decode()
    dispose_engines()
    assert repository.get_execution(execution.id).status == JobStatus.COMPLETED
    assert repository.image_counts(execution.id) == {"approved": 32}


def test_ctrl_c_stops_gracefully_within_seconds_and_leaves_no_process(
    tmp_path: Path, prefect_server: dict[str, str], fake: FakeServices
) -> None:
    env = _env(prefect_server, fake)
    process = _start(["run", "--config", str(_config(tmp_path, fake, 8))], env)
    wait_for(lambda: _approved_count() >= 1, 120, "the job to approve an image")
    sent = time.monotonic()
    os.killpg(process.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
    output, _ = process.communicate(timeout=30)
    elapsed = time.monotonic() - sent
    text = output.decode()
    assert process.returncode == 130, text
    assert elapsed < 30
    assert "stopping job" in text and "Continue it with" in text, text
    dispose_engines()
    execution = repository.list_executions(limit=1)[0]
    assert execution.status == JobStatus.CANCELLED
    assert execution.error_message == "stopped: stopped by Ctrl-C"
    wait_for(lambda: not _group_alive(process.pid), 15, "every process of the job to exit")
