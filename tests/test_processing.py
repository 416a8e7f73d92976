"""The pure processing functions, checked on pixels. Every image is generated here."""

from __future__ import annotations

import io
import itertools
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageFilter

from genfactory.config import ProcessingSection
from genfactory.errors import ImageRejected
from genfactory.processing import (
    MIN_SIDE,
    encode,
    enhance,
    find_near_duplicate,
    flatten,
    hash_distance,
    open_image,
    perceptual_hash,
    png_compress_level,
    process_image,
    sendable_as_is,
    trim_transparent,
    upscale,
)

MAX = 50_000_000
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def scene(width: int = 256, height: int = 192, seed: int = 0) -> Image.Image:
    """A photo-like RGB image: colour gradients, a few shapes, a little texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    r = 40 + 170 * x / width
    g = 60 + 120 * y / height
    b = 110 + 80 * np.sin(x / width * 3 + y / height * 2)
    arr = np.stack([r, g, b], axis=-1)
    for _ in range(6):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        radius = rng.uniform(0.08, 0.25) * min(width, height)
        colour = rng.uniform(0, 255, 3)
        mask = (x - cx) ** 2 + (y - cy) ** 2 < radius**2
        arr[mask] = 0.3 * arr[mask] + 0.7 * colour
    arr += rng.normal(0, 2, arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def to_bytes(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def chroma(image: Image.Image) -> float:
    arr = np.asarray(image.convert("RGB"), dtype=np.float64)
    return float((arr.max(axis=-1) - arr.min(axis=-1)).mean())


def edge_energy(image: Image.Image) -> float:
    grey = np.asarray(image.convert("L"), dtype=np.float64)
    return float(np.abs(np.diff(grey, axis=0)).mean() + np.abs(np.diff(grey, axis=1)).mean())


def cutout() -> Image.Image:
    """200x150, transparent except an opaque red block (30,20)-(130,100) and one faint pixel."""
    image = Image.new("RGBA", (200, 150), (0, 0, 0, 0))
    image.paste((200, 30, 30, 255), (30, 20, 130, 100))
    image.putpixel((150, 120), (10, 200, 10, 1))
    return image


# ---------------------------------------------------------------------------------------------
# trim, flatten, enhance, upscale


def test_trim_crops_exactly_to_pixels_with_alpha() -> None:
    trimmed = trim_transparent(cutout())
    assert trimmed.size == (121, 101)  # x 30..150, y 20..120 inclusive
    assert trimmed.getpixel((0, 0)) == (200, 30, 30, 255)
    assert trimmed.getpixel((120, 100)) == (10, 200, 10, 1)
    assert trimmed.getpixel((120, 0))[3] == 0


def test_trim_is_a_no_op_without_transparency_and_refuses_empty_images() -> None:
    opaque = scene()
    assert trim_transparent(opaque).size == opaque.size
    solid = Image.new("RGBA", (64, 64), (1, 2, 3, 255))
    assert trim_transparent(solid).size == (64, 64)
    with pytest.raises(ImageRejected, match="fully transparent"):
        trim_transparent(Image.new("RGBA", (64, 64), (255, 255, 255, 0)))


@pytest.mark.parametrize(("background", "colour"), [("white", 255), ("black", 0)])
def test_flatten_puts_the_background_behind_transparency(background: str, colour: int) -> None:
    image = cutout()
    image.paste((0, 0, 255, 128), (150, 0, 200, 10))  # half-transparent blue
    flat = flatten(image, background)  # type: ignore[arg-type]
    assert flat.mode == "RGB"
    assert flat.getpixel((5, 5)) == (colour, colour, colour)
    assert flat.getpixel((50, 50)) == (200, 30, 30)
    r, _, b = flat.getpixel((160, 5))
    assert abs(r - colour * 127 / 255) <= 1 and abs(b - (255 * 128 + colour * 127) / 255) <= 1


@pytest.mark.parametrize("background", ["white", "black"])
def test_jpeg_output_flattens_onto_the_configured_background(background: str) -> None:
    settings = ProcessingSection(jpg_background=background, jpg_quality=95)  # type: ignore[arg-type]
    out = decode(encode(cutout(), "jpg", settings))
    assert out.format == "JPEG" and out.mode == "RGB"
    expected = 255 if background == "white" else 0
    assert all(abs(v - expected) <= 3 for v in out.getpixel((5, 140)))


def test_saturation_raises_chroma_and_one_changes_nothing() -> None:
    image = scene()
    assert np.array_equal(np.asarray(enhance(image, 0, 1.0)), np.asarray(image))
    assert chroma(enhance(image, 0, 1.6)) > chroma(image) * 1.3
    assert chroma(enhance(image, 0, 0.5)) < chroma(image) * 0.7
    assert chroma(enhance(image, 0, 0.0)) < 1.0  # saturation 0 = greyscale


def test_sharpening_raises_edge_energy_with_the_level() -> None:
    soft = scene().filter(ImageFilter.GaussianBlur(1))
    energies = [edge_energy(enhance(soft, level, 1.0)) for level in (0, 1, 2, 5, 10)]
    assert all(a < b for a, b in itertools.pairwise(energies))
    assert energies[3] > energies[0] * 1.1 and energies[4] > energies[0] * 1.4
    assert np.array_equal(np.asarray(enhance(soft, 0, 1.0)), np.asarray(soft))


def test_enhance_keeps_the_alpha_channel_untouched() -> None:
    image = cutout()
    out = enhance(image, 10, 2.0)
    assert out.mode == "RGBA" and out.size == image.size
    assert np.array_equal(np.asarray(out.getchannel("A")), np.asarray(image.getchannel("A")))


def test_upscale_reaches_the_megapixels_keeping_the_aspect_ratio() -> None:
    image = Image.new("RGB", (1344, 768), (10, 20, 30))
    out = upscale(image, 4.0)
    width, height = out.size
    assert width * height >= 4_000_000
    assert width * height < 4_000_000 + width + height + 1  # not more than needed
    assert abs(width - height * 1344 / 768) <= 1
    assert upscale(image, 0).size == image.size  # 0 = off
    assert upscale(image, 1.0).size == image.size  # already large enough


def test_process_image_runs_the_stages_in_order() -> None:
    settings = ProcessingSection(
        trim_transparent_background=True, image_enhancement=True, min_megapixels=0.1
    )
    image = cutout()
    prepared = process_image(image, settings, stage="prepare")
    assert prepared.size == (121, 101)
    finished = process_image(prepared, settings, stage="finish")
    assert finished.width * finished.height >= 100_000
    assert process_image(image, settings, stage="all").size == finished.size
    assert process_image(image, ProcessingSection(), stage="all").size == image.size
    with pytest.raises(ValueError, match="stage"):
        process_image(image, settings, stage="later")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# encode


def test_jpeg_size_grows_with_quality() -> None:
    image = scene(512, 384)
    sizes = [len(encode(image, "jpg", ProcessingSection(jpg_quality=q))) for q in (20, 50, 90)]
    assert sizes[0] < sizes[1] < sizes[2]


def test_jpeg_is_progressive_and_keeps_dimensions() -> None:
    out = decode(encode(scene(300, 200), "jpg", ProcessingSection(jpg_quality=90)))
    assert out.size == (300, 200) and out.info.get("progressive") == 1


def test_png_quality_maps_to_compression_and_stays_lossless() -> None:
    assert [png_compress_level(q) for q in (100, 50, 1)] == [1, 5, 9]
    image = cutout()
    fast = encode(image, "png", ProcessingSection(png_quality=100))
    small = encode(image, "png", ProcessingSection(png_quality=1))
    assert len(small) <= len(fast)
    for data in (fast, small):
        assert np.array_equal(np.asarray(decode(data)), np.asarray(image))


def test_webp_keeps_alpha() -> None:
    out = decode(encode(cutout(), "webp", ProcessingSection(webp_quality=90)))
    assert out.format == "WEBP" and out.mode == "RGBA" and out.size == (200, 150)
    assert out.getpixel((5, 5))[3] == 0 and out.getpixel((50, 50))[3] == 255


@pytest.mark.parametrize("fmt", ["png", "jpg", "webp"])
def test_icc_profile_survives_decode_process_and_encode(fmt: str) -> None:
    source = to_bytes(scene(), "PNG", icc_profile=SRGB)
    image = open_image(source, max_pixels=MAX)
    settings = ProcessingSection(image_enhancement=True, min_megapixels=0.1)
    out = decode(encode(process_image(image, settings), fmt, settings))  # type: ignore[arg-type]
    assert out.info.get("icc_profile") == SRGB


def test_jpeg_output_converts_another_rgb_profile_to_srgb() -> None:
    # The sRGB profile renamed: not "sRGB" by name, so JPEG output must convert and re-tag.
    renamed = SRGB.replace("sRGB".encode("utf-16-be"), "Wide".encode("utf-16-be"))
    assert renamed != SRGB
    image = open_image(to_bytes(scene(), "PNG", icc_profile=renamed), max_pixels=MAX)
    assert image.info["icc_profile"] == renamed
    jpeg = decode(encode(image, "jpg", ProcessingSection(jpg_quality=95)))
    embedded = ImageCms.ImageCmsProfile(io.BytesIO(jpeg.info["icc_profile"]))
    assert ImageCms.getProfileDescription(embedded).strip() == "sRGB built-in"
    # The renamed profile is sRGB underneath, so the conversion leaves colours in place.
    diff = np.abs(np.asarray(jpeg, dtype=int) - np.asarray(image, dtype=int))
    assert diff.mean() < 3
    png = decode(encode(image, "png", ProcessingSection()))
    assert png.info["icc_profile"] == renamed  # lossless formats keep the original profile


# ---------------------------------------------------------------------------------------------
# open_image: orientation, colour modes


def test_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (80, 40), (220, 20, 20))
    image.paste((20, 20, 220), (40, 0, 80, 40))  # left half red, right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90° clockwise
    out = open_image(to_bytes(image, "JPEG", quality=95, exif=exif), max_pixels=MAX)
    assert out.size == (40, 80)
    top, bottom = out.getpixel((20, 10)), out.getpixel((20, 70))
    assert top[0] > 180 and top[2] < 60  # red on top
    assert bottom[2] > 180 and bottom[0] < 60  # blue below
    assert "exif" not in out.info


def test_cmyk_jpeg_becomes_correct_rgb() -> None:
    cmyk = Image.new("CMYK", (64, 64), (0, 255, 255, 0))  # pure red in CMYK
    cmyk.paste((255, 0, 0, 0), (32, 0, 64, 64))  # cyan
    out = open_image(to_bytes(cmyk, "JPEG", quality=95), max_pixels=MAX)
    assert out.mode == "RGB"
    red, cyan = out.getpixel((10, 10)), out.getpixel((50, 10))
    assert red[0] > 240 and red[1] < 15 and red[2] < 15
    assert cyan[0] < 15 and cyan[1] > 240 and cyan[2] > 240


def test_palette_png_with_transparency_becomes_rgba_with_exact_colours() -> None:
    palette = Image.new("P", (32, 32), 1)
    palette.putpalette([0, 0, 0, 250, 120, 10, 10, 90, 240] + [0] * 759)
    palette.paste(2, (0, 0, 16, 32))
    palette.putpixel((31, 31), 0)
    out = open_image(to_bytes(palette, "PNG", transparency=0), max_pixels=MAX)
    assert out.mode == "RGBA"
    assert out.getpixel((5, 5)) == (10, 90, 240, 255)
    assert out.getpixel((20, 5)) == (250, 120, 10, 255)
    assert out.getpixel((31, 31))[3] == 0
    opaque = open_image(to_bytes(palette, "PNG"), max_pixels=MAX)
    assert opaque.mode == "RGB" and opaque.getpixel((20, 5)) == (250, 120, 10)


def test_grey_and_sixteen_bit_images_become_rgb_with_scaled_values() -> None:
    grey_alpha = Image.merge("LA", [Image.new("L", (32, 32), 77), Image.new("L", (32, 32), 200)])
    out = open_image(to_bytes(grey_alpha), max_pixels=MAX)
    assert out.mode == "RGBA" and out.getpixel((0, 0)) == (77, 77, 77, 200)
    deep = Image.fromarray(np.full((32, 32), 40_000, dtype=np.uint16))
    out = open_image(to_bytes(deep), max_pixels=MAX)
    assert out.mode == "RGB" and out.getpixel((0, 0)) == (156, 156, 156)  # 40000 / 257


def test_single_frame_gif_with_transparency_is_converted() -> None:
    gif = Image.new("P", (32, 32), 1)
    gif.putpalette([0, 0, 0, 30, 160, 60] + [0] * 762)
    gif.putpixel((0, 0), 0)
    out = open_image(to_bytes(gif, "GIF", transparency=0), max_pixels=MAX)
    assert out.mode == "RGBA" and out.getpixel((5, 5)) == (30, 160, 60, 255)
    assert out.getpixel((0, 0))[3] == 0


# ---------------------------------------------------------------------------------------------
# open_image: hostile inputs


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def _animated(fmt: str) -> bytes:
    frames = [Image.new("RGB", (32, 32), colour) for colour in ("red", "blue", "green")]
    return to_bytes(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100)


HOSTILE: dict[str, tuple[bytes, str]] = {
    "empty": (b"", "empty"),
    "random bytes": (np.random.default_rng(1).bytes(4096), "not an image"),
    "html error page": (
        b"<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>",
        "HTML",
    ),
    "json error": (b'{"error": {"message": "rate limited"}}', "JSON"),
    "truncated png": (to_bytes(scene())[:5000], "truncated"),
    "png missing its end": (to_bytes(scene())[:-12], "IEND"),
    "truncated jpeg": (to_bytes(scene(), "JPEG", quality=90)[:3000], "truncated"),
    "png header claiming 100000x100000": (_png_header_only(100_000, 100_000), "bomb"),
    "png header over max_pixels": (_png_header_only(8000, 8000), "over the limit"),
    "1x1": (to_bytes(Image.new("RGB", (1, 1))), "image is 1x1 pixels, too small to process"),
    "thin strip": (to_bytes(Image.new("RGB", (4000, MIN_SIDE - 1))), "too small"),
    "animated gif": (_animated("GIF"), "animated GIF"),
    "animated webp": (_animated("WEBP"), "animated WEBP"),
    "animated png": (_animated("PNG"), "animated PNG"),
    "unsupported format (ICO)": (to_bytes(Image.new("RGB", (32, 32)), "ICO"), "not an image"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_inputs_are_rejected_with_a_clear_reason(name: str) -> None:
    data, reason = HOSTILE[name]
    with pytest.raises(ImageRejected, match=reason) as info:
        open_image(data, max_pixels=MAX)
    assert len(str(info.value)) < 300


def test_large_but_cheap_image_is_refused_before_decoding() -> None:
    big = to_bytes(Image.new("RGB", (3000, 3000), (5, 5, 5)))  # compresses to a few KB
    assert len(big) < 100_000
    with pytest.raises(ImageRejected, match=r"3000x3000 pixels \(9.0 MP\), over the limit"):
        open_image(big, max_pixels=1_000_000)
    assert open_image(big, max_pixels=9_000_000).size == (3000, 3000)


# ---------------------------------------------------------------------------------------------
# near-duplicates


def test_near_duplicates_are_found_and_named_after_the_earlier_image() -> None:
    rng = np.random.default_rng(7)
    base = np.asarray(scene(320, 320, seed=3), dtype=np.float64)
    shifted = np.roll(base, (3, 2), axis=(0, 1))
    images = {
        1: base,
        2: base + rng.normal(0, 6, base.shape),  # sensor-like noise
        3: shifted,  # moved by a few pixels
        4: base * 1.12 + 6,  # brighter
        5: np.asarray(scene(320, 320, seed=11), dtype=np.float64),  # another picture
    }
    hashes = {
        image_id: perceptual_hash(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)))
        for image_id, arr in images.items()
    }
    assert all(0 <= h < 2**64 for h in hashes.values())
    earlier: list[tuple[int, int]] = []
    found: dict[int, int | None] = {}
    for image_id, h in hashes.items():
        found[image_id] = find_near_duplicate(h, earlier, threshold=10)
        earlier.append((image_id, h))
    assert found == {1: None, 2: 1, 3: 1, 4: 1, 5: None}
    assert hash_distance(hashes[1], hashes[5]) > 20
    assert find_near_duplicate(hashes[2], [(1, hashes[1])], threshold=0) is None  # 0 = off


def test_hash_ignores_format_and_size_changes() -> None:
    image = scene(640, 480, seed=5)
    small = open_image(to_bytes(image.resize((320, 240)), "JPEG", quality=70), max_pixels=MAX)
    assert hash_distance(perceptual_hash(image), perceptual_hash(small)) <= 4
    assert hash_distance(0, 2**64 - 1) == 64 and hash_distance(-1, 2**64 - 1) == 0


def test_a_file_decoding_would_only_copy_is_sendable_as_it_is() -> None:
    # What background removal receives without a trim: the JPEG itself where its prepared PNG
    # would hold the very same pixels and profile and nothing else, the prepared PNG otherwise.
    photo = scene()
    for data in (
        to_bytes(photo, "JPEG", quality=90),
        to_bytes(photo, "JPEG", progressive=True, icc_profile=SRGB),
    ):
        assert sendable_as_is(data, max_pixels=MAX)
        plain, opened = decode(data), open_image(data, max_pixels=MAX)
        assert np.array_equal(np.asarray(plain), np.asarray(opened))
        assert plain.info.get("icc_profile") == opened.info.get("icc_profile")
    rotated = Image.Exif()
    rotated[0x0112] = 6
    plain_exif = Image.Exif()
    plain_exif[0x0110] = "camera model"
    lab = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    whole = to_bytes(photo, "JPEG", quality=90)
    not_sendable = {
        "rotated by EXIF": to_bytes(photo, "JPEG", exif=rotated),
        "any EXIF": to_bytes(photo, "JPEG", exif=plain_exif),
        "a comment": to_bytes(photo, "JPEG", comment=b"prompt: a red fox"),
        "a profile not for RGB": to_bytes(photo, "JPEG", icc_profile=lab),
        "CMYK": to_bytes(photo.convert("CMYK"), "JPEG"),
        "grey": to_bytes(photo.convert("L"), "JPEG"),
        "cut short": whole[:-400],
        "PNG": to_bytes(photo),
        "WebP": to_bytes(photo, "WEBP"),
        "not an image": b"<html>502 Bad Gateway</html>",
        "empty": b"",
        "too small": to_bytes(photo.resize((MIN_SIDE - 1, 40)), "JPEG"),
    }
    for name, data in not_sendable.items():
        assert not sendable_as_is(data, max_pixels=MAX), name
    assert not sendable_as_is(whole, max_pixels=photo.width * photo.height - 1)
