"""The image ZIP: members, stock names, extensions, metadata.xlsx and the Adobe CSV."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import pytest
from openpyxl import load_workbook
from PIL import Image

from genfactory.errors import UserError
from genfactory.exports import run_export
from tests.test_export_support import make_job


def test_zip_holds_the_approved_files_under_stock_names(tmp_path: Path) -> None:
    # Two jobs whose files share names: the second of each gets a number before the extension.
    names = ["meadow", "meadow_shot", "x" * 45]
    first = make_job(tmp_path, label="spring", approved=3, names=names)
    second = make_job(tmp_path, label="summer", approved=2, qc_failed=1, failed=1, names=names)
    result = run_export([first.id, second.id], "zip", tmp_path / "upload.zip")
    assert result.path == tmp_path / "upload.zip"
    with zipfile.ZipFile(result.path) as archive:
        members = archive.namelist()
        images = [m for m in members if m.endswith(".jpg")]
        assert images == [
            "meadow.jpg",
            "meadow_shot.jpg",
            "x" * 26 + ".jpg",
            "meadow_2.jpg",
            "meadow_shot_2.jpg",
        ]
        assert members == [*images, "metadata.xlsx", "adobe_stock.csv", "export_report.txt"]
        assert all(len(m) <= 30 for m in images)
        # Each member is the very file, and its extension says what it is.
        source = tmp_path / "out-summer" / "meadow.jpg"
        assert archive.read("meadow_2.jpg") == source.read_bytes()
        for member in images:
            with Image.open(io.BytesIO(archive.read(member))) as opened:
                assert opened.format == "JPEG"
        # Images are stored as they are (already compressed); the tables are deflated.
        assert archive.getinfo("meadow.jpg").compress_type == zipfile.ZIP_STORED
        assert archive.getinfo("metadata.xlsx").compress_type == zipfile.ZIP_DEFLATED
        archive.extract("metadata.xlsx", tmp_path)
        rows = list(csv.reader(io.StringIO(archive.read("adobe_stock.csv").decode("utf-8"))))
        report = archive.read("export_report.txt").decode("utf-8")
    assert rows[0] == ["Filename", "Title", "Keywords", "Category", "Releases"]
    assert [row[0] for row in rows[1:]] == images
    sheet = load_workbook(tmp_path / "metadata.xlsx")["Metadata"]
    table = list(sheet.iter_rows(values_only=True))
    assert table[0] == ("File name", "Title", "Description", "Keywords")
    assert [row[0] for row in table[1:]] == images
    assert table[1][1] == "Spring meadow with flowers number 0"
    assert table[1][3] == "meadow, spring, flowers, nature, green"
    # Renames for uniqueness and length are listed, never silent.
    assert "meadow.jpg -> meadow_2.jpg" in report
    assert f"{'x' * 45}.jpg -> {'x' * 26}.jpg" in report


def test_png_and_webp_keep_their_extension(tmp_path: Path) -> None:
    job = make_job(tmp_path, approved=2, qc_failed=0, failed=0, suffix=".png")
    path = run_export([job.id], "zip", tmp_path).path
    assert path.parent == tmp_path and path.suffix == ".zip"
    with zipfile.ZipFile(path) as archive:
        assert [m for m in archive.namelist() if m.endswith(".png")] == [
            "spring_0_0.png",
            "spring_0_1.png",
        ]


def test_a_job_without_approved_images_is_a_clear_error(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from genfactory.cli import app

    job = make_job(tmp_path, approved=0, qc_failed=2, failed=1)
    result = CliRunner().invoke(app, ["export", str(job.id), "--format", "zip"])
    assert result.exit_code == 2
    assert "no approved image" in result.output
    assert not list(tmp_path.rglob("*.zip"))


def test_an_approved_image_whose_file_is_gone_is_listed_not_dropped(tmp_path: Path) -> None:
    job = make_job(tmp_path, approved=2, qc_failed=0, failed=0)
    (tmp_path / "out-spring" / "spring_0_1.jpg").unlink()
    result = run_export([job.id], "zip", tmp_path / "upload.zip")
    with zipfile.ZipFile(result.path) as archive:
        assert [m for m in archive.namelist() if m.endswith(".jpg")] == ["spring_0_0.jpg"]
        report = archive.read("export_report.txt").decode()
    assert any("left out, its file" in line and "spring_0_1.jpg" in line for line in result.changes)
    assert "spring_0_1.jpg is gone" in report


def test_no_approved_file_left_on_disk_is_a_clear_error(tmp_path: Path) -> None:
    job = make_job(tmp_path, approved=1, qc_failed=0, failed=0)
    (tmp_path / "out-spring" / "spring_0_0.jpg").unlink()
    with pytest.raises(UserError, match="no approved file of job .* is on disk"):
        run_export([job.id], "zip", tmp_path / "upload.zip")
    assert not list(tmp_path.glob("*.zip*")) and not list(tmp_path.glob(".upload.zip*"))


def _batches_match_the_listing(tmp_path: Path) -> None:
    from genfactory.statuses import ImageStatus
    from genfactory.storage import repository

    job = make_job(tmp_path, approved=5, qc_failed=2, failed=1)
    for status in (None, ImageStatus.APPROVED):
        listed = repository.list_images(execution_id=job.id, status=status)
        assert list(repository.iter_images(job.id, status=status, batch=2)) == listed


def test_images_are_read_in_batches_in_listing_order(tmp_path: Path) -> None:
    _batches_match_the_listing(tmp_path)


@pytest.mark.postgres
def test_images_are_read_in_batches_on_postgresql(tmp_path: Path, postgres_store: str) -> None:
    _batches_match_the_listing(tmp_path)
