"""`providers.background = "none"` with `processing.remove_bg` on: the process step hands the
image to the "none" provider like to any other, and the delivered image is the same as with
removal off (issue 14: `KeepBackground` is reached, not short-circuited)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from genfactory.config import load_settings
from genfactory.flows import generate_job
from genfactory.statuses import ImageStatus
from genfactory.storage import repository

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_harness")]


def _pixels(tmp_path: Path, name: str, remove_bg: bool) -> list[Any]:
    keywords = tmp_path / "keywords.txt"
    keywords.write_text("red apple\n")
    settings = load_settings(
        overrides={
            "job.keywords_file": str(keywords),
            "job.count": 1,
            "job.seed": 7,
            "job.label": name,
            "job.output_dir": str(tmp_path / name),
            "job.temp_dir": str(tmp_path / f"{name}-tmp"),
            "qc.run_quality_check": False,
            "providers.background": "none",
            "processing.remove_bg": remove_bg,
        },
        environ={},
    )
    summary = generate_job(settings)
    images = repository.list_images(execution_id=summary["execution_id"])
    assert images and all(i.status == ImageStatus.APPROVED for i in images)
    return [np.asarray(Image.open(str(i.final_image_path))) for i in images]


def test_background_none_keeps_the_image_as_it_is(tmp_path: Path) -> None:
    kept = _pixels(tmp_path, "kept", remove_bg=True)
    plain = _pixels(tmp_path, "plain", remove_bg=False)
    assert len(kept) == len(plain)
    for a, b in zip(kept, plain, strict=True):
        assert a.shape == b.shape and (a == b).all()
