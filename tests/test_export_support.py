"""Test data for the export tests: a job in the store with real image files (no tests here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

from genfactory.config import load_settings
from genfactory.statuses import ImageStatus
from genfactory.storage import repository

FAKE_KEYS = {
    "OPENAI_API_KEY": "fake-openai-key-for-export-tests-0123",
    "PIAPI_API_KEY": "fake-piapi-export-0123456789abcdef",
    "REMOVE_BG_API_KEY": "fake-removebg-export-0123456789abcdef",
    "RUNWARE_API_KEY": "fake-runware-export-0123456789abcdef",
}


def picture(
    path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (96, 64), noisy: bool = False
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, colour)
    if noisy:
        # Noise is the worst case for JPEG: the largest thumbnails a real photo could make.
        image = Image.merge("RGB", [Image.effect_noise(size, 80)] * 3)
    # A stripe, so thumbnails are not flat colour.
    stripe = (255 - colour[0], 255 - colour[1], 255 - colour[2])
    image.paste(stripe, (0, 0, size[0] // 3, size[1]))
    image.save(path, format="JPEG" if path.suffix == ".jpg" else "PNG")
    return path


def make_job(
    tmp_path: Path,
    *,
    label: str = "spring",
    approved: int = 3,
    qc_failed: int = 1,
    failed: int = 1,
    metadata: dict[str, Any] | None = None,
    names: list[str] | None = None,
    usage: dict[str, Any] | None = None,
    suffix: str = ".jpg",
    noisy: bool = False,
) -> repository.ExecutionRecord:
    """A finished job: `approved` files in out/, rejected and failed ones in tmp/."""
    out, temp = tmp_path / f"out-{label}", tmp_path / f"tmp-{label}"
    settings = load_settings(overrides={"job.label": label}, environ={})
    execution = repository.create_execution(
        label=label,
        settings_snapshot=settings.model_dump(mode="json"),
        output_dir=str(out),
        temp_dir=str(temp),
    )
    rows = []
    total = approved + qc_failed + failed
    for index in range(total):
        name = (names or [])[index] if names and index < len(names) else f"{label}_0_{index}"
        folder = out if index < approved else temp
        colour = ((index * 40) % 256, 120, 200)
        path = picture(folder / f"{name}{suffix}", colour, (400, 300) if noisy else (96, 64), noisy)
        rows.append(
            {
                "image_index": index,
                "generation_prompt": f"a {label} meadow with flowers, photo {index}",
                "temp_image_path": str(path),
                "keyword": label,
            }
        )
    ids = repository.add_images(execution.id, 0, rows)
    for index, image_id in enumerate(ids):
        if index < approved:
            meta = metadata or {
                "title": f"Spring meadow with flowers number {index}",
                "description": "A green meadow full of spring flowers under a blue sky.",
                "keywords": ["meadow", "spring", "flowers", "nature", "green"],
            }
            for new in (ImageStatus.QC_PASSED, ImageStatus.PROCESSED):
                repository.transition_image(image_id, repository.get_image(image_id).status, new)
            repository.transition_image(
                image_id,
                ImageStatus.PROCESSED,
                ImageStatus.APPROVED,
                final_image_path=rows[index]["temp_image_path"],
                temp_image_path=None,
                image_metadata=meta,
                media_type="image/jpeg",
            )
        elif index < approved + qc_failed:
            repository.transition_image(
                image_id,
                ImageStatus.GENERATED,
                ImageStatus.QC_FAILED,
                qc_reason="the image is blurred",
            )
        else:
            repository.transition_image(
                image_id,
                ImageStatus.GENERATED,
                ImageStatus.FAILED,
                error="processing failed: disk full",
            )
    repository.add_usage(
        execution.id,
        usage
        if usage is not None
        else {"local": {"calls": total}, "openai": {"calls": 2, "cost": 0.04}},
    )
    return repository.finish_execution(execution.id)
