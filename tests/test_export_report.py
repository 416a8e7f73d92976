"""The HTML contact sheet: self-contained, rejected images apart, rendered by Chromium."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from genfactory.exports import run_export
from genfactory.statuses import ImageStatus
from genfactory.storage import repository
from tests.test_export_support import FAKE_KEYS, make_job

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: What Chromium needs to run headless as root in a container, offline.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Appended to a copy of the report: the page records how many of its pictures loaded.
PROBE = (
    "<script>window.addEventListener('load',()=>{const i=[...document.images];"
    "document.body.dataset.images=i.length;"
    "document.body.dataset.broken=i.filter(x=>!(x.complete&&x.naturalWidth>0)).length;});"
    "</script></body>"
)


def _need_chromium() -> str:
    if CHROMIUM is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("Chromium is required on CI", pytrace=False)
        pytest.skip("Chromium not installed (apt-get install chromium)")
    return CHROMIUM


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / f"chromium-{len(list(tmp_path.glob('chromium-*')))}"
    profile.mkdir()
    return subprocess.run(
        [_need_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _job(tmp_path: Path) -> repository.ExecutionRecord:
    job = make_job(tmp_path, approved=3, qc_failed=2, failed=1)
    # A rejected image whose file is gone: a tile says so, no broken picture.
    gone = repository.list_images(execution_id=job.id, status=ImageStatus.QC_FAILED)[1]
    Path(str(gone.temp_image_path)).unlink()
    return job


def test_report_is_self_contained_and_shows_rejected_images_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in FAKE_KEYS.items():
        monkeypatch.setenv(name, value)
    job = _job(tmp_path)
    path = run_export([job.id], "html", tmp_path / "report.html").path
    page = path.read_text("utf-8")
    # Offline: every picture is embedded, nothing is fetched.
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) == 5
    assert all(s.startswith("data:image/jpeg;base64,") for s in sources)
    assert not re.search(r'(src|href)="(https?:|file:|//)', page)
    assert "file missing" in page
    sections = re.findall(r"<h2>([^<]+)</h2>", page)
    assert sections == [
        "Usage and cost",
        "Settings",
        "Approved (3)",
        "Rejected by quality check (2)",
        "Failed (1)",
    ]
    approved, rejected = page.split("Approved (3)")[1].split("Rejected by quality check (2)")
    assert approved.count('class="badge approved"') == 3 and "qc_failed" not in approved
    assert rejected.count("the image is blurred") == 2
    assert "processing failed: disk full" in page.split("Failed (1)")[1]
    assert "Spring meadow with flowers number 0" in approved
    assert "meadow, spring, flowers, nature, green" in approved
    assert "openai" in page and "0.04" in page
    assert "prompt=local, image=local" in page
    for value in FAKE_KEYS.values():
        assert value not in page


def test_chromium_renders_the_report_with_every_picture(tmp_path: Path) -> None:
    _need_chromium()
    job = _job(tmp_path)
    path = run_export([job.id], "html", tmp_path / "report.html").path
    shot = tmp_path / "shot.png"
    done = _chromium(tmp_path, "--window-size=1280,1600", f"--screenshot={shot}", path.as_uri())
    assert shot.is_file(), done.stderr
    with Image.open(shot) as image:
        assert image.size == (1280, 1600)
        # Not a blank page: the thumbnails and text give many colours.
        assert len(image.convert("RGB").getcolors(1 << 20) or []) > 50
    probe = tmp_path / "probe.html"
    probe.write_text(path.read_text("utf-8").replace("</body>", PROBE), "utf-8")
    dom = _chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", probe.as_uri())
    body = re.search(r"<body[^>]*>", dom.stdout)
    assert body is not None, dom.stderr
    assert 'data-images="5"' in body.group(0)
    assert 'data-broken="0"' in body.group(0)


def test_several_jobs_one_report_each(tmp_path: Path) -> None:
    first = make_job(tmp_path, label="spring")
    second = make_job(tmp_path, label="summer")
    result = run_export([first.id, second.id], "html", tmp_path / "reports")
    assert [p.name for p in result.files] == [
        f"job_{first.id}_spring_report.html",
        f"job_{second.id}_summer_report.html",
    ]
    assert all(p.parent == tmp_path / "reports" for p in result.files)
