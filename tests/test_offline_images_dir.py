"""`run --images DIR` / `job.images_dir`: existing files go through QC, processing, metadata
and approval like generated ones; names keep the stems; the folder is never changed."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from genfactory.config import Settings, load_settings
from genfactory.errors import InputFileError
from genfactory.files import image_name, owned_stem
from genfactory.flows import generate_job
from genfactory.image_folder import keyword_from_stem, plan_folder
from genfactory.providers.local_image import render_image
from genfactory.statuses import ImageStatus
from genfactory.storage import repository


def _save(image: Image.Image, path: Path, fmt: str) -> None:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    path.write_bytes(buffer.getvalue())


def make_folder(folder: Path) -> None:
    """6 files: 4 sellable pictures (PNG, JPEG, WebP), 1 with lettering, 1 text file."""
    folder.mkdir()
    _save(
        render_image("red fox in a forest", 1, 512, 384, defect_rate=0),
        folder / "red_fox.png",
        "PNG",
    )
    _save(
        render_image("lemon isolated on white background", 2, 400, 400, defect_rate=0),
        folder / "lemon-01.jpg",
        "JPEG",
    )
    _save(
        render_image("mountain lake at sunrise", 3, 384, 512, defect_rate=0),
        folder / "mountain_lake.webp",
        "WEBP",
    )
    _save(
        render_image("abstract geometric pattern", 4, 448, 448, defect_rate=0),
        folder / "pattern.png",
        "PNG",
    )
    sale = render_image("beach at sunset", 5, 512, 512, defect_rate=0)
    draw = ImageDraw.Draw(sale)
    draw.text(
        (40, 200),
        "SUMMER SALE",
        font=ImageFont.load_default(size=64),
        fill=(255, 255, 255),
        stroke_width=3,
        stroke_fill=(0, 0, 0),
    )
    _save(sale, folder / "beach_sale.png", "PNG")
    (folder / "notes.txt").write_text("shot list for the spring catalogue\n")


def fingerprint(folder: Path) -> dict[str, tuple[str, float]]:
    return {
        p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime)
        for p in sorted(folder.iterdir())
    }


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_harness")
def _folder_settings(folder: Path, tmp_path: Path) -> Settings:
    overrides = {
        "job.images_dir": str(folder),
        "job.output_dir": str(tmp_path / "out"),
        "job.temp_dir": str(tmp_path / "tmp"),
        "qc.min_width": 64,
        "qc.min_height": 64,
    }
    return load_settings(overrides=overrides, environ={})


def test_images_dir_job_approves_rejects_names_and_leaves_the_folder_alone(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    make_folder(folder)
    before = fingerprint(folder)
    settings = _folder_settings(folder, tmp_path)
    summary = generate_job(settings)

    assert fingerprint(folder) == before
    images = repository.list_images(execution_id=summary["execution_id"])
    by_keyword = {image.keyword: image for image in images}
    assert len(images) == 5  # notes.txt skipped
    approved = {i.keyword for i in images if i.status == ImageStatus.APPROVED}
    assert approved == {"red fox", "lemon", "mountain lake", "pattern"}
    sale = by_keyword["beach sale"]
    assert sale.status == ImageStatus.QC_FAILED
    assert "visible text" in str(sale.qc_reason) and "SUMMER" in str(sale.qc_reason)
    assert Path(str(sale.temp_image_path)).name.startswith("beach_sale")
    outputs = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert outputs == ["lemon-01.png", "mountain_lake.png", "pattern.png", "red_fox.png"]
    fox = by_keyword["red fox"]
    assert (fox.width, fox.height) == (512, 384)
    assert fox.image_metadata and "fox" in fox.image_metadata["title"].lower()


def test_plan_folder_sorts_skips_non_images_and_names_slots_by_stem(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    make_folder(folder)
    plans, skipped = plan_folder(folder)
    assert [p.path.name for p in plans] == [
        "beach_sale.png",
        "lemon-01.jpg",
        "mountain_lake.webp",
        "pattern.png",
        "red_fox.png",
    ]
    assert skipped == ["skipped notes.txt: not an image file"]
    slot = plans[4].as_slot()
    assert slot["variables"]["source_stem"] == "red_fox"  # type: ignore[index]
    assert (slot["width"], slot["height"], slot["aspect_ratio"]) == (512, 384, "4:3")


def test_files_whose_names_clash_in_genfactory_names_get_numbered_ones(tmp_path: Path) -> None:
    folder = tmp_path / "clash"
    folder.mkdir()
    long = "fox_" + "y" * 200
    names = ["a b.png", "a_b.png", "A_B.png", "x.jpg", "x.jpeg", f"{long}1.png", f"{long}2.png"]
    for index, name in enumerate(names):
        image = render_image(f"picture {index}", index, 64, 64, defect_rate=0)
        _save(image, folder / name, "JPEG" if name.endswith(("jpg", "jpeg")) else "PNG")
    plans, _ = plan_folder(folder)
    stems = [str(p.as_slot()["variables"]["source_stem"]) for p in plans]  # type: ignore[index]
    assert len({stem.lower() for stem in stems}) == len(names)  # one temp name per file
    assert {"A_B", "a_b-2", "a_b-3", "x", "x-2"} <= set(stems)  # in name order
    assert all(len(stem) <= 120 for stem in stems)


def test_plan_folder_refuses_a_missing_or_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="does not exist"):
        plan_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFileError, match="holds no image files"):
        plan_folder(tmp_path / "empty")


def test_keyword_from_stem_drops_counters_and_camera_names() -> None:
    assert keyword_from_stem("red_fox-0012") == "red fox"
    assert keyword_from_stem("IMG_2041") == "image"
    assert keyword_from_stem("GoldenRetrieverPuppy") == "golden retriever puppy"


def test_cli_images_option_errors_are_one_sentence_and_exit_2(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from genfactory.cli import app

    out = tmp_path / "out"
    template = tmp_path / "mj.txt"
    template.write_text("You are a Midjourney prompt engineer. Guidelines: ${keyword}, vivid.")
    keywords = Path(__file__).resolve().parent.parent / "examples" / "keywords.txt"
    cases = [
        (["--images", str(tmp_path / "nope")], "does not exist"),
        (["--keywords", str(keywords), "--set", f"prompts.template={template}"], "direct template"),
    ]
    for args, fragment in cases:
        result = CliRunner().invoke(app, ["run", *args, "--output-dir", str(out)])
        assert result.exit_code == 2, result.output
        assert result.output.strip().startswith("error:") and fragment in result.output
        assert "Traceback" not in result.output
    assert not out.exists() and repository.list_executions() == []


def test_a_file_with_a_very_long_name_is_approved_under_a_shortened_one(tmp_path: Path) -> None:
    folder = tmp_path / "long"
    folder.mkdir()
    stem = "red_fox_in_a_forest_" + "x" * 180  # file systems allow 255 bytes
    _save(
        render_image("red fox in a forest", 1, 256, 192, defect_rate=0),
        folder / f"{stem}.png",
        "PNG",
    )
    settings = _folder_settings(folder, tmp_path)
    executions = repository.list_executions(limit=1)
    ours = executions[0].id + 1 if executions else 1
    name = owned_stem(image_name("", 0, 0, stem), ours)
    (tmp_path / "tmp").mkdir()
    cut_short = tmp_path / "tmp" / f".{name}.0badf00d.tmp"  # a killed attempt's, of this file
    cut_short.write_bytes(b"half an image")
    summary = generate_job(settings)

    assert summary["execution_id"] == ours and not cut_short.exists()
    (image,) = repository.list_images(execution_id=summary["execution_id"])
    assert image.status == ImageStatus.APPROVED, image.error
    (output,) = (tmp_path / "out").iterdir()
    assert output.name.startswith("red_fox_in_a_forest_xxx") and len(output.name) <= 130
    assert not [p for p in (tmp_path / "tmp").rglob("*") if p.is_file()]
