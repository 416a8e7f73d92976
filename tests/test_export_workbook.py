"""The Excel export read back with openpyxl (an independent reader) and LibreOffice."""

from __future__ import annotations

import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from openpyxl import load_workbook

from genfactory.exports import run_export
from genfactory.exports.workbook import IMAGE_COLUMNS, THUMBNAIL_BUDGET
from genfactory.statuses import ImageStatus
from genfactory.storage import repository
from tests.test_export_support import FAKE_KEYS, make_job

SOFFICE = shutil.which("soffice") or shutil.which("libreoffice")


def _all_cells(path: Path) -> list[object]:
    book = load_workbook(path)
    return [cell.value for sheet in book for row in sheet.iter_rows() for cell in row]


def test_job_workbook_sheets_headers_values_and_layout(tmp_path: Path) -> None:
    job = make_job(tmp_path, approved=3, qc_failed=1, failed=1)
    result = run_export([job.id], "xlsx", tmp_path / "job.xlsx")
    assert result.path == tmp_path / "job.xlsx"
    book = load_workbook(result.path)
    assert book.sheetnames == ["Job Summary", "Images"]

    summary = book["Job Summary"]
    fields = {row[0]: row[1] for row in summary.iter_rows(values_only=True) if row[0]}
    assert fields["Job"] == job.id and fields["Label"] == "spring"
    assert fields["Status"] == "completed"
    assert (fields["Approved"], fields["QC failed"], fields["Failed"]) == (3, 1, 1)
    rows = list(summary.iter_rows(values_only=True))
    assert ("Service", "Usage", "Cost") in rows
    assert ("openai", "calls 2", "0.04") in rows
    assert ("Setting", "Value", None) in rows
    assert fields["Job › Label"] == "spring"
    assert fields["Processing › JPG quality"] == 85
    assert summary.freeze_panes == "A2"

    images = book["Images"]
    header = [c.value for c in images[1]]
    assert header == IMAGE_COLUMNS
    assert images.freeze_panes == "A2"
    assert images.auto_filter.ref == images.dimensions
    values = [
        dict(zip(header, row, strict=True)) for row in images.iter_rows(min_row=2, values_only=True)
    ]
    assert [v["Status"] for v in values] == ["approved"] * 3 + ["qc_failed", "failed"]
    first = values[0]
    assert first["File name"] == "spring_0_0.jpg"
    assert first["Title"] == "Spring meadow with flowers number 0"
    assert first["Keywords"] == "meadow, spring, flowers, nature, green"
    assert first["Prompt"] == "a spring meadow with flowers, photo 0"
    assert values[3]["QC reason"] == "the image is blurred"
    assert values[4]["QC reason"] == "processing failed: disk full"
    link = images.cell(row=2, column=IMAGE_COLUMNS.index("Final path") + 1).hyperlink
    assert link is not None and link.target == (tmp_path / "out-spring" / "spring_0_0.jpg").as_uri()
    # Long text wraps; widths are fitted, not the default.
    title_cell = images.cell(row=2, column=IMAGE_COLUMNS.index("Title") + 1)
    assert title_cell.alignment.wrap_text
    assert images.column_dimensions["D"].width > 30
    # One thumbnail per image whose file exists.
    assert len(images._images) == 5


def test_no_secret_in_any_cell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in FAKE_KEYS.items():
        monkeypatch.setenv(name, value)
    job = make_job(tmp_path, approved=2, qc_failed=1, failed=0)
    # A careless snapshot and a provider error that quote a key: exports still show none.
    image = repository.list_images(execution_id=job.id, status=ImageStatus.QC_FAILED)[0]
    repository.update_image(image.id, qc_reason=f"401 for key {FAKE_KEYS['OPENAI_API_KEY']}")
    engine_snapshot = dict(job.settings_snapshot)
    engine_snapshot["openai"] = {
        **engine_snapshot["openai"],
        "api_key": FAKE_KEYS["OPENAI_API_KEY"],
    }
    with_key = repository.create_execution(
        label="careless",
        settings_snapshot=engine_snapshot,
        output_dir=str(tmp_path),
        temp_dir=str(tmp_path),
    )
    for execution_id in (job.id, with_key.id):
        path = run_export([execution_id], "xlsx", tmp_path / f"{execution_id}.xlsx").path
        text = "\n".join(str(v) for v in _all_cells(path))
        for value in FAKE_KEYS.values():
            assert value not in text
        assert "api_key" not in text.lower() and "Api key" not in text
    assert "[REDACTED]" in "\n".join(str(v) for v in _all_cells(tmp_path / f"{job.id}.xlsx"))


def test_several_jobs_one_workbook_each_in_a_zip_with_a_summary(tmp_path: Path) -> None:
    first = make_job(tmp_path, label="spring")
    second = make_job(tmp_path, label="summer")
    result = run_export([first.id, second.id], "xlsx", tmp_path / "exports")
    assert result.path.parent == tmp_path / "exports" and result.path.suffix == ".zip"
    with zipfile.ZipFile(result.path) as archive:
        names = archive.namelist()
        archive.extractall(tmp_path / "unzipped")
    assert names == ["summary.xlsx", f"job_{first.id}_spring.xlsx", f"job_{second.id}_summer.xlsx"]
    jobs = load_workbook(tmp_path / "unzipped" / "summary.xlsx")["Jobs"]
    assert [row[:3] for row in jobs.iter_rows(min_row=2, values_only=True)] == [
        (first.id, "spring", "completed"),
        (second.id, "summer", "completed"),
    ]


def test_a_1000_image_workbook_with_thumbnails_stays_under_budget(tmp_path: Path) -> None:
    job = make_job(tmp_path, approved=1000, qc_failed=0, failed=0, noisy=True)
    path = run_export([job.id], "xlsx", tmp_path / "big.xlsx").path
    with zipfile.ZipFile(path) as book:
        media = [name for name in book.namelist() if name.startswith("xl/media/")]
    assert len(media) == 1000
    assert path.stat().st_size < THUMBNAIL_BUDGET


def test_libreoffice_converts_the_workbook_to_pdf(tmp_path: Path) -> None:
    if SOFFICE is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("LibreOffice (soffice) is required on CI", pytrace=False)
        pytest.skip("LibreOffice not installed (apt-get install libreoffice)")
    job = make_job(tmp_path)
    path = run_export([job.id], "xlsx", tmp_path / "job.xlsx").path
    profile = tmp_path / "lo-profile"
    done = subprocess.run(
        [
            SOFFICE,
            f"-env:UserInstallation={profile.as_uri()}",
            "--headless",
            "--convert-to",
            "pdf",
            "--outdir",
            str(tmp_path / "pdf"),
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    pdf = tmp_path / "pdf" / "job.pdf"
    assert pdf.is_file() and pdf.read_bytes().startswith(b"%PDF")
    assert "Error" not in done.stderr
