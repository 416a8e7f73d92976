"""The local renderer: every allowed size renders, and a seeded job never repeats a file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from genfactory.config import load_settings
from genfactory.prompting import size_for
from genfactory.providers.base import GenerationRequest
from genfactory.providers.local_image import LocalRenderer
from genfactory.providers.registry import ProviderContext
from genfactory.tasks.generate import _seed

RATIOS = ("1:1", "16:9", "9:16", "4:5", "3:2", "8:1", "1:8")
PROMPTS = (
    "mountain lake at sunset",  # landscape (with water for some seeds)
    "red apple isolated on white background",  # single subject
    "abstract geometric pattern",
    "cup of coffee on a table",  # still life
    "city skyline at night",
)


@pytest.mark.parametrize("long_side", [128, 129, 136, 200, 256, 301, 512, 777, 1024, 2048])
def test_every_allowed_long_side_renders_every_scene(long_side: int) -> None:
    settings = load_settings(
        overrides={"generation.local_long_side": long_side, "generation.local_defect_rate": 0.3},
        environ={},
    )
    renderer = LocalRenderer(ProviderContext(settings=settings))
    seeds = range(8) if long_side <= 256 else range(1)
    for ratio in RATIOS:
        width, height = size_for(ratio, long_side)
        for prompt in PROMPTS:
            for seed in seeds:
                request = GenerationRequest(prompt, ratio, width, height, count=1, seed=seed)
                (image,) = renderer.generate(request).images
                assert image.data.startswith(b"\x89PNG")


def test_a_seeded_job_never_produces_two_identical_files() -> None:
    # The case: job.seed = 7, 2 keywords x 3 slots x 4 images.
    settings = load_settings(overrides={"generation.local_long_side": 128}, environ={})
    renderer = LocalRenderer(ProviderContext(settings=settings))
    digests: dict[str, tuple[int, int]] = {}
    for slot in range(6):
        prompt = ("red fox in the snow", "lemon on a white background")[slot % 2]
        request = GenerationRequest(prompt, "1:1", 128, 128, count=4, seed=_seed(7, slot))
        for index, image in enumerate(renderer.generate(request).images):
            digest = hashlib.sha256(image.data).hexdigest()
            assert digest not in digests, f"slot {slot} image {index} repeats {digests[digest]}"
            digests[digest] = (slot, index)
    seeds = [_seed(7, slot) + index for slot in range(200) for index in range(20)]
    assert len(set(seeds)) == len(seeds)


def test_vocabularies_are_data_files() -> None:
    data = Path(__file__).resolve().parent.parent / "genfactory" / "data" / "local_render.json"
    assert "landscape_words" in data.read_text()
    source = Path(__file__).resolve().parent.parent / "genfactory" / "providers"
    for module in [source / "local_image.py", *(source / "local_render").glob("*.py")]:
        assert len(module.read_text().splitlines()) <= 400, module.name
