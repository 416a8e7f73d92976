"""The `generate_job` flow end to end, offline: files, rows, statuses, counts, concurrency,
failure isolation and secrets."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from genfactory import services
from genfactory.config import Settings, load_settings
from genfactory.engine.artifacts import artifact_key
from genfactory.errors import ContentRejected, RetryableProviderError
from genfactory.flows import generate_job
from genfactory.providers import registry
from genfactory.providers.local_image import LocalRenderer
from genfactory.statuses import ImageStatus, JobStatus, SlotStatus
from genfactory.storage import repository

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_harness")]

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def job_settings(tmp_path: Path, keywords: Path | None = None, **overrides: Any) -> Settings:
    """Small, fast images; everything else as a user would configure it."""
    values: dict[str, Any] = {
        "job.keywords_file": str(keywords or EXAMPLES / "keywords.txt"),
        "job.output_dir": str(tmp_path / "out"),
        "job.temp_dir": str(tmp_path / "tmp"),
        "job.seed": 7,
        "generation.local_long_side": 256,
        "qc.min_width": 64,
        "qc.min_height": 64,
    }
    values.update(overrides)
    return load_settings(overrides=values, environ={})


def test_offline_job_files_rows_statuses_and_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The process pool, as users run it (the other tests process inline for speed).
    monkeypatch.setenv("GENFACTORY_PROCESS_POOL", "1")
    settings = job_settings(
        tmp_path,
        **{
            "job.count": 3,
            "job.variations": 4,
            "processing.convert_format": "jpg",
            "processing.image_enhancement": True,
            "generation.local_defect_rate": 0.3,
        },
    )
    summary = generate_job(settings)

    execution = repository.get_execution(summary["execution_id"])
    images = repository.list_images(execution_id=execution.id)
    assert len(images) == 12
    by_status = {s: [i for i in images if i.status == s] for s in ImageStatus}
    assert by_status[ImageStatus.APPROVED], "some images must be approved"
    assert by_status[ImageStatus.QC_FAILED], "defective renders must be caught by QC"
    assert len(by_status[ImageStatus.APPROVED]) + len(by_status[ImageStatus.QC_FAILED]) == 12

    for image in by_status[ImageStatus.APPROVED]:
        # One image lives in exactly one place: the output directory.
        assert image.temp_image_path is None
        final = Path(str(image.final_image_path))
        assert final.parent == tmp_path / "out" and final.is_file()
        assert final.name.startswith(f"{execution.label}_{image.slot}_{image.image_index}")
        assert final.suffix == ".jpg"
        assert Image.open(final).format == "JPEG"
        assert image.image_metadata and image.image_metadata["title"]
        assert image.processing_settings and image.processing_settings["convert_format"] == "jpg"
    for image in by_status[ImageStatus.QC_FAILED]:
        # QC-failed: kept in temp, nothing else spent on it.
        assert image.final_image_path is None and image.image_metadata is None
        assert Path(str(image.temp_image_path)).parent == tmp_path / "tmp"
        assert Path(str(image.temp_image_path)).is_file()
        assert image.qc_reason

    assert sorted(p.name for p in (tmp_path / "tmp").iterdir()) == sorted(
        Path(str(i.temp_image_path)).name for i in by_status[ImageStatus.QC_FAILED]
    )
    assert len(list((tmp_path / "out").iterdir())) == len(by_status[ImageStatus.APPROVED])

    assert execution.status == JobStatus.COMPLETED
    assert execution.total_images == 12
    assert execution.approved_images == len(by_status[ImageStatus.APPROVED])
    assert execution.qc_failed_images == len(by_status[ImageStatus.QC_FAILED])
    assert execution.failed_images == 0
    assert execution.flow_run_id
    assert execution.settings_snapshot["job"]["label"] == execution.label
    assert Path(str(execution.log_path)).is_file()
    slots = repository.list_slots(execution.id)
    assert all(s.status == SlotStatus.GENERATED for s in slots)
    # Each slot keeps its prompt and the local render's task id (stored with its images).
    assert all(s.prompt for s in slots)
    assert len({s.provider_task_id for s in slots if s.provider_task_id}) == len(slots)
    assert len({i.image_mapping_id for i in images}) == 12


def test_aspect_ratios_cycle_per_slot(tmp_path: Path) -> None:
    settings = job_settings(
        tmp_path,
        **{
            "job.count": 4,
            "generation.aspect_ratios": "16:9,1:1,9:16",
            "qc.run_quality_check": False,
            "generation.local_defect_rate": 0,
        },
    )
    summary = generate_job(settings)
    sizes = {
        i.slot: Image.open(str(i.final_image_path)).size
        for i in repository.list_images(execution_id=summary["execution_id"])
    }
    assert sizes == {0: (256, 144), 1: (256, 256), 2: (144, 256), 3: (256, 144)}
    ratios = [s.aspect_ratio for s in repository.list_slots(summary["execution_id"])]
    assert ratios == ["16:9", "1:1", "9:16", "16:9"]


def test_csv_rows_fill_the_template(tmp_path: Path) -> None:
    settings = job_settings(
        tmp_path,
        keywords=EXAMPLES / "keywords.csv",
        **{"job.count": 3, "prompts.template": str(EXAMPLES / "stock_template.txt")},
    )
    summary = generate_job(settings)
    prompts = [s.prompt or "" for s in repository.list_slots(summary["execution_id"])]
    assert "mountain lake at dawn, watercolor, calm mood" in prompts[0]
    assert "coffee cup on a wooden table, flat lay photograph, cozy mood" in prompts[1]
    assert "mountain lake at dawn" in prompts[2]  # wraps around
    assert all("${{" not in p for p in prompts)


class _Recorder:
    """Wraps the local renderer: counts calls and the peak of slots generating at once."""

    lock = threading.Condition()
    in_flight = 0
    peak = 0
    calls: list[str] = []
    fail_when: str | None = None
    leak: str | None = None
    delay = 0.0
    #: Raise a retryable error this many times before succeeding.
    transient_failures = 0
    #: Hold each call until this many are in flight (or 30 s pass): proves they can overlap
    #: however slowly Prefect starts subflows on a busy machine.
    gather = 0

    # It stands in for the local renderer: the same class facts.
    repeatable_create = LocalRenderer.repeatable_create
    fixed_long_side = LocalRenderer.fixed_long_side

    def __init__(self, ctx: registry.ProviderContext) -> None:
        self.inner = LocalRenderer(ctx)
        self.name = "local"

    def generate(self, request: Any) -> Any:
        cls = type(self)
        with cls.lock:
            cls.in_flight += 1
            cls.peak = max(cls.peak, cls.in_flight)
            cls.calls.append(request.prompt)
            cls.lock.notify_all()
            if cls.gather:
                cls.lock.wait_for(lambda: cls.in_flight >= cls.gather, timeout=30)
        try:
            time.sleep(cls.delay)
            with cls.lock:
                if cls.transient_failures > 0:
                    cls.transient_failures -= 1
                    raise RetryableProviderError("HTTP 503 from the service", service="test")
            if cls.fail_when and cls.fail_when in request.prompt:
                detail = f" (key {cls.leak})" if cls.leak else ""
                raise ContentRejected(f"the service refused this prompt{detail}", service="test")
            return self.inner.generate(request)
        finally:
            with cls.lock:
                cls.in_flight -= 1


@pytest.fixture
def recorder() -> Iterator[type[_Recorder]]:
    _Recorder.in_flight = _Recorder.peak = 0
    _Recorder.calls = []
    _Recorder.fail_when = _Recorder.leak = None
    _Recorder.delay = 0.0
    _Recorder.transient_failures = 0
    _Recorder.gather = 0
    with services.overridden("local", roles={"image": f"{__name__}:_Recorder"}):
        yield _Recorder


def test_concurrency_cap_is_respected(tmp_path: Path, recorder: type[_Recorder]) -> None:
    recorder.gather = 3  # each wave of 3 slots waits for its whole wave
    recorder.delay = 0.5  # a fourth slot would have the time to start, if the cap let it
    settings = job_settings(
        tmp_path,
        **{
            "job.count": 6,
            "job.max_concurrency": 3,
            "qc.run_quality_check": False,
            "metadata.run_metadata_gen": False,
        },
    )
    generate_job(settings)
    assert len(recorder.calls) == 6
    assert recorder.peak == 3  # slots really ran in parallel, and never more than the cap


def test_one_failing_slot_leaves_the_others_approved(
    tmp_path: Path, recorder: type[_Recorder]
) -> None:
    recorder.fail_when = "lemon"
    settings = job_settings(
        tmp_path,
        **{
            "job.count": 4,
            "qc.run_quality_check": False,
            "generation.retries": 1,
            "generation.retry_backoff_seconds": 0,
        },
    )
    summary = generate_job(settings)
    execution = repository.get_execution(summary["execution_id"])
    assert execution.status == JobStatus.COMPLETED
    slots = repository.list_slots(execution.id)
    assert [s.status for s in slots] == [
        SlotStatus.GENERATED,
        SlotStatus.FAILED,
        SlotStatus.GENERATED,
        SlotStatus.FAILED,
    ]
    assert "refused this prompt" in str(slots[1].error)
    assert slots[1].prompt  # stored as it turned `generating`, before the refused create
    assert slots[1].error_code == "content_rejected"
    # ContentRejected is not retryable: one call per failing slot.
    assert sum("lemon" in c for c in recorder.calls) == 2
    assert {i.slot for i in repository.list_images(execution_id=execution.id)} == {0, 2}
    assert execution.approved_images == 2


def test_no_secret_reaches_store_logs_artifacts_or_files(
    tmp_path: Path,
    recorder: type[_Recorder],
    monkeypatch: pytest.MonkeyPatch,
    isolated_store: Path,
) -> None:
    secrets = {
        "OPENAI_API_KEY": "fake-openai-test-key-0123456789abcdef",
        "PIAPI_API_KEY": "piapi-test-key-0123456789",
        "REMOVE_BG_API_KEY": "rbg-test-key-0123456789",
        "RUNWARE_API_KEY": "rw-test-key-0123456789",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    # A careless error message that contains a key (as some client libraries produce).
    recorder.fail_when = "lemon"
    recorder.leak = secrets["OPENAI_API_KEY"]
    settings = job_settings(tmp_path, **{"job.count": 2, "processing.convert_format": "png"})
    summary = generate_job(settings)
    execution_id = summary["execution_id"]

    failed = repository.list_slots(execution_id)[1]
    assert "[REDACTED]" in str(failed.error)

    haystacks: dict[str, bytes] = {}
    store = isolated_store / "store.sqlite3"
    with sqlite3.connect(store) as conn:  # every table, every row
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'"):
            rows = conn.execute(f'SELECT * FROM "{table}"').fetchall()
            haystacks[f"table {table}"] = repr(rows).encode()
    for path in [*tmp_path.rglob("*"), *isolated_store.rglob("*")]:
        if path.is_file():
            haystacks[str(path)] = path.read_bytes()

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts()
        flow_runs = client.read_flow_runs()
        logs = client.read_logs()
        task_runs = client.read_task_runs()
    haystacks["artifacts"] = repr([(a.key, a.data, a.description) for a in artifacts]).encode()
    haystacks["flow run parameters"] = repr([r.parameters for r in flow_runs]).encode()
    haystacks["task run states"] = repr(
        [(t.name, t.state.message if t.state else None) for t in task_runs]
    ).encode()
    haystacks["prefect logs"] = repr([entry.message for entry in logs]).encode()
    assert any(b"[REDACTED]" in h for h in haystacks.values())
    assert any(a.key == artifact_key(summary["label"], execution_id, "summary") for a in artifacts)

    for where, data in haystacks.items():
        for name, value in secrets.items():
            assert value.encode() not in data, f"{name} found in {where}"


def test_provider_errors_are_not_retried_by_the_engine_and_nothing_is_generated_twice(
    tmp_path: Path, recorder: type[_Recorder]
) -> None:
    # The HTTP layer owns transient retries (and has already made them when an error reaches
    # the engine): the engine never multiplies them, so a failing paid call is paid once.
    recorder.transient_failures = 1
    settings = job_settings(
        tmp_path,
        **{
            "job.count": 2,
            "job.variations": 2,
            "job.max_concurrency": 1,
            "generation.retries": 2,
            "generation.retry_backoff_seconds": 0.01,
            "qc.run_quality_check": False,
        },
    )
    summary = generate_job(settings)
    assert len(recorder.calls) == 2  # one call per slot
    first, second = repository.list_slots(summary["execution_id"])
    assert first.status == SlotStatus.FAILED and first.attempts == 1
    assert first.error_code == "retryable"
    assert second.status == SlotStatus.GENERATED and second.attempts == 1
    assert summary["status"] == "completed" and summary["failed_slots"] == 1
    assert len(repository.list_images(execution_id=summary["execution_id"])) == 2


def test_progress_and_summary_artifacts(tmp_path: Path) -> None:
    settings = job_settings(tmp_path, **{"job.count": 2, "qc.run_quality_check": False})
    summary = generate_job(settings)
    from prefect.client.orchestration import get_client

    flow_run_id = repository.get_execution(summary["execution_id"]).flow_run_id
    with get_client(sync_client=True) as client:
        artifacts = {a.key: a for a in client.read_artifacts() if str(a.flow_run_id) == flow_run_id}
    assert set(artifacts) == {
        artifact_key(summary["label"], summary["execution_id"], "progress"),
        artifact_key(summary["label"], summary["execution_id"], "summary"),
    }
    progress = artifacts[artifact_key(summary["label"], summary["execution_id"], "progress")]
    assert progress.type == "progress" and float(str(progress.data)) == 100.0
    table = artifacts[artifact_key(summary["label"], summary["execution_id"], "summary")]
    assert table.type == "table"
    assert "approved" in str(table.data) and summary["label"] in str(table.description)


@pytest.mark.postgres
def test_a_job_on_postgresql(tmp_path: Path, postgres_store: str) -> None:
    settings = job_settings(tmp_path, **{"job.count": 3, "job.variations": 2})
    summary = generate_job(settings)
    execution = repository.get_execution(summary["execution_id"])
    assert execution.status == JobStatus.COMPLETED and execution.total_images == 6
    assert execution.approved_images + execution.qc_failed_images == 6
