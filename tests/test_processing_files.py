"""The file edge (tasks.image_files) and the process pool (engine.pool): naming, atomic
writes, errors."""

from __future__ import annotations

import io
import os
import pickle
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from genfactory.config import ProcessingSection
from genfactory.engine import pool
from genfactory.errors import ImageRejected
from genfactory.processing import embed_metadata
from genfactory.tasks import image_files


def _photo(path: Path, size: tuple[int, int] = (320, 200)) -> Path:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
    Image.fromarray(arr).resize(size, Image.Resampling.BICUBIC).save(path)
    return path


def _cutout(path: Path) -> Path:
    image = Image.new("RGBA", (300, 200), (0, 0, 0, 0))
    image.paste((30, 140, 220, 255), (50, 40, 250, 160))
    image.save(path)
    return path


def _settings(**changes: object) -> dict[str, object]:
    return ProcessingSection(**changes).model_dump(mode="json")  # type: ignore[arg-type]


@pytest.fixture
def inline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(pool.POOL_ENV, "0")


def test_finish_to_file_writes_the_configured_format(tmp_path: Path, inline: None) -> None:
    src = _photo(tmp_path / "in.png")
    out = tmp_path / "out"
    settings = _settings(convert_format="jpg", jpg_quality=90, image_enhancement=True)
    result = image_files.finish_to_file(str(src), str(out), "job_1_0", settings)
    assert result["path"] == str(out / "job_1_0.jpg")
    assert result["format"] == "jpg" and (result["width"], result["height"]) == (320, 200)
    assert result["bytes"] == os.path.getsize(result["path"])
    original = image_files.hash_file(str(src), 10_000_000)
    assert 0 <= original < 2**64 and original == image_files.hash_file(str(src), 10_000_000)
    with Image.open(result["path"]) as written:
        assert written.format == "JPEG" and written.size == (320, 200)
    assert sorted(p.name for p in out.iterdir()) == ["job_1_0.jpg"]  # no temp left behind


def test_existing_names_get_a_number_and_are_never_overwritten(
    tmp_path: Path, inline: None
) -> None:
    src = _photo(tmp_path / "in.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "job_1_0.png").write_bytes(b"someone else's image")
    paths = [
        image_files.finish_to_file(str(src), str(out), "job_1_0", _settings())["path"]
        for _ in range(3)
    ]
    assert [Path(p).name for p in paths] == ["job_1_0-2.png", "job_1_0-3.png", "job_1_0-4.png"]
    assert (out / "job_1_0.png").read_bytes() == b"someone else's image"


def test_stems_cannot_leave_the_output_directory(tmp_path: Path, inline: None) -> None:
    src = _photo(tmp_path / "in.png")
    out = tmp_path / "out"
    result = image_files.finish_to_file(str(src), str(out), "../../etc/passwd", _settings())
    assert Path(result["path"]).parent == out
    assert Path(result["path"]).name.endswith("etc_passwd.png")
    assert not Path(result["path"]).name.startswith(".")  # never a hidden file


def test_prepare_then_finish_from_bytes(tmp_path: Path, inline: None) -> None:
    src = _cutout(tmp_path / "cut.png")
    settings = _settings(trim_transparent_background=True, convert_format="webp")
    prepared = image_files.prepare_file(str(src), settings, 10_000_000)
    with Image.open(io.BytesIO(prepared)) as image:
        assert image.format == "PNG" and image.mode == "RGBA" and image.size == (200, 120)
    result = image_files.finish_to_file(prepared, str(tmp_path / "out"), "cut", settings)
    assert Path(result["path"]).name == "cut.webp"
    assert (result["width"], result["height"]) == (200, 120)


def test_a_failing_write_leaves_no_partial_file(
    tmp_path: Path, inline: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _photo(tmp_path / "in.png")
    out = tmp_path / "out"

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        image_files.finish_to_file(str(src), str(out), "job_1_0", _settings())
    assert list(out.iterdir()) == []


def test_a_failing_encoder_leaves_no_file(
    tmp_path: Path, inline: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _photo(tmp_path / "in.png")
    out = tmp_path / "out"
    out.mkdir()

    def broken_encoder(*args: object) -> bytes:
        raise ImageRejected("cannot encode the image as JPEG: encoder error -2")

    monkeypatch.setattr(image_files, "encode", broken_encoder)
    with pytest.raises(ImageRejected, match="cannot encode"):
        image_files.finish_to_file(str(src), str(out), "job_1_0", _settings(convert_format="jpg"))
    assert list(out.iterdir()) == []


def test_unusable_sources_are_rejected(tmp_path: Path, inline: None) -> None:
    html = tmp_path / "download.png"
    html.write_bytes(b"<html><body>403 Forbidden</body></html>")
    with pytest.raises(ImageRejected, match="HTML"):
        image_files.finish_to_file(str(html), str(tmp_path / "out"), "x", _settings())
    with pytest.raises(ImageRejected, match="does not exist"):
        image_files.prepare_file(str(tmp_path / "missing.png"), _settings(), 10_000_000)


def test_image_rejected_survives_pickling() -> None:
    error = pickle.loads(pickle.dumps(ImageRejected("image is 1x1 pixels, too small to process")))
    assert isinstance(error, ImageRejected)
    assert str(error) == "image is 1x1 pixels, too small to process"


def test_the_process_pool_returns_results_and_rejections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(pool.POOL_ENV, "1")
    src = _photo(tmp_path / "in.png")
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (1, 1)).save(tiny)
    try:
        assert pool.warm_pool() == pool.pool_size()
        result = pool.run_in_pool(
            image_files.finish_to_file, str(src), str(tmp_path / "out"), "pooled", _settings()
        )
        assert Path(result["path"]).is_file() and result["width"] == 320
        with pytest.raises(ImageRejected, match="image is 1x1 pixels, too small to process"):
            pool.run_in_pool(image_files.prepare_file, str(tiny), _settings(), 10_000_000)
    finally:
        pool.shutdown_pool()


def test_a_dying_worker_is_replaced_and_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(pool.POOL_ENV, "1")
    src = _photo(tmp_path / "in.png")
    try:
        with pytest.raises(ImageRejected, match="killed its worker process twice"):
            pool.run_in_pool(os._exit, 3)  # what the OOM killer does to a worker
        result = pool.run_in_pool(image_files.prepare_file, str(src), _settings(), 10_000_000)
        assert result.startswith(b"\x89PNG")
    finally:
        pool.shutdown_pool()


def test_a_batch_in_the_pool_answers_each_call_and_survives_a_dying_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A slot's images are decoded as one batch: each keeps its own result or rejection.
    monkeypatch.setenv(pool.POOL_ENV, "1")
    photos = [_photo(tmp_path / f"in{i}.png") for i in range(3)]
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (1, 1)).save(tiny)
    calls = [(str(p), 10_000_000) for p in photos] + [(str(tiny), 10_000_000)]
    try:
        results = pool.map_in_pool(image_files.hash_file, calls)
        assert results[:3] == [image_files.hash_file(*call) for call in calls[:3]]
        assert isinstance(results[3], ImageRejected)
        assert "too small" in str(results[3])
        # A worker killed mid-batch (the OOM killer) costs only the call that killed it.
        mixed = pool.map_in_pool(_hash_or_die, [(str(photos[0]),), ("die",), (str(photos[1]),)])
        assert mixed[0] == results[0] and mixed[2] == results[1]
        assert isinstance(mixed[1], ImageRejected)
        assert "killed its worker process twice" in str(mixed[1])
    finally:
        pool.shutdown_pool()


def _hash_or_die(src: str) -> int:
    if src == "die":
        os._exit(3)
    return image_files.hash_file(src, 10_000_000)


def test_a_file_exiv2_cannot_parse_is_rejected_and_left_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "image.jpg"
    path.write_bytes(b"not really a jpeg")
    with pytest.raises(ImageRejected, match=r"cannot write metadata into image\.jpg"):
        embed_metadata(path, title="Café", description="d", keywords=["k"])
    assert path.read_bytes() == b"not really a jpeg"
    assert [p.name for p in tmp_path.iterdir()] == ["image.jpg"]


def test_partial_writes_finds_what_a_killed_writer_left(tmp_path: Path) -> None:
    from genfactory.files import partial_writes

    killed = tmp_path / ".fox_0_1_e3.0badf00d.tmp"  # write_replacing's name for fox_0_1_e3
    killed.write_bytes(b"half")
    writing = tmp_path / ".fox_0_2_e3.1badf00d.tmp"
    writing.write_bytes(b"half")
    (tmp_path / "fox_0_1_e3.png").write_bytes(b"a finished file")
    (tmp_path / ".fox_0_1_e3.0badf00d.meta.png").write_bytes(b"metadata's, not ours")
    (tmp_path / ".fox_0_1_e3.tmp").write_bytes(b"no token: someone else's")

    assert partial_writes(tmp_path) == [killed, writing]
    assert partial_writes(tmp_path, lambda stem: stem == "fox_0_2_e3") == [writing]
    assert partial_writes(tmp_path / "missing") == []


def test_delivering_a_file_that_is_gone_leaves_no_empty_output(tmp_path: Path) -> None:
    from genfactory.files import link_no_clobber

    with pytest.raises(FileNotFoundError):
        link_no_clobber(tmp_path / "gone.png", tmp_path / "out", "fox_0_0", "png")
    assert list((tmp_path / "out").iterdir()) == []  # no reserved, empty fox_0_0.png


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _recording_caller(outcomes: list[object]) -> Callable[..., None]:
    """A thread target that runs a call in the pool and records its result or exception."""

    def call(fn: Callable[..., object], *args: object) -> None:
        try:
            outcomes.append(pool.run_in_pool(fn, *args))
        except Exception as exc:
            outcomes.append(exc)

    return call


def test_shutdown_stops_the_workers_after_their_calls_and_cancels_the_waiting_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(pool.POOL_ENV, "1")
    size = pool.pool_size()
    assert pool.warm_pool() == size
    results: list[object] = []
    call = _recording_caller(results)

    # Every worker busy for a while, and one more call waiting for a worker.
    busy = [threading.Thread(target=call, args=(_pid_after, 3.0)) for _ in range(size)]
    for thread in busy:
        thread.start()
    time.sleep(1.0)
    waiting = threading.Thread(target=call, args=(os.getpid,))
    waiting.start()
    time.sleep(1.0)
    pool.shutdown_pool()
    for thread in [*busy, waiting]:
        thread.join(20)
    pids = [r for r in results if isinstance(r, int)]
    assert len(pids) == size  # the running calls answered
    assert [type(r) for r in results if not isinstance(r, int)] == [CancelledError]
    assert not any(_alive(pid) for pid in pids)  # and their workers are gone
    try:  # the next call starts a new pool
        assert pool.run_in_pool(os.getpid) not in pids
    finally:
        pool.shutdown_pool()


def test_a_call_that_does_not_pickle_fails_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(pool.POOL_ENV, "1")
    try:
        first = pool.run_in_pool(os.getpid)
        with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
            pool.run_in_pool(len, lambda: None)  # a lambda cannot travel to a worker
        with pytest.raises(RuntimeError, match="_unpicklable_result"):
            pool.run_in_pool(_unpicklable_result)
        with pytest.raises(SystemExit):
            pool.run_in_pool(sys.exit, 3)
        assert _alive(first)  # none of them cost the worker its life
        batch = pool.map_in_pool(len, [(b"ab",), (lambda: None,), (b"c",)])
        assert batch[0] == 2 and batch[2] == 1 and isinstance(batch[1], Exception)
        only_bad = pool.map_in_pool(len, [(lambda: None,)])  # nothing in flight: no wait
        assert len(only_bad) == 1 and isinstance(only_bad[0], Exception)
    finally:
        pool.shutdown_pool()


def test_callers_waiting_for_a_worker_go_on_when_workers_die(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # More callers than workers, and every worker killed twice over: the places the dead
    # workers leave are filled again, so nobody waits for ever.
    monkeypatch.setenv(pool.POOL_ENV, "1")
    size = pool.pool_size()
    outcomes: list[object] = []
    call = _recording_caller(outcomes)

    try:
        threads = [threading.Thread(target=call, args=(os._exit, 3)) for _ in range(size)]
        threads += [threading.Thread(target=call, args=(_pid_after, 0.2)) for _ in range(4)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        assert not any(thread.is_alive() for thread in threads), "callers left waiting"
        deaths = [o for o in outcomes if isinstance(o, ImageRejected)]
        assert len(deaths) == size and sum(isinstance(o, int) for o in outcomes) == 4
    finally:
        pool.shutdown_pool()


def _pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def _unpicklable_result() -> object:
    return threading.Lock()


@pytest.mark.usefixtures("inline")
def test_only_a_file_that_decoded_before_goes_to_the_remover_as_it_is(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from genfactory.config import Settings
    from genfactory.errors import UnreadableImage
    from genfactory.tasks.process import _prepared_for_removal

    photo = Image.new("RGB", (64, 48), (200, 40, 40))
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=90)
    whole = buffer.getvalue()
    src = tmp_path / "a.jpg"
    src.write_bytes(whole)
    runtime: Any = SimpleNamespace(settings=Settings())
    used = Settings().processing.model_dump(mode="json")
    decoded: Any = SimpleNamespace(temp_image_path=str(src), phash="00ff00ff00ff00ff")
    never_decoded: Any = SimpleNamespace(temp_image_path=str(src), phash=None)
    assert _prepared_for_removal(runtime, decoded, used) == (whole, "image/jpeg")
    data, media_type = _prepared_for_removal(runtime, never_decoded, used)
    assert media_type == "image/png" and data.startswith(b"\x89PNG")
    # A file that never decoded (an image that failed at download, retried): its header is
    # fine and it ends as a JPEG should, but the prepare stage, not a paid removal, finds out.
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(whole[: len(whole) // 2] + b"\xff\xd9")
    with pytest.raises((UnreadableImage, ImageRejected)):
        _prepared_for_removal(runtime, SimpleNamespace(temp_image_path=str(cut), phash=None), used)
    trimmed: Any = SimpleNamespace(
        settings=Settings.model_validate({"processing": {"trim_transparent_background": True}})
    )
    assert _prepared_for_removal(trimmed, decoded, used)[1] == "image/png"
