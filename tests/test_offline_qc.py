"""The offline QC's model checks (lettering, explicit content), QC prompts and QC warnings."""

from __future__ import annotations

import io
import socket
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw, ImageFont

from genfactory.config import load_settings
from genfactory.errors import ConfigError, InputFileError
from genfactory.providers import local_detect
from genfactory.providers.base import ImageInput, QCRequest, QCVerdict
from genfactory.providers.local_image import render_image
from genfactory.providers.local_qc import LocalQC, start_warnings
from genfactory.providers.openai_answers import verdict_from
from genfactory.providers.openai_chat import OpenAIVisionQC
from genfactory.providers.registry import ProviderContext
from genfactory.tasks.initialize import prepare
from tests.fakes.fixtures import fake_context, fake_services, fake_settings
from tests.fakes.server import FakeServices

__all__ = ["fake_services"]  # the fixture, imported for pytest

SCENES = [
    ("mountain lake at sunrise", "16:9", (768, 432)),
    ("lemon isolated on white background", "1:1", (512, 512)),
    ("abstract geometric pattern", "4:5", (512, 640)),
    ("cup of coffee on a wooden table", "3:2", (768, 512)),
]
LETTERING = ["SUMMER SALE", "HELLO", "OPEN 24H"]


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def qc(**overrides: Any) -> LocalQC:
    values = {"qc.min_width": 64, "qc.min_height": 64, **overrides}
    return LocalQC(ProviderContext(settings=load_settings(overrides=values, environ={})))


def check(provider: LocalQC, data: bytes, ratio: str) -> QCVerdict:
    return provider.check(QCRequest(ImageInput(data, "image/png"), "x", ratio))


def lettered(image: Image.Image, text: str) -> Image.Image:
    """`text` drawn with Pillow's bundled font, up to a sixth of the height, outlined."""
    out = image.copy()
    size = max(24, out.height // 6)
    while ImageFont.load_default(size=size).getlength(text) > out.width * 0.8:
        size -= 2  # the whole text inside the frame
    ImageDraw.Draw(out).text(
        (out.width // 12, out.height // 3),
        text,
        font=ImageFont.load_default(size=size),
        fill=(255, 255, 255),
        stroke_width=max(2, size // 16),
        stroke_fill=(20, 20, 20),
    )
    return out


@pytest.mark.parametrize(("prompt", "ratio", "size"), SCENES)
def test_lettering_is_rejected_naming_the_text_and_the_clean_image_passes(
    prompt: str, ratio: str, size: tuple[int, int]
) -> None:
    provider = qc()
    clean = render_image(prompt, 11, *size, defect_rate=0)
    assert check(provider, png(clean), ratio).passed
    for text in LETTERING:
        verdict = check(provider, png(lettered(clean, text)), ratio)
        assert not verdict.passed
        assert verdict.reason.startswith("visible text: '")
        read = verdict.reason.replace(" ", "").upper()
        assert text.replace(" ", "") in read, verdict.reason


def test_report_mode_passes_and_keeps_the_text_read() -> None:
    image = lettered(render_image("abstract geometric pattern", 3, 640, 640, defect_rate=0), "SALE")
    verdict = check(qc(**{"qc.text_mode": "report"}), png(image), "1:1")
    assert verdict.passed and "visible text (reported): 'SALE'" in verdict.reason
    assert check(qc(**{"qc.text_check": False}), png(image), "1:1").passed


def test_small_or_unsure_text_does_not_count() -> None:
    image = render_image("abstract geometric pattern", 3, 640, 640, defect_rate=0)
    ImageDraw.Draw(image).text((20, 600), "tiny print", font=ImageFont.load_default(size=10))
    assert check(qc(), png(image), "1:1").passed


def test_the_detectors_verdict_is_wired_to_qc(monkeypatch: pytest.MonkeyPatch) -> None:
    # No explicit image can honestly be made here: the detector's own output is injected
    # where its result enters the verdict, and the real detector runs on a clean image.
    image = png(render_image("abstract geometric pattern", 3, 512, 512, defect_rate=0))
    assert local_detect.explicit(local_detect.detect_explicit_parts(image), 0.5) is None
    found = [
        local_detect.Detection("FACE_FEMALE", 0.9),
        local_detect.Detection("FEMALE_BREAST_EXPOSED", 0.71),
    ]
    real_inspect = local_detect.inspect

    def inspect(data: bytes, text: bool, nsfw: bool) -> dict[str, Any]:
        return {**real_inspect(data, text, False), "nsfw": found if nsfw else []}

    monkeypatch.setattr(local_detect, "inspect", inspect)
    verdict = check(qc(), image, "1:1")
    assert not verdict.passed
    assert verdict.reason == "explicit content: female breast exposed (score 0.71 >= 0.5)"
    assert check(qc(**{"qc.nsfw_threshold": 0.8}), image, "1:1").passed
    assert check(qc(**{"qc.nsfw_check": False}), image, "1:1").passed


def test_models_ship_in_the_wheels_and_load_without_a_network(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import nudenet
    import rapidocr_onnxruntime

    models = Path(rapidocr_onnxruntime.__file__).parent / "models"
    assert sorted(p.suffix for p in models.iterdir() if p.suffix == ".onnx") == [".onnx"] * 3
    assert Path(nudenet.__file__).with_name("320n.onnx").stat().st_size > 1_000_000

    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network access attempted: {args}")

    local_detect._ocr.cache_clear()
    local_detect._nudenet.cache_clear()
    monkeypatch.setattr(socket.socket, "connect", no_network)
    image = lettered(render_image("cup of coffee", 1, 512, 512, defect_rate=0), "CAFE")
    found = local_detect.inspect(png(image), True, True)
    assert any("CAFE" in line.text.upper() for line in found["text"])


def test_qc_prompt_file_replaces_the_built_in_rules(
    fake_services: FakeServices, tmp_path: Path
) -> None:
    prompt = tmp_path / "typography_qc.txt"
    prompt.write_text("Check the spelling of every word and report trademarked phrases.\n")
    settings = fake_settings(fake_services, qc={"prompt_file": str(prompt), "rules": "- cats"})
    provider = OpenAIVisionQC(fake_context(fake_services, settings))
    try:
        image = png(render_image("abstract pattern", 1, 256, 256, defect_rate=0))
        assert provider.check(QCRequest(ImageInput(image, "image/png"), "x")).passed
    finally:
        provider.close()
    (sent,) = fake_services.requests("openai")
    system = sent.json["messages"][0]["content"]
    assert system.startswith("Check the spelling of every word")
    assert "famous people" not in system and "- cats" not in system
    schema = sent.json["response_format"]["json_schema"]["schema"]
    assert set(schema["required"]) == {"passed", "reason", "details"}


def test_extra_answer_fields_are_kept_with_the_reason() -> None:
    verdict = verdict_from(
        {"passed": False, "reason": "Misspelled word.", "details": "spelling: 'Summr'", "score": 3}
    )
    assert verdict.reason == "Misspelled word. (spelling: 'Summr'; score: 3)"


def test_qc_rules_with_the_local_qc_is_a_warning_and_a_bad_prompt_file_an_error(
    tmp_path: Path,
) -> None:
    settings = load_settings(overrides={"qc.rules": "- no cats"}, environ={})
    (warning,) = start_warnings(settings)
    assert warning.startswith("qc.rules is ignored") and "providers.qc = openai" in warning
    missing = load_settings(overrides={"qc.prompt_file": str(tmp_path / "nope.txt")}, environ={})
    with pytest.raises(InputFileError, match="does not exist"):
        start_warnings(missing)


INSTRUCTION_TEMPLATE = """You are a professional Midjourney prompt engineer.
Your task: write one prompt for ${keyword}.
Guidelines:
- vivid, commercial
Use these elements to craft your prompt: ${keyword}, light, mood."""


def test_an_instruction_template_stops_a_local_prompt_job_before_it_starts(
    tmp_path: Path,
) -> None:
    template = tmp_path / "mj.txt"
    template.write_text(INSTRUCTION_TEMPLATE)
    keywords = tmp_path / "k.txt"
    keywords.write_text("red fox\n")
    values = {
        "job.keywords_file": str(keywords),
        "prompts.template": str(template),
        "job.output_dir": str(tmp_path / "out"),
        "job.temp_dir": str(tmp_path / "tmp"),
    }
    with pytest.raises(ConfigError, match=r"providers\.prompt = openai") as info:
        prepare(load_settings(overrides=values, environ={}))
    assert "Ollama" in str(info.value) and "direct template" in str(info.value)
    _resolved, slots = prepare(
        load_settings(
            overrides={
                **values,
                "providers.prompt": "openai",
                "openai.base_url": "http://127.0.0.1:11434/v1",  # Ollama: no key needed
            },
            environ={},
        )
    )
    assert len(slots) == 1
    template.write_text("A ${keyword} in the snow. Soft light. Wide shot.")
    _resolved, slots = prepare(load_settings(overrides=values, environ={}))
    assert slots[0]["system_prompt"] == "A red fox in the snow. Soft light. Wide shot."


@pytest.mark.parametrize(
    ("template", "instructs"),
    [
        ("You are a professional Midjourney prompt engineer.", True),
        ("Your task: describe ${keyword}.", True),
        ("${keyword}\nGuidelines:\n- vivid", True),
        ("Use these elements to craft your prompt: ${keyword}", True),
        ("Write one prompt for this subject: ${keyword}", True),
        ("Create a detailed and visually stunning image of a ${keyword}", False),
        ("${keyword}. This is a test for Midjourney.", False),
        ("${keyword}, watercolor, no text, no logos", False),
        ("A portrait of a young woman, you can see her smile", False),
    ],
)
def test_instruction_templates_are_told_from_direct_ones(template: str, instructs: bool) -> None:
    from genfactory.providers.local_prompt import instruction_sentence

    assert (instruction_sentence(template) is not None) == instructs
