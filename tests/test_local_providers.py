"""The offline providers, judged as a user would: right sizes, distinct pictures, a QC that
catches the renderer's defects and nothing else, a background remover that keeps the subject,
and stock metadata within the limits."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from genfactory.config import Settings, apply_overrides
from genfactory.errors import BadRequest, UnreadableImage
from genfactory.prompting import fill_template, load_template, size_for
from genfactory.providers.base import (
    BackgroundRemover,
    GenerationRequest,
    ImageInput,
    ImageProvider,
    MetadataProvider,
    MetadataRequest,
    PromptProvider,
    PromptRequest,
    QCProvider,
    QCRequest,
    QCVerdict,
)
from genfactory.providers.local_background import (
    NOTE_NO_SUBJECT,
    NOTE_NOT_UNIFORM,
    LocalBackgroundRemover,
)
from genfactory.providers.local_image import LocalRenderer, render_plan
from genfactory.providers.local_metadata import LocalMetadata
from genfactory.providers.local_prompt import TemplatePromptProvider
from genfactory.providers.local_qc import LocalQC
from genfactory.providers.registry import ProviderContext, build_provider

PROMPTS = [
    "red apple, professional stock photograph, clean composition",
    "misty mountain lake at sunrise",
    "abstract geometric pattern in teal and gold",
    "cute cat isolated on white background",
    "coffee cup on a wooden table",
    "night sky over the desert",
]


def make_ctx(**overrides: Any) -> ProviderContext:
    return ProviderContext(settings=apply_overrides(Settings(), overrides))


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def generate(
    prompt: str,
    aspect_ratio: str = "1:1",
    long_side: int = 256,
    *,
    count: int = 1,
    seed: int | None = 1,
    ctx: ProviderContext | None = None,
) -> list[bytes]:
    width, height = size_for(aspect_ratio, long_side)
    renderer = LocalRenderer(ctx or make_ctx())
    result = renderer.generate(
        GenerationRequest(
            prompt=prompt,
            aspect_ratio=aspect_ratio,
            width=width,
            height=height,
            count=count,
            seed=seed,
        )
    )
    return [image.data for image in result.images]


def photo_like(seed: int, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """Multi-scale noise: the texture statistics of a photograph, without a photograph."""
    rng = np.random.default_rng(seed)
    total = np.zeros((size[1], size[0], 3), np.float32)
    for scale in (2, 8, 32, 128):
        small = rng.normal(0, 1, (max(2, size[1] // scale), max(2, size[0] // scale), 3))
        small = (small - small.min()) / (small.max() - small.min()) * 255
        layer = Image.fromarray(small.astype(np.uint8)).resize(size, Image.Resampling.BICUBIC)
        total += np.asarray(layer, np.float32) / 4
    return Image.fromarray(total.clip(0, 255).astype(np.uint8))


# ---------------------------------------------------------------------------------------------
# Registry and protocols


def test_registry_builds_every_local_provider_with_its_protocol() -> None:
    ctx = make_ctx()
    expected = {
        "prompt": PromptProvider,
        "image": ImageProvider,
        "qc": QCProvider,
        "background": BackgroundRemover,
        "metadata": MetadataProvider,
    }
    for role, protocol in expected.items():
        provider: Any = build_provider(role, ctx)
        assert provider.name == "local"
        assert isinstance(provider, protocol)


# ---------------------------------------------------------------------------------------------
# Prompt provider


def test_local_prompt_from_default_template_is_one_clean_line() -> None:
    template = load_template(None, "local")
    filled = fill_template(template, {"keyword": "red fox in snow"}, where="line 1")
    prompt = TemplatePromptProvider(make_ctx()).make_prompt(
        PromptRequest(filled, "red fox in snow", {"keyword": "red fox in snow"})
    )
    assert prompt.startswith("red fox in snow, ")
    assert "\n" not in prompt and "  " not in prompt and "${" not in prompt


def test_local_prompt_drops_comments_and_collapses_whitespace() -> None:
    text = "# written for the autumn batch\n  A  tabby cat \n\n on a   sofa\n- warm light\n"
    prompt = TemplatePromptProvider(make_ctx()).make_prompt(PromptRequest(text, "tabby cat"))
    assert prompt == "A tabby cat, on a sofa, warm light"


def test_local_prompt_keeps_every_sentence_of_a_direct_template() -> None:
    text = "A ${keyword} at dawn. Soft mist over the water. Wide shot."
    filled = fill_template(text, {"keyword": "lighthouse"}, where="x")
    prompt = TemplatePromptProvider(make_ctx()).make_prompt(PromptRequest(filled, "lighthouse"))
    assert prompt == "A lighthouse at dawn. Soft mist over the water. Wide shot."


def test_local_prompt_always_contains_the_csv_values() -> None:
    variables = {"Subject": "owl", "Colour": "silver", "keyword": "owl, silver"}
    prompt = TemplatePromptProvider(make_ctx()).make_prompt(
        PromptRequest("a bird on a branch at dusk", "owl, silver", variables)
    )
    assert prompt.startswith("owl, silver")
    assert "a bird on a branch at dusk" in prompt


def test_local_prompt_refuses_an_empty_request() -> None:
    with pytest.raises(BadRequest):
        TemplatePromptProvider(make_ctx()).make_prompt(PromptRequest("# only a comment\n", ""))


# ---------------------------------------------------------------------------------------------
# Renderer


@pytest.mark.parametrize(
    ("ratio", "size"),
    [("1:1", (512, 512)), ("16:9", (512, 288)), ("9:16", (288, 512)), ("4:5", (408, 512))],
)
def test_renders_exact_sizes_per_aspect_ratio(ratio: str, size: tuple[int, int]) -> None:
    images = generate("lighthouse on a cliff", ratio, 512, count=2)
    assert len(images) == 2
    for data in images:
        image = decode(data)
        assert image.format == "PNG"
        assert image.size == size


def test_render_result_fields() -> None:
    width, height = size_for("16:9", 256)
    result = LocalRenderer(make_ctx()).generate(
        GenerationRequest("  tulip   field  ", "16:9", width, height, count=3, seed=41)
    )
    assert [image.seed for image in result.images] == [41, 42, 43]
    assert all(image.media_type == "image/png" for image in result.images)
    assert result.final_prompt == "tulip field"
    assert result.task_id and len(result.task_id) <= 16
    assert result.cost == 0.0


def test_same_prompt_and_seed_give_identical_bytes() -> None:
    assert generate("golden retriever puppy", seed=5) == generate("golden retriever puppy", seed=5)
    # Without a seed the prompt fixes one: still reproducible.
    assert generate("golden retriever puppy", seed=None) == generate(
        "golden retriever puppy", seed=None
    )


def test_a_recorded_seed_reproduces_its_image() -> None:
    grid = generate("paper boat on a pond", count=3, seed=100)
    for index, data in enumerate(grid):
        assert generate("paper boat on a pond", seed=100 + index) == [data]


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(decode(data).convert("RGB").resize((64, 64)), dtype=np.float32)


def test_different_prompts_give_clearly_different_pictures() -> None:
    renders = {p: _pixels(generate(p, seed=3)[0]) for p in PROMPTS}
    for i, a in enumerate(PROMPTS):
        for b in PROMPTS[i + 1 :]:
            diff = float(np.abs(renders[a] - renders[b]).mean())
            assert diff > 15, f"{a!r} and {b!r} look alike (mean abs diff {diff:.1f})"


def test_variations_share_a_prompt_but_differ_in_composition() -> None:
    images = [_pixels(data) for data in generate("sailing boat at sea", count=4, seed=9)]
    for i in range(len(images)):
        for j in range(i + 1, len(images)):
            assert float(np.abs(images[i] - images[j]).mean()) > 5


def test_pictures_are_not_trivial() -> None:
    for prompt in PROMPTS:
        gray = np.asarray(decode(generate(prompt, seed=2)[0]).convert("L"))
        # Many distinct tones: painted scenes, not a flat fill or two-colour blocks.
        assert len(np.unique(gray)) > 20, prompt


def test_about_a_third_of_renders_have_a_plain_background() -> None:
    plans = [
        render_plan(f"keyword {i}", seed, defect_rate=0) for i in range(20) for seed in (1, 2, 3)
    ]
    share = sum(plan.plain_background for plan in plans) / len(plans)
    assert 0.2 <= share <= 0.47


def test_plain_background_renders_have_a_uniform_border_and_a_centred_subject() -> None:
    seeds = [s for s in range(40) if render_plan("blue vase", s, defect_rate=0).plain_background]
    assert seeds
    for seed in seeds[:3]:
        arr = np.asarray(decode(generate("blue vase", seed=seed)[0]).convert("RGB")).astype(int)
        border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
        assert np.abs(border - border[0]).max() <= 2
        centre = arr[96:160, 96:160]
        assert np.abs(centre - border[0]).max(axis=-1).mean() > 20, "no subject in the centre"


@pytest.mark.parametrize("word", ["isolated", "white background", "sticker", "clipart"])
def test_plain_background_words_force_a_plain_background(word: str) -> None:
    assert all(
        render_plan(f"red kite {word}", seed, defect_rate=0).plain_background for seed in range(12)
    )


def test_defect_share_follows_the_setting() -> None:
    plans = [
        render_plan(f"item {i}", seed, defect_rate=0.15) for i in range(20) for seed in (1, 2, 3)
    ]
    share = sum(plan.defect is not None for plan in plans) / len(plans)
    assert 0.05 <= share <= 0.3
    assert {plan.defect for plan in plans} == {None, "blur", "washout"}
    assert not any(render_plan(f"item {i}", 1, defect_rate=0).defect for i in range(60))
    assert all(render_plan(f"item {i}", 1, defect_rate=1).defect for i in range(60))


def test_renderer_reads_the_defect_rate_setting() -> None:
    images = generate("pebbles", count=6, ctx=make_ctx(**{"generation.local_defect_rate": 1}))
    qc = LocalQC(make_ctx())
    assert not any(
        qc.check(QCRequest(ImageInput(d, "image/png"), "pebbles")).passed for d in images
    )


def test_renderer_refuses_bad_requests() -> None:
    renderer = LocalRenderer(make_ctx())
    with pytest.raises(BadRequest):
        renderer.generate(GenerationRequest("   ", "1:1", 256, 256))
    with pytest.raises(BadRequest, match="does not match"):
        renderer.generate(GenerationRequest("boat", "16:9", 256, 256))
    with pytest.raises(BadRequest, match="does not match"):
        renderer.generate(GenerationRequest("boat", "16:9", 144, 256))
    with pytest.raises(BadRequest):
        renderer.generate(GenerationRequest("boat", "1:1", 256, 256, count=0))


def test_renderer_returns_the_task_id_with_the_images_and_reports_usage() -> None:
    ctx = make_ctx()
    seen: list[str] = []
    result = LocalRenderer(ctx).generate(
        GenerationRequest("kite", "1:1", 128, 128, count=2, on_task_created=seen.append)
    )
    # Rendered within the call: nothing to poll after an interruption, so no early report
    # (the engine stores the id with the images, one write fewer per slot).
    assert seen == [] and len(result.task_id or "") == 12
    assert [i.source for i in result.images] == [f"local:{result.task_id}/{i}" for i in (0, 1)]
    assert ctx.usage.snapshot()["local"]["images"] == 2


# ---------------------------------------------------------------------------------------------
# Quality check


def check(data: bytes, aspect_ratio: str | None = None, **overrides: Any) -> QCVerdict:
    return LocalQC(make_ctx(**overrides)).check(
        QCRequest(ImageInput(data, "image/png"), "a prompt", aspect_ratio)
    )


def test_qc_passes_every_good_render_and_rejects_every_defective_one() -> None:
    ctx = make_ctx(**{"generation.local_defect_rate": 0.35})
    qc = LocalQC(ctx)
    outcomes = {"good": 0, "blur": 0, "washout": 0}
    for i, prompt in enumerate(PROMPTS):
        ratio = ("1:1", "16:9", "9:16", "4:5")[i % 4]
        images = generate(prompt, ratio, 512, count=8, seed=10 * i, ctx=ctx)
        for index, data in enumerate(images):
            plan = render_plan(prompt, 10 * i + index, defect_rate=0.35)
            verdict = qc.check(QCRequest(ImageInput(data, "image/png"), prompt, ratio))
            if plan.defect is None:
                assert verdict.passed, f"{prompt!r} seed {10 * i + index}: {verdict.reason}"
                outcomes["good"] += 1
            else:
                assert not verdict.passed, f"{prompt!r} seed {10 * i + index} ({plan.defect})"
                expected = "blurred" if plan.defect == "blur" else "blank or nearly uniform"
                assert expected in verdict.reason
                outcomes[plan.defect] += 1
    assert all(outcomes.values()), outcomes  # the sample covered every case


def test_qc_passes_a_subject_on_white() -> None:
    image = Image.new("RGB", (512, 512), "white")
    ImageDraw.Draw(image).ellipse((200, 200, 312, 312), fill=(200, 40, 40))
    assert check(png(image), "1:1").passed


@pytest.mark.parametrize("seed", [1, 2])
def test_qc_passes_photo_like_noise(seed: int) -> None:
    verdict = check(jpeg(photo_like(seed)), "4:3")
    assert verdict.passed, verdict.reason
    uniform = Image.fromarray(np.random.default_rng(seed).integers(0, 256, (480, 640, 3), np.uint8))
    assert check(png(uniform)).passed


def test_qc_rejects_a_blurred_photo_with_the_numbers() -> None:
    blurred = photo_like(3).filter(ImageFilter.GaussianBlur(6))
    verdict = check(jpeg(blurred))
    assert not verdict.passed
    assert verdict.reason.startswith("image is blurred (edge sharpness ")
    assert "< 5" in verdict.reason


def test_qc_rejects_a_blank_image() -> None:
    verdict = check(png(Image.new("RGB", (512, 512), (240, 240, 240))), "1:1")
    assert not verdict.passed
    assert verdict.reason == "image is blank or nearly uniform (std-dev 0.0 < 6)"
    faint = np.full((512, 512), 200, np.uint8) + np.random.default_rng(0).integers(0, 4, (512, 512))
    assert "blank" in check(png(Image.fromarray(faint.astype(np.uint8)))).reason
    transparent = Image.new("RGBA", (512, 512), (0, 0, 0, 0))
    assert "blank" in check(png(transparent)).reason


def test_qc_rejects_a_too_small_image() -> None:
    verdict = check(png(photo_like(4, (200, 150))))
    assert not verdict.passed
    assert verdict.reason == "image is too small (200x150; at least 256x256 required)"
    assert check(
        png(photo_like(4, (200, 150))), None, **{"qc.min_width": 100, "qc.min_height": 100}
    ).passed


def test_qc_checks_the_size_of_a_large_jpeg_not_of_its_preview() -> None:
    data = jpeg(photo_like(5, (2048, 1152)))
    assert check(data, "16:9", **{"qc.min_width": 2000, "qc.min_height": 1100}).passed
    verdict = check(data, "16:9", **{"qc.min_width": 3000})
    assert "2048x1152" in verdict.reason


def test_qc_rejects_the_wrong_aspect_ratio() -> None:
    data = png(photo_like(6, (512, 512)))
    verdict = check(data, "16:9")
    assert not verdict.passed
    assert verdict.reason.startswith(
        "aspect ratio 1.000 (512x512) does not match the requested 16:9"
    )
    assert check(data, "1:1").passed
    assert check(png(photo_like(6, (816, 1024))), "4:5").passed  # rounded to multiples of 8


@pytest.mark.parametrize(
    "data", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40], ids=str
)
def test_qc_rejects_undecodable_bytes(data: bytes) -> None:
    # Decoded by processing: the one error for bytes that are not an image, as everywhere.
    with pytest.raises(UnreadableImage) as info:
        check(data)
    assert info.value.code == "bad_image" and str(info.value)


def test_qc_rejects_a_truncated_png() -> None:
    data = png(photo_like(7))
    with pytest.raises(UnreadableImage, match="truncated or corrupt PNG"):
        check(data[: len(data) // 2])


# ---------------------------------------------------------------------------------------------
# Background removal


def remove(image: Image.Image) -> tuple[np.ndarray, str | None]:
    result = LocalBackgroundRemover(make_ctx()).remove_background(
        ImageInput(png(image), "image/png")
    )
    out = decode(result.data)
    assert out.mode == "RGBA" and out.size == image.size
    return np.asarray(out), result.note


def test_background_of_a_plain_render_becomes_transparent() -> None:
    seed = next(
        s for s in range(40) if render_plan("green pear", s, defect_rate=0).plain_background
    )
    rendered = decode(generate("green pear", seed=seed, long_side=512)[0]).convert("RGB")
    arr, note = remove(rendered)
    assert note is None
    alpha = arr[..., 3]
    border = np.concatenate([alpha[0], alpha[-1], alpha[:, 0], alpha[:, -1]])
    assert (border == 0).all()
    # The subject - whatever differs clearly from the background - stays opaque.
    pixels = np.asarray(rendered).astype(int)
    subject = np.abs(pixels - pixels[0, 0]).max(axis=-1) > 60
    assert subject[192:320, 192:320].mean() > 0.3, "the subject is centred"
    # Its outline may be partly transparent (anti-aliased edges); 3 px inside it is opaque.
    mask = Image.fromarray((subject * 255).astype(np.uint8)).filter(ImageFilter.MinFilter(7))
    inner = np.asarray(mask) == 255
    assert inner.any() and (alpha[inner] == 255).all()
    assert 0.2 < (alpha == 0).mean() < 0.95
    assert ((alpha > 0) & (alpha < 255)).any(), "the outline is feathered"


@pytest.mark.parametrize("scale", [1, 4])
def test_background_removal_keeps_a_white_hole_inside_the_subject(scale: int) -> None:
    image = Image.new("RGB", (600 * scale, 400 * scale), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((150 * scale, 100 * scale, 450 * scale, 300 * scale), fill=(30, 60, 150))
    draw.rectangle((250 * scale, 170 * scale, 350 * scale, 230 * scale), fill="white")
    arr, note = remove(image)
    alpha = arr[..., 3]
    assert note is None
    assert alpha[5, 5] == 0 and alpha[-5, -5] == 0
    assert alpha[200 * scale, 300 * scale] == 255, "the white hole is part of the subject"
    assert alpha[120 * scale, 160 * scale] == 255
    assert tuple(arr[120 * scale, 160 * scale, :3]) == (30, 60, 150)


def test_background_removal_unmixes_anti_aliased_edges() -> None:
    big = Image.new("RGB", (1600, 1600), "white")
    ImageDraw.Draw(big).ellipse((400, 400, 1200, 1200), fill=(20, 40, 160))
    image = big.resize((400, 400), Image.Resampling.LANCZOS)  # soft, mixed edge pixels
    arr, _ = remove(image)
    edge = (arr[..., 3] > 40) & (arr[..., 3] < 215)
    assert edge.any()
    # Partly transparent edge pixels carry the subject's colour, not a whitish mix.
    assert arr[edge][:, 2].mean() > 120 and arr[edge][:, 0].mean() < 90


def test_background_removal_leaves_busy_images_alone() -> None:
    image = photo_like(8, (300, 200))
    arr, note = remove(image)
    assert note == NOTE_NOT_UNIFORM
    assert (arr[..., 3] == 255).all()
    assert np.array_equal(arr[..., :3], np.asarray(image))
    _, note = remove(Image.new("RGB", (300, 200), "white"))
    assert note == NOTE_NO_SUBJECT


def test_background_removal_refuses_garbage() -> None:
    with pytest.raises(UnreadableImage, match="not an image"):
        LocalBackgroundRemover(make_ctx()).remove_background(ImageInput(b"junk", "image/png"))


def test_background_removal_of_a_2048_image() -> None:
    image = Image.new("RGB", (2048, 2048), (250, 250, 250))
    ImageDraw.Draw(image).ellipse((500, 400, 1500, 1700), fill=(150, 30, 30))
    remover = LocalBackgroundRemover(make_ctx())
    result = remover.remove_background(ImageInput(png(image), "image/png"))
    assert result.note is None
    with Image.open(io.BytesIO(result.data)) as cutout:
        assert cutout.size == (2048, 2048)
        assert cutout.getpixel((10, 10))[3] == 0 and cutout.getpixel((1000, 1000))[3] == 255


# ---------------------------------------------------------------------------------------------
# Metadata


def describe(prompt: str, keyword: str, ctx: ProviderContext | None = None) -> Any:
    data = generate(prompt, seed=1)[0]
    return LocalMetadata(ctx or make_ctx()).describe(
        MetadataRequest(ImageInput(data, "image/png"), prompt, keyword)
    )


METADATA_CASES = [
    (
        "red apple, professional stock photograph, soft natural light, no text, no logos",
        "red apple",
    ),
    (
        "A breathtaking panoramic view of a misty mountain lake at sunrise, with pine trees "
        "reflected in the still water, golden light breaking through low clouds, a small wooden "
        "canoe drifting near the shore, shot on a full-frame camera with a wide-angle lens",
        "mountain lake",
    ),
    ("owl, silver, watercolor illustration of an owl on a branch", "owl, silver"),
    ("x", "x"),
    ("cute cat isolated on white background --ar 1:1 --v 6.1", "cute cat"),
]


@pytest.mark.parametrize(("prompt", "keyword"), METADATA_CASES)
def test_metadata_respects_the_stock_limits(prompt: str, keyword: str) -> None:
    meta = describe(prompt, keyword)
    assert meta.title and len(meta.title) <= 70 and "," not in meta.title
    for word in meta.title.split():
        assert word[0].isupper() or word in {
            "a",
            "an",
            "the",
            "of",
            "on",
            "in",
            "at",
            "with",
            "and",
        }
    assert meta.description and len(meta.description) <= 200
    assert meta.description.endswith(".")
    assert 25 <= len(meta.keywords) <= 49
    assert len(set(meta.keywords)) == len(meta.keywords)
    assert all(k == k.lower() and k.strip() == k and k for k in meta.keywords)
    assert "--ar" not in meta.description and "6.1" not in " ".join(meta.keywords)


def test_metadata_puts_the_subject_first() -> None:
    meta = describe(*METADATA_CASES[0])
    assert meta.keywords[:3] == ["red apple", "red", "apple"]
    assert meta.title.startswith("Red Apple")
    assert describe(*METADATA_CASES[2]).keywords[:2] == ["owl", "silver"]
    assert describe(*METADATA_CASES[1]).keywords[0] == "mountain lake"


def test_metadata_never_names_a_trademark() -> None:
    meta = describe("Nike running shoes on a wooden floor, product photography", "Nike sneakers")
    text = " ".join([meta.title, meta.description, *meta.keywords]).lower()
    assert "nike" not in text
    assert "running" in meta.keywords and "sneakers" in meta.keywords
    brand = describe("Apple iPhone on a desk next to a coffee cup", "smartphone")
    assert not {"apple", "iphone"} & set(brand.keywords)
    assert "apple" not in brand.title.lower()
    # The fruit is not the brand.
    assert "apple" in describe("green apple on a plate", "green apple").keywords


def test_metadata_skips_what_the_prompt_negates() -> None:
    meta = describe(*METADATA_CASES[0])
    assert not {"text", "logos", "no"} & set(meta.keywords)
    assert "no text" not in meta.description.lower()


def test_metadata_is_deterministic_and_honours_the_keyword_limits() -> None:
    assert describe(*METADATA_CASES[1]) == describe(*METADATA_CASES[1])
    ctx = make_ctx(**{"metadata.min_keywords": 49, "metadata.max_keywords": 49})
    assert len(describe("x", "x", ctx).keywords) == 49
    ctx = make_ctx(**{"metadata.min_keywords": 5, "metadata.max_keywords": 10})
    assert len(describe(*METADATA_CASES[1], ctx=ctx).keywords) == 10


def test_metadata_works_without_a_readable_image() -> None:
    meta = LocalMetadata(make_ctx()).describe(
        MetadataRequest(ImageInput(b"junk", "image/png"), "blue butterfly", "butterfly")
    )
    assert meta.keywords[0] == "butterfly" and len(meta.keywords) >= 25
