"""Processing inside a real job: near-duplicates rejected and named, hostile downloads failing
one image with a clear reason (never the job), metadata embedded in the delivered files."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

from genfactory.config import load_settings
from genfactory.flows import generate_job
from genfactory.providers import registry
from genfactory.providers.base import GeneratedImage, GenerationRequest, GenerationResult
from genfactory.statuses import ImageStatus, JobStatus
from genfactory.storage import repository

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_harness")]


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _scene(shift: int, brightness: int, shape: str) -> Image.Image:
    image = Image.new("RGB", (256, 256), (40 + brightness, 90 + brightness, 160 + brightness))
    draw = ImageDraw.Draw(image)
    if shape == "sun":
        draw.ellipse((60 + shift, 50, 180 + shift, 170), fill=(250, 210, 60))
        draw.rectangle((0, 190, 256, 256), fill=(30, 120, 40))
    else:
        draw.polygon([(20, 230), (128, 20), (236, 230)], fill=(200, 30, 30))
        draw.line((0, 0, 256, 256), fill=(255, 255, 255), width=9)
    return image


class ScriptedImages:
    """An image provider whose answers depend on the prompt, as a real service's might."""

    name = "local"

    def __init__(self, ctx: registry.ProviderContext) -> None:
        self.ctx = ctx

    def generate(self, request: GenerationRequest) -> GenerationResult:
        if "grid" in request.prompt:
            # Four near-variants, as a Midjourney grid gives.
            blobs = [
                _png(_scene(shift, light, "sun"))
                for shift, light in ((0, 0), (2, 3), (-2, -3), (1, 5))
            ]
        elif "distinct" in request.prompt:
            blobs = [_png(_scene(0, 0, "mountain"))]
        else:  # "hostile": what broken CDNs and proxies hand back
            good = _png(_scene(0, 0, "mountain"))
            blobs = [
                good,
                good[: len(good) // 2],
                b"<html><body><h1>502 Bad Gateway</h1></body></html>",
                _png(Image.new("RGB", (1, 1), "red")),
            ]
        return GenerationResult(
            images=[GeneratedImage(data=b, seed=i) for i, b in enumerate(blobs)],
            final_prompt=request.prompt,
        )


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.PROVIDERS, ("image", "local"), f"{__name__}:ScriptedImages")


def settings_for(tmp_path: Path, keywords: list[str], **extra: Any) -> Any:
    path = tmp_path / "keywords.txt"
    path.write_text("\n".join(keywords) + "\n")
    values: dict[str, Any] = {
        "job.keywords_file": str(path),
        "job.count": len(keywords),
        "job.output_dir": str(tmp_path / "out"),
        "job.temp_dir": str(tmp_path / "tmp"),
        "job.max_concurrency": 1,  # slot order decides which image counts as "earlier"
        "qc.min_width": 64,
        "qc.min_height": 64,
        "generation.aspect_ratios": "1:1",
    }
    values.update(extra)
    return load_settings(overrides=values, environ={})


@pytest.mark.usefixtures("scripted")
def test_near_duplicates_are_rejected_and_named(tmp_path: Path) -> None:
    settings = settings_for(
        tmp_path,
        ["grid of suns", "distinct mountain"],
        **{"processing.near_duplicate_threshold": 10, "qc.run_quality_check": False},
    )
    summary = generate_job(settings)
    images = {
        (i.slot, i.image_index): i
        for i in repository.list_images(execution_id=summary["execution_id"])
    }
    first = images[(0, 0)]
    assert first.status == ImageStatus.APPROVED
    for index in (1, 2, 3):
        duplicate = images[(0, index)]
        assert duplicate.status == ImageStatus.QC_FAILED
        assert duplicate.qc_reason == f"near-duplicate of {first.id}"
        # Rejected: no output file, the original stays in temp for review.
        assert duplicate.final_image_path is None
        assert Path(str(duplicate.temp_image_path)).is_file()
    assert images[(1, 0)].status == ImageStatus.APPROVED
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        Path(str(images[k].final_image_path)).name for k in ((0, 0), (1, 0))
    )


@pytest.mark.usefixtures("scripted")
def test_hostile_downloads_fail_one_image_each_never_the_job(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, ["hostile"], **{"qc.run_quality_check": False})
    summary = generate_job(settings)
    execution = repository.get_execution(summary["execution_id"])
    images = repository.list_images(execution_id=execution.id)
    assert execution.status == JobStatus.COMPLETED
    assert [i.status for i in images] == [
        ImageStatus.APPROVED,
        ImageStatus.FAILED,
        ImageStatus.FAILED,
        ImageStatus.FAILED,
    ]
    truncated, html, tiny = (str(i.error).lower() for i in images[1:])
    assert "truncated" in truncated or "corrupt" in truncated
    assert "html" in html
    assert "1x1" in tiny
    assert all(i.error_code == "bad_image" for i in images[1:])
    # No half-written output: exactly the one approved file, no temp names left behind.
    assert [p.name for p in (tmp_path / "out").iterdir()] == [
        Path(str(images[0].final_image_path)).name
    ]
    # The failed downloads stay listed in temp, for a look or a retry.
    for image in images[1:]:
        assert Path(str(image.temp_image_path)).is_file()


@pytest.mark.usefixtures("scripted")
def test_hostile_downloads_are_caught_by_qc_first(tmp_path: Path) -> None:
    summary = generate_job(settings_for(tmp_path, ["hostile"]))
    images = repository.list_images(execution_id=summary["execution_id"])
    assert [i.status for i in images] == [
        ImageStatus.APPROVED,
        ImageStatus.QC_FAILED,
        ImageStatus.QC_FAILED,
        ImageStatus.QC_FAILED,
    ]
    assert all(i.qc_reason for i in images[1:])


def test_delivered_files_carry_the_stored_metadata(tmp_path: Path) -> None:
    exiftool = shutil.which("exiftool")
    if exiftool is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("exiftool is required on CI")
        pytest.skip("exiftool not installed (apt-get install libimage-exiftool-perl)")
    settings = settings_for(
        tmp_path,
        ["red fox in a snowy forest"],
        **{
            "processing.convert_format": "jpg",
            "generation.local_defect_rate": 0,
            "generation.local_long_side": 256,
        },
    )
    summary = generate_job(settings)
    image = repository.list_images(
        execution_id=summary["execution_id"], status=ImageStatus.APPROVED
    )[0]
    tags = json.loads(
        subprocess.run(
            [exiftool, "-json", "-G1", "-a", str(image.final_image_path)],
            check=True,
            capture_output=True,
            timeout=60,
        ).stdout
    )[0]
    metadata = image.image_metadata or {}
    assert tags["IPTC:ObjectName"] == metadata["title"]
    assert tags["XMP-dc:Title"] == metadata["title"]
    assert tags["IPTC:Caption-Abstract"] == metadata["description"]
    assert tags["XMP-dc:Subject"] == metadata["keywords"]
    assert len(metadata["keywords"]) >= 25
    assert "trainedAlgorithmicMedia" in tags["XMP-iptcExt:DigitalSourceType"]
