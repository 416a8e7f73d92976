"""`generate_job` end to end with every role on a real HTTP provider, against the fake services
over loopback: what the services received, riding out faults, and a bad key stopping the job."""

from __future__ import annotations

import base64
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from genfactory.config import Settings, load_settings
from genfactory.flows import generate_job
from genfactory.statuses import ImageStatus, JobStatus
from genfactory.storage import repository
from tests.fakes.fixtures import exported_fakes
from tests.fakes.server import FakeServices

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_harness")]

KEYWORDS = [
    "red fox in a snowy forest",
    "company logo mockup on a desk",  # the fake vision QC rejects logos
    "ripe lemon on a white table",
    "mountain lake at dawn",
    "coffee cup on a wooden table",
    "neon logo sign on a brick wall",
    "sunflower field in summer",
    "old lighthouse on a cliff",
    "autumn leaves on a path",
    "fresh bread on a cutting board",
    "watercolor hot air balloons",
    "vintage logo badge design",
]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServices]:
    """The fakes, small images, and the environment a user would export for them."""
    with exported_fakes(monkeypatch, image_long_side=192) as fake:
        yield fake


def remote_settings(tmp_path: Path, fake: FakeServices, count: int, **extra: Any) -> Settings:
    tmp_path.mkdir(parents=True, exist_ok=True)
    keywords = tmp_path / "keywords.txt"
    keywords.write_text("\n".join(KEYWORDS) + "\n")
    values: dict[str, Any] = {
        "job.keywords_file": str(keywords),
        "job.output_dir": str(tmp_path / "out"),
        "job.temp_dir": str(tmp_path / "tmp"),
        "job.count": count,
        "job.max_concurrency": 4,
        "job.seed": 3,
        "providers.prompt": "openai",
        "providers.image": "piapi",
        "providers.qc": "openai",
        "providers.background": "removebg",
        "providers.metadata": "openai",
        "processing.remove_bg": True,
        "processing.remove_bg_size": "50MP",
        "processing.convert_format": "jpg",
        "generation.aspect_ratios": "1:1,16:9",
        "generation.polling_interval_seconds": 0.05,
        "generation.http_timeout_seconds": 2.0,
        "generation.retries": 3,
        "generation.retry_backoff_seconds": 0.1,
        "qc.min_width": 64,
        "qc.min_height": 64,
        # Prefect global limits cost ~2 s per call on the busy test server: see test below.
        "concurrency.scope": "process",
    }
    values.update(extra)
    # Base URLs come from the environment (PIAPI_BASE_URL...), as for a user.
    return load_settings(overrides=values, environ=fake.env())


def removal_only_settings(tmp_path: Path, fake: FakeServices, **extra: Any) -> Settings:
    """One Midjourney slot whose only other remote call is remove.bg (no QC)."""
    local = {f"providers.{role}": "local" for role in ("prompt", "qc", "metadata")}
    return remote_settings(
        tmp_path, fake, count=1, **{**local, "qc.run_quality_check": False, **extra}
    )


def _store_files() -> list[Path]:
    url = os.environ["GENFACTORY_DATABASE_URL"]
    store = Path(url.removeprefix("sqlite:///"))
    return [p for p in store.parent.glob(store.name + "*")]


def data_url(request: Any) -> str:
    return str(request.json["messages"][1]["content"][1]["image_url"]["url"])


def data_url_type(request: Any) -> str:
    url = data_url(request)
    media_type = url.split(";", 1)[0].removeprefix("data:")
    assert base64.b64decode(url.split(",", 1)[1])[:2] in (b"\xff\xd8", b"\x89P")
    return str(media_type)


def statuses_by_image(execution_id: int) -> dict[tuple[int, int], str]:
    return {
        (image.slot, image.image_index): str(image.status)
        for image in repository.list_images(execution_id=execution_id)
    }


def test_every_role_over_http(tmp_path: Path, fake: FakeServices) -> None:
    summary = generate_job(remote_settings(tmp_path, fake, count=2))
    execution = repository.get_execution(summary["execution_id"])
    images = repository.list_images(execution_id=execution.id)
    statuses = Counter(image.status for image in images)
    assert execution.status == JobStatus.COMPLETED
    assert statuses == {ImageStatus.APPROVED: 4, ImageStatus.QC_FAILED: 4}

    # Prompts: the filled system prompt and the keyword, per slot.
    chats = fake.requests("openai", path="/chat/completions")
    prompt_calls = [r for r in chats if "response_format" not in r.json]
    assert sorted(r.json["messages"][1]["content"] for r in prompt_calls) == sorted(KEYWORDS[:2])
    # Midjourney: one task per slot, the version appended, the aspect ratios cycled.
    creates = fake.requests("piapi", method="POST")
    assert sorted(r.json["input"]["aspect_ratio"] for r in creates) == ["16:9", "1:1"]
    assert all(r.json["input"]["prompt"].endswith(" --v 6.1") for r in creates)
    # QC on all 8 images (JPEG from the CDN, sent as JPEG); metadata and remove.bg only on the
    # 4 that passed: nothing is spent on rejected images.
    qc = [r for r in chats if "quality_check" in str(r.json.get("response_format"))]
    metadata = [r for r in chats if "stock_metadata" in str(r.json.get("response_format"))]
    assert len(qc) == 8 and {data_url_type(r) for r in qc} == {"image/jpeg"}
    assert len(metadata) == 4
    removals = fake.requests("removebg")
    assert len(removals) == 4 and {r.form["size"] for r in removals} == {"50MP"}
    # Without a trim, remove.bg gets the generated JPEG itself, byte for byte as QC saw it.
    checked = {base64.b64decode(data_url(r).split(",", 1)[1]) for r in qc}
    assert {r.files["image_file"][1:] for r in removals} <= {("image/jpeg", b) for b in checked}
    for image in images:
        if image.status == ImageStatus.APPROVED:
            assert image.image_metadata and "logo" not in image.image_metadata["title"].lower()
            assert Path(str(image.final_image_path)).suffix == ".jpg"
        else:
            assert "logo" in str(image.qc_reason)
    # Keys travel in headers only, and the store has none.
    keys = [key for key in fake.keys.values() if key]
    for request in fake.requests():
        assert not any(key in request.path or key.encode() in request.body for key in keys)
    snapshot = str(execution.settings_snapshot)
    assert not any(key in snapshot for key in keys)
    # ...nor the log, the delivered files, the temp files or the store's file.
    files = [Path(str(execution.log_path)), *tmp_path.rglob("*"), *_store_files()]
    for path in (p for p in files if p.is_file()):
        data = path.read_bytes()
        assert not any(key.encode() in data for key in keys), path


def test_faults_change_nothing_but_the_request_count(tmp_path: Path, fake: FakeServices) -> None:
    clean = generate_job(remote_settings(tmp_path / "clean", fake, count=12))
    expected = statuses_by_image(clean["execution_id"])
    assert Counter(expected.values()) == {"approved": 36, "qc_failed": 12}
    clean_requests = len(fake.requests())
    fake.reset()
    # Paid creates are sent once: a fault there fails its slot on purpose (test_cost_safety).
    # Everything else rides faults out within its budget; the rate and the budgets make a lost
    # image about a one-in-10,000 job, not a flaky test (the job sends about 250 requests):
    # - the HTTP layer tries a call 6 times (`generation.retries = 5`): 0.08^6 a call;
    # - a poll is sent once and the next poll is its retry: a slot fails after
    #   `max_poll_errors` failed polls in a row (3 by default, per the SPEC), here 6 as well;
    # - an unreadable OpenAI body is asked again, not retried by the HTTP layer, up to
    #   `openai.max_attempts` calls (3 by default). 1 fault in 6 is `garbage`: at 15 % and 3
    #   calls that lost an image or a prompt in about one job in 400, and 6 tries of the HTTP
    #   layer another in about 350 (CI saw one).
    fake.set_fault_rate(0.08, seed=11, retry_after=0.1, spare=[("piapi", "/api/v1/task")])
    budgets = {
        "generation.retries": 5,
        "generation.max_poll_errors": 6,
        "openai.max_attempts": 6,
    }
    faulty = generate_job(remote_settings(tmp_path / "faulty", fake, count=12, **budgets))
    got = statuses_by_image(faulty["execution_id"])
    why = {
        (image.slot, image.image_index): (image.error_code, image.error)
        for image in repository.list_images(execution_id=faulty["execution_id"])
        if got[(image.slot, image.image_index)] != expected.get((image.slot, image.image_index))
    }
    # A slot that lost its prompt or its generation has no image rows: say why too.
    lost = {
        slot.slot: (slot.error_code, slot.error)
        for slot in repository.list_slots(faulty["execution_id"])
        if slot.status == "failed"
    }
    assert got == expected, (why, lost)
    assert repository.get_execution(faulty["execution_id"]).status == JobStatus.COMPLETED
    received = fake.requests()
    faults = Counter(r.fault for r in received if r.fault)
    # 28 here: the seeded draws make the count all but fixed.
    assert sum(faults.values()) >= 15 and len(faults) == 6, faults
    assert len(received) > clean_requests
    # No slot generated twice: one Midjourney task per slot's prompt, whatever failed around it.
    created = Counter(task["prompt"] for task in fake.tasks().values())
    assert len(created) == 12 and set(created.values()) == {1}
    images = repository.list_images(execution_id=faulty["execution_id"])
    assert len(images) == 48 == len({(i.slot, i.image_index) for i in images})
    # Retries show in the job's log, with what went wrong.
    log = Path(str(repository.get_execution(faulty["execution_id"]).log_path)).read_text()
    assert "; try 2 of" in log


def test_a_bad_key_fails_the_job_within_seconds(
    tmp_path: Path, fake: FakeServices, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIAPI_API_KEY", "wrong-piapi-key-1234")
    fake.set_latency("piapi", 0.1)
    started = time.monotonic()
    summary = generate_job(remote_settings(tmp_path, fake, count=12))
    took = time.monotonic() - started
    execution = repository.get_execution(summary["execution_id"])
    assert execution.status == JobStatus.FAILED
    # The 401 comes at once; the rest is Prefect winding the 12 slot subflows down (8-17 s).
    assert fake.requests("piapi")[0].started - started < 5
    assert took < 30
    # The first 401s stop the job: no slot starts after that, nothing else is spent.
    assert len(fake.requests("piapi")) <= 4
    assert not [r for r in fake.requests("openai") if "response_format" in r.json]
    assert not fake.requests("removebg")
    assert "PIAPI_API_KEY was refused" in str(execution.error_message)
    assert "wrong-piapi-key-1234" not in str(execution.error_message)


def test_prefect_global_limits_cap_calls_across_threads() -> None:
    from prefect.client.orchestration import get_client

    from genfactory.engine.limits import PrefectLimiter, limit_name, make_limiter

    settings = Settings.model_validate({"concurrency": {"sdwebui": 2, "scope": "prefect"}})
    limiter = make_limiter(settings)
    assert isinstance(limiter, PrefectLimiter)
    lock = threading.Lock()
    state = {"now": 0, "peak": 0}

    def call() -> None:
        with limiter("sdwebui"):
            with lock:
                state["now"] += 1
                state["peak"] = max(state["peak"], state["now"])
            time.sleep(0.2)
            with lock:
                state["now"] -= 1

    threads = [threading.Thread(target=call) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert state["peak"] == 2
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name(limit_name("sdwebui")).limit == 2


def test_no_credits_at_remove_bg_stops_the_job_and_loses_nothing(
    tmp_path: Path, fake: FakeServices
) -> None:
    fake.add_fault("removebg", "402", times=100)
    settings = remote_settings(
        tmp_path,
        fake,
        count=4,
        **{
            "providers.prompt": "local",
            "providers.qc": "local",
            "providers.metadata": "local",
            "job.max_concurrency": 1,
        },
    )
    summary = generate_job(settings)
    execution = repository.get_execution(summary["execution_id"])
    assert execution.status == JobStatus.FAILED
    assert "402" in str(execution.error_message)
    # The first 402 stopped everything: no second remove.bg call, no further Midjourney task.
    assert len(fake.requests("removebg")) == 1
    assert len(fake.requests("piapi", method="POST")) == 1
    images = repository.list_images(execution_id=execution.id)
    # None lost, none delivered: the images stopped in flight fail with the reason and keep
    # their originals in temp for a retry.
    stopped = [i for i in images if i.status == ImageStatus.FAILED]
    assert stopped and all(i.error_code == "job_stopped" for i in stopped)
    assert {i.status for i in images} <= {ImageStatus.FAILED, ImageStatus.QC_FAILED}
    assert all(Path(str(i.temp_image_path)).is_file() for i in images)
    assert all(i.final_image_path is None for i in images)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
    slots = repository.list_slots(execution.id)
    assert [s.error_code for s in slots[1:]] == ["job_stopped"] * 3


def test_a_refused_openai_key_stops_the_job_at_the_first_call(
    tmp_path: Path, fake: FakeServices, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "wrong-openai-key-98765")
    settings = remote_settings(
        tmp_path,
        fake,
        count=4,
        **{"providers.image": "local", "providers.background": "local", "job.max_concurrency": 1},
    )
    summary = generate_job(settings)
    execution = repository.get_execution(summary["execution_id"])
    assert execution.status == JobStatus.FAILED
    assert "OPENAI_API_KEY" in str(execution.error_message)
    assert "wrong-openai-key-98765" not in str(execution.error_message)
    assert len(fake.requests("openai")) == 1  # the prompt call; nothing after it


def test_a_transient_remove_bg_outage_is_retried_not_skipped(
    tmp_path: Path, fake: FakeServices
) -> None:
    # Three 503s use up the in-call tries; the process step's own retry then succeeds, so the
    # image is delivered cut out instead of falling back to "background kept".
    fake.add_fault("removebg", "503", times=3)
    summary = generate_job(removal_only_settings(tmp_path, fake))
    images = repository.list_images(execution_id=summary["execution_id"])
    assert [i.status for i in images] == [ImageStatus.APPROVED] * 4
    assert len(fake.requests("removebg")) == 3 + 4
    log = Path(str(repository.get_execution(summary["execution_id"]).log_path)).read_text()
    assert "background kept" not in log


def test_a_trimmed_image_goes_to_remove_bg_as_its_prepared_png(
    tmp_path: Path, fake: FakeServices
) -> None:
    settings = removal_only_settings(
        tmp_path, fake, **{"processing.trim_transparent_background": True}
    )
    summary = generate_job(settings)
    images = repository.list_images(execution_id=summary["execution_id"])
    assert [i.status for i in images] == [ImageStatus.APPROVED] * 4
    uploads = [r.files["image_file"] for r in fake.requests("removebg")]
    assert len(uploads) == 4
    assert all(name == "image.png" and media == "image/png" for name, media, _ in uploads)
    assert all(data.startswith(b"\x89PNG") for _, _, data in uploads)
