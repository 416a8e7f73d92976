"""Processing inside a real job: near-duplicates rejected and named, hostile downloads failing
one image with a clear reason (never the job), metadata embedded in the delivered files."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

from genfactory import services
from genfactory.config import load_settings
from genfactory.flows import generate_job
from genfactory.providers import registry
from genfactory.providers.base import GenerationRequest, GenerationResult, ImageResult
from genfactory.providers.local_image import LocalRenderer
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


def _animated_gif() -> bytes:
    frames = [Image.new("RGB", (128, 128), (i * 80, 40, 90)) for i in range(3)]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=100)
    return out.getvalue()


def _cmyk_jpeg() -> bytes:
    out = io.BytesIO()
    _scene(0, 0, "sun").convert("CMYK").save(out, "JPEG", quality=90)
    return out.getvalue()


class ScriptedImages:
    """An image provider whose answers depend on the prompt, as a real service's might."""

    name = "local"
    # It stands in for the local renderer: the same class facts.
    repeatable_create = LocalRenderer.repeatable_create
    fixed_long_side = LocalRenderer.fixed_long_side

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
                _png(Image.new("RGB", (1200, 1000), "white")),  # over the 1 MP limit set below
                _animated_gif(),
                _cmyk_jpeg(),  # legitimate: converted, not rejected
            ]
        return GenerationResult(
            images=[ImageResult(data=b, seed=i) for i, b in enumerate(blobs)],
            final_prompt=request.prompt,
        )


@pytest.fixture
def scripted() -> Iterator[None]:
    with services.overridden("local", roles={"image": f"{__name__}:ScriptedImages"}):
        yield


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
    settings = settings_for(
        tmp_path,
        ["hostile"],
        **{
            "qc.run_quality_check": False,
            "processing.max_image_pixels": 1_000_000,
            "processing.convert_format": "jpg",
        },
    )
    summary = generate_job(settings)
    execution = repository.get_execution(summary["execution_id"])
    images = repository.list_images(execution_id=execution.id)
    assert execution.status == JobStatus.COMPLETED
    ok, failed, cmyk = images[0], images[1:6], images[6]
    assert ok.status == cmyk.status == ImageStatus.APPROVED
    assert [i.status for i in failed] == [ImageStatus.FAILED] * 5
    truncated, html, tiny, bomb, animated = (str(i.error).lower() for i in failed)
    assert "truncated" in truncated or "corrupt" in truncated
    assert "html" in html
    assert "1x1" in tiny
    assert "decompression bomb" in bomb and "1200x1000" in bomb
    assert "animated gif (3 frames)" in animated
    assert all(i.error_code == "bad_image" for i in failed)
    with Image.open(str(cmyk.final_image_path)) as delivered:
        assert delivered.mode == "RGB" and delivered.size == (256, 256)
    # No half-written output: exactly the approved files, no temp names left behind.
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        Path(str(i.final_image_path)).name for i in (ok, cmyk)
    )
    # The failed downloads stay listed in temp, for a look or a retry.
    for image in failed:
        assert Path(str(image.temp_image_path)).is_file()


@pytest.mark.usefixtures("scripted")
def test_hostile_downloads_never_reach_qc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from genfactory.providers.local_qc import LocalQC

    checked: list[int] = []
    original = LocalQC.check
    monkeypatch.setattr(
        LocalQC, "check", lambda self, request: checked.append(1) or original(self, request)
    )
    summary = generate_job(settings_for(tmp_path, ["hostile"]))
    images = repository.list_images(execution_id=summary["execution_id"])
    assert images[0].status == ImageStatus.APPROVED
    for image in images[1:4]:  # truncated, HTML, 1x1: decoded at download, failed there
        assert image.status == ImageStatus.FAILED and image.error_code == "bad_image"
        assert str(image.error).startswith("download: ") and image.final_image_path is None
    # Only what decoded at download was sent to QC.
    decoded = [i for i in images if not str(i.error or "").startswith("download: ")]
    assert len(checked) == len(decoded) < len(images)


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
