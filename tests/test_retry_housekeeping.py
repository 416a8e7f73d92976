"""Deleting a job and cleaning temp through the CLI: exactly the job's rows and files go, and
`clean` never removes what a retry needs (`--dry-run` removes nothing)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genfactory import housekeeping
from genfactory.cli import app
from genfactory.flows import generate_job
from genfactory.statuses import ImageStatus
from genfactory.storage import repository
from genfactory.tasks.retry import queue_retries
from tests.test_engine import job_settings
from tests.test_rerun import _dump

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_harness")]
runner = CliRunner()


def _job(tmp_path: Path, label: str, **overrides: object) -> int:
    settings = job_settings(tmp_path / label, **{"job.count": 2, "job.label": label, **overrides})
    return int(generate_job(settings)["execution_id"])


def _files(execution_id: int) -> set[Path]:
    execution = repository.get_execution(execution_id)
    paths = {Path(str(execution.log_path))}
    for image in repository.list_images(execution_id=execution_id):
        paths |= {Path(p) for p in (image.final_image_path, image.temp_image_path) if p}
    return paths


def _partial(directory: Path, stem: str) -> Path:
    """A file as a writer killed between writing and renaming leaves it (genfactory.files)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f".{stem}.0badf00d.tmp"
    path.write_bytes(b"half an image")
    return path


def test_a_job_removes_the_files_its_killed_attempts_left_and_only_those(tmp_path: Path) -> None:
    first = _job(tmp_path, "first")
    temp, out = tmp_path / "second" / "tmp", tmp_path / "second" / "out"
    ours = first + 1  # the id the next job gets
    cut_short = {
        _partial(temp, f"second_0_1_e{ours}"),  # an original
        _partial(temp / ".staged", f"second_1_0_e{ours}"),  # a processed file
        _partial(out, "second_0_0.png"),  # a delivered file, its name reserved earlier
    }
    orphan = temp / f"second_1_3_e{ours}.png"  # an approved image's original, if a kill had
    orphan.write_bytes(b"an original")  # cut its approval's clean-up short
    others = {
        _partial(temp, f"second_0_1_e{ours}0"),  # another execution's
        _partial(temp / ".staged", f"second_1_0_e{ours}1"),
        _partial(temp, "second_0_1"),
        _partial(out, "xsecond_0_0.png"),
        temp / f"second_1_3_e{ours}0.png",  # another execution's
        temp / f"second_7_0_e{ours}.png",  # a slot this job does not have
        temp / f"mine_e{ours}.png",  # not a name genfactory gives
    }
    for path in others:
        if not path.exists():
            path.write_bytes(b"not this job's original")

    assert _job(tmp_path, "second") == ours

    assert (out / "second_0_0.png").is_file()
    assert not any(p.exists() for p in cut_short | {orphan})
    assert all(p.is_file() for p in others)
    # A write begun after a run started may still be going on (a retry's): that run spares it.
    writing = _partial(temp, f"second_0_1_e{ours}")
    assert writing not in housekeeping.job_leftovers(ours, written_before=time.time() - 30)
    assert writing in housekeeping.job_leftovers(ours)


def test_deleting_a_job_removes_exactly_its_rows_and_files(tmp_path: Path) -> None:
    gone = _job(tmp_path, "gone", **{"qc.min_width": 100_000})  # originals kept in temp
    kept = _job(tmp_path, "kept")
    gone_files, kept_files = _files(gone), _files(kept)
    gone_files.add(_partial(tmp_path / "gone" / "tmp", f"gone_0_0_e{gone}"))
    kept_files.add(_partial(tmp_path / "kept" / "tmp", f"kept_0_0_e{kept}"))
    assert gone_files and all(p.is_file() for p in gone_files | kept_files)
    kept_rows = _dump(kept)

    result = runner.invoke(app, ["jobs", "delete", str(gone), "--yes"])

    assert result.exit_code == 0, result.output
    assert _dump(gone) == []
    assert _dump(kept) == kept_rows
    assert not any(p.exists() for p in gone_files)
    assert all(p.is_file() for p in kept_files)
    result = runner.invoke(app, ["jobs", "delete", str(kept)])  # not a terminal: no prompt
    assert result.exit_code == 2 and "pass --yes" in result.output
    assert _dump(kept) == kept_rows


def test_clean_removes_only_what_no_retry_needs_and_dry_run_removes_nothing(
    tmp_path: Path,
) -> None:
    shared = {"qc.min_width": 100_000, "job.temp_dir": str(tmp_path / "temp")}  # as by default
    rejected = _job(tmp_path, "rejected", **shared)
    orphan_job = _job(tmp_path, "orphan", **shared)
    orphans = {p for p in _files(orphan_job) if p.suffix == ".png"}
    orphans.add(_partial(tmp_path / "temp", f"orphan_0_0_e{orphan_job}"))
    orphans.add(_partial(tmp_path / "temp" / ".staged", f"orphan_0_1_e{orphan_job}"))
    assert runner.invoke(app, ["jobs", "delete", str(orphan_job), "--yes", "--keep-files"])
    needed = {Path(str(i.temp_image_path)) for i in repository.list_images(execution_id=rejected)}
    queue_retries(job_id=rejected)  # queued: clean must keep the originals too

    dry = runner.invoke(app, ["clean", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert all(p.is_file() for p in orphans | needed)
    listed = "".join(dry.output.split())
    assert all(str(p) in listed for p in orphans)
    assert not any(str(p) in listed for p in needed)

    assert runner.invoke(app, ["clean"]).exit_code == 0
    assert not any(p.exists() for p in orphans)
    assert all(p.is_file() for p in needed)
    statuses = {i.status for i in repository.list_images(execution_id=rejected)}
    assert statuses == {ImageStatus.RETRY_PENDING}


def test_images_show_json_has_every_field(tmp_path: Path) -> None:
    job = _job(tmp_path, "shown")
    image = repository.list_images(execution_id=job)[0]
    result = runner.invoke(app, ["images", "show", str(image.id), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["id"] == image.id and data["status"] == str(image.status)
    assert data["processing_settings"]["convert_format"] == "png"
    listed = json.loads(runner.invoke(app, ["jobs", "list", "--json"]).output)
    assert [e["id"] for e in listed] == [job]
