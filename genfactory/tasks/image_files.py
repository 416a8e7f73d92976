"""The file edge of image processing: read an image file, run `genfactory.processing`, write
the result. Top-level functions taking plain values, so `engine.pool.run_in_pool` can ship them
to a worker process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genfactory.config import ProcessingSection
from genfactory.errors import ImageRejected
from genfactory.files import safe_name, write_atomically, write_replacing
from genfactory.processing import (
    EXTENSIONS,
    Stage,
    embed_metadata,
    encode,
    open_image,
    perceptual_hash,
    process_image,
)


def _read(src: str) -> bytes:
    try:
        return Path(src).read_bytes()
    except FileNotFoundError:
        raise ImageRejected(f"image file {src} does not exist") from None
    except IsADirectoryError:
        raise ImageRejected(f"image path {src} is a directory, not a file") from None


def hash_file(src: str, max_pixels: int) -> int:
    """Perceptual hash of an image file as generated (before any processing)."""
    return perceptual_hash(open_image(_read(src), max_pixels=max_pixels))


def prepare_file(src: str, settings: dict[str, Any], max_pixels: int) -> bytes:
    """Decode the file at ``src``, run the "prepare" stage, return lossless PNG bytes.

    Used before background removal: the PNG keeps alpha and the ICC profile, and is encoded
    at the fastest zlib level since it only travels to the remover.
    """
    section = ProcessingSection.model_validate(settings)
    image = process_image(open_image(_read(src), max_pixels=max_pixels), section, stage="prepare")
    fast_png = section.model_copy(update={"png_quality": 100})
    return encode(image, "png", fast_png)


def finish_to_file(
    src: str | bytes, dst_dir: str, stem: str, settings: dict[str, Any], replace: bool = False
) -> dict[str, Any]:
    """Process an image and write it to ``dst_dir/stem.<ext>`` (ext from convert_format).

    ``src`` is a path (stages "prepare" and "finish" both run) or the bytes background
    removal returned ("finish" only: they were prepared before removal; the file as it was,
    when removal kept the background of a file that went to it unchanged). Existing files
    are never overwritten: a taken name gets ``-2``, ``-3``... before the extension (with
    ``replace``, for a file name only this image uses, the file of that name is replaced).
    Returns ``{"path", "width", "height", "format", "bytes"}``. (Near-duplicates are judged
    on the original: see `hash_file`.)
    """
    section = ProcessingSection.model_validate(settings)
    stage: Stage = "finish" if isinstance(src, bytes) else "all"
    data = src if isinstance(src, bytes) else _read(src)
    image = process_image(
        open_image(data, max_pixels=section.max_image_pixels), section, stage=stage
    )
    fmt = section.convert_format
    encoded = encode(image, fmt, section)
    write = write_replacing if replace else write_atomically
    path = write(Path(dst_dir), safe_name(stem, fallback="image"), EXTENSIONS[fmt], encoded)
    return {
        "path": str(path),
        "width": image.width,
        "height": image.height,
        "format": fmt,
        "bytes": len(encoded),
    }


def embed_file_metadata(path: str, title: str, description: str, keywords: list[str]) -> None:
    """Embed IPTC/XMP into the output file at ``path``; a top-level function, so the metadata
    step can run it in the process pool."""
    embed_metadata(Path(path), title=title, description=description, keywords=keywords)
