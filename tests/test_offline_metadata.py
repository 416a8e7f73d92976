"""Offline metadata a seller can use: titles from the keyword (never a template's
instructions), keywords that never contradict the subject or the image."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageDraw, ImageFont

from genfactory.config import Settings, load_settings
from genfactory.prompting import fill_template, size_for
from genfactory.providers.base import ImageInput, ImageMetadata, MetadataRequest
from genfactory.providers.local_image import render_png
from genfactory.providers.local_metadata import GENERIC, LocalMetadata
from genfactory.providers.registry import ProviderContext

INSTRUCTION_WORDS = {
    "create", "visually", "test", "midjourney", "generate", "guidelines", "output", "prompt",
    "you", "your", "task", "elements", "craft", "professional", "engineer",
}  # fmt: skip

# The predecessor tool's template styles: direct Midjourney-style prompts with boilerplate.
PREDECESSOR_TEMPLATES = [
    "Create a detailed and visually stunning image of a ${keyword}",
    "${keyword}. This is a test for Midjourney.",
    "Generate a high quality stock photo of ${keyword}, no text, no watermark --ar 16:9 --v 6",
    "${{Subject}} in ${{Style}} style, ${{Mood}} mood, --stylize 250",
]
CSV_ROW = {"Subject": "majestic lion", "Style": "watercolor", "Mood": "calm"}


def describe(keyword: str, prompt: str, data: bytes) -> ImageMetadata:
    return LocalMetadata(ProviderContext(settings=Settings())).describe(
        MetadataRequest(ImageInput(data, "image/png"), prompt, keyword)
    )


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("template", PREDECESSOR_TEMPLATES)
@pytest.mark.parametrize("keyword", ["majestic lion on the savanna", "cute puppy"])
def test_predecessor_templates_give_titles_naming_the_keyword(template: str, keyword: str) -> None:
    variables = {"keyword": keyword, **CSV_ROW} if "{{" in template else {"keyword": keyword}
    if "{{" in template:
        keyword = ", ".join(CSV_ROW.values())
    prompt = fill_template(template, variables, where="test")
    meta = describe(keyword, prompt, render_png(prompt, 3, 512, 512, defect_rate=0))
    subject = keyword.split(",")[0]
    assert meta.title.lower().startswith(subject.lower())
    assert len(meta.title) <= 70 and "," not in meta.title
    words = set(meta.title.lower().split()) | set(meta.keywords)
    assert not words & INSTRUCTION_WORDS, words & INSTRUCTION_WORDS
    assert not set(meta.description.lower().rstrip(".").split()) & INSTRUCTION_WORDS


# (keyword, prompt, words that must not appear, words that must appear)
SUBJECT_CASES = [
    ("red fox", "red fox in a snowy forest", {"pet", "domestic", "cute"}, {"fox", "wildlife"}),
    ("lion", "lion, photograph", {"pet", "domestic"}, {"lion", "big cat"}),
    ("wolf", "wolf howling", {"pet", "domestic", "puppy"}, {"wolf", "canine"}),
    ("puppy", "puppy on a sofa", {"wild", "wildlife", "predator"}, {"dog", "pet"}),
    ("kitten", "kitten playing", {"wildlife", "wild"}, {"cat", "pet"}),
    ("lemon", "lemon on a plate", {"vegetable", "meat"}, {"fruit", "citrus", "lemon"}),
    ("owl", "owl on a branch", {"pet", "domestic", "mammal"}, {"bird", "owl"}),
    ("cow", "cow in a pasture", {"wild", "pet"}, {"farm", "cow"}),
]


@pytest.mark.parametrize(("keyword", "prompt", "never", "always"), SUBJECT_CASES)
def test_no_keyword_contradicts_the_subject(
    keyword: str, prompt: str, never: set[str], always: set[str]
) -> None:
    meta = describe(keyword, prompt, render_png(prompt, 1, 512, 512, defect_rate=0))
    assert not never & set(meta.keywords), never & set(meta.keywords)
    assert always <= set(meta.keywords)
    assert 25 <= len(meta.keywords) <= 49 and len(set(meta.keywords)) == len(meta.keywords)
    filler = [k for k in meta.keywords if k in GENERIC]
    assert len(filler) <= len(meta.keywords) / 3
    if filler:  # filler comes last
        assert meta.keywords[-len(filler) :] == filler


def test_no_keyword_contradicts_the_image() -> None:
    # A flat, square illustration: neither "panorama" nor "photograph", even if the prompt
    # says photo; a wide one may be a panorama.
    flat = Image.new("RGB", (600, 600), (255, 255, 255))
    ImageDraw.Draw(flat).ellipse((150, 150, 450, 450), fill=(245, 215, 50))
    meta = describe("lemon", "lemon, stock photograph, panorama", png(flat))
    assert not {"panorama", "photograph", "photo", "horizontal", "vertical"} & set(meta.keywords)
    assert {"square", "yellow", "white background", "isolated"} <= set(meta.keywords)
    assert "Photo" not in meta.title
    wide = describe("lemon", "lemon", png(flat.resize((1200, 400))))
    assert {"panorama", "horizontal"} <= set(wide.keywords) and "square" not in wide.keywords


def test_titles_differ_where_the_images_differ() -> None:
    titles = set()
    for ratio in ("1:1", "16:9", "9:16"):
        for seed in range(4):
            width, height = size_for(ratio, 384)
            prompt = "lemon, watercolor illustration"
            titles.add(
                describe(
                    "lemon", prompt, render_png(prompt, seed, width, height, defect_rate=0)
                ).title
            )
    assert len(titles) >= 6, titles
    assert all(t.startswith("Lemon") for t in titles)


def test_a_typography_job_gets_its_lettering_as_keywords() -> None:
    image = Image.new("RGB", (640, 400), (250, 240, 220))
    font = ImageFont.load_default(size=72)
    ImageDraw.Draw(image).text((60, 150), "SUMMER SALE", font=font, fill=(200, 40, 40))
    settings = load_settings(overrides={"qc.text_mode": "report"}, environ={})
    meta = LocalMetadata(ProviderContext(settings=settings)).describe(
        MetadataRequest(ImageInput(png(image), "image/png"), "summer sale poster", "summer sale")
    )
    assert {"text", "lettering", "typography", "summer", "sale"} <= set(meta.keywords)
    # Without report mode (text fails QC there) no OCR runs for metadata.
    plain = describe("summer sale", "summer sale poster", png(image))
    assert "typography" not in plain.keywords
