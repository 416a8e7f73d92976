"""A real offline job exported through the `export_job` flow: files and the report artifact."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import pytest
from openpyxl import load_workbook

from genfactory.config import load_settings
from genfactory.engine.artifacts import artifact_key
from genfactory.flows import export_job, generate_job
from genfactory.statuses import ImageStatus
from genfactory.storage import repository

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_harness")]

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_a_generated_job_exports_in_every_format(tmp_path: Path) -> None:
    settings = load_settings(
        overrides={
            "job.keywords_file": str(EXAMPLES / "keywords.txt"),
            "job.output_dir": str(tmp_path / "out"),
            "job.temp_dir": str(tmp_path / "tmp"),
            "job.seed": 7,
            "job.count": 2,
            "job.variations": 2,
            "processing.convert_format": "jpg",
            "generation.local_long_side": 256,
            "qc.min_width": 64,
            "qc.min_height": 64,
        },
        environ={},
    )
    summary = generate_job(settings)
    execution_id = summary["execution_id"]
    approved = repository.list_images(execution_id=execution_id, status=ImageStatus.APPROVED)
    assert approved

    workbook = export_job([execution_id], "xlsx", str(tmp_path / "job.xlsx"))
    images = load_workbook(workbook["path"])["Images"]
    titles = [row[3] for row in images.iter_rows(min_row=2, values_only=True)]
    assert len(titles) == len(repository.list_images(execution_id=execution_id))
    assert str(approved[0].image_metadata["title"]) in titles  # type: ignore[index]

    archive = export_job([execution_id], "zip", str(tmp_path / "upload.zip"))
    with zipfile.ZipFile(archive["path"]) as opened:
        members = opened.namelist()
        rows = list(csv.reader(io.StringIO(opened.read("adobe_stock.csv").decode())))
    assert len([m for m in members if m.endswith(".jpg")]) == len(approved)
    for _name, title, keywords, _category, _releases in rows[1:]:
        assert 0 < len(title) <= 70 and "," not in title
        assert 0 < len(keywords.split(",")) <= 49

    report = export_job([execution_id], "html", str(tmp_path / "report.html"))
    assert Path(report["path"]).read_text("utf-8").count("<img ") == len(
        repository.list_images(execution_id=execution_id)
    )
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        artifacts = {a.key: a for a in client.read_artifacts()}
    key = artifact_key(summary["label"], execution_id, "report")
    assert key in artifacts
    assert Path(report["path"]).resolve().as_uri() in str(artifacts[key].data)
