"""Existing images in (`job.images_dir`, `run --images DIR`): one job slot per image file.

Pure planning: the folder is listed and each file's header read; nothing is written, moved or
changed there. Each slot carries the file's path and stem in its `variables`, the
`files` image provider returns the file's bytes, and the output and temp names keep the stem.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from genfactory.config import Settings
from genfactory.errors import InputFileError
from genfactory.files import SOURCE_STEM_MAX, image_name
from genfactory.media import sniff_media_type

#: Keys of a slot's `variables` for a file from the images folder.
SOURCE_PATH = "source_path"
SOURCE_STEM = "source_stem"


def source_stem_of(variables: Mapping[str, object]) -> str | None:
    """The unique name stem of a slot's file from the images folder (a slot's `variables`), or
    None for a generated slot."""
    stem = variables.get(SOURCE_STEM)
    return str(stem) if stem else None


#: A file this large is not a stock image (and would not pass `max_image_pixels` anyway).
_MAX_FILE_BYTES = 200 * 1024 * 1024
_SEPARATORS = re.compile(r"[_\-.+]+|(?<=[a-z])(?=[A-Z])")
_reported: set[str] = set()
_NOISE = re.compile(r"^(?:\d+|img|image|dsc|dscn|photo|final|copy|v\d+|[0-9a-f]{8,})$", re.I)


@dataclass(frozen=True)
class FilePlan:
    """One image file of the folder, as a job slot."""

    slot: int
    path: Path
    keyword: str
    aspect_ratio: str
    width: int
    height: int
    #: The name its files get (`files.image_name` of its stem), unique in the folder's job.
    stem: str

    def as_slot(self) -> dict[str, object]:
        """The slot row (`repository.add_slots`); the prompt is the keyword: nothing to write."""
        return {
            "slot": self.slot,
            "keyword": self.keyword,
            "variables": {
                "keyword": self.keyword,
                SOURCE_PATH: str(self.path),
                SOURCE_STEM: self.stem,
            },
            "aspect_ratio": self.aspect_ratio,
            "width": self.width,
            "height": self.height,
            "system_prompt": self.keyword,
            "prompt": self.keyword,
        }


def keyword_from_stem(stem: str) -> str:
    """What a file name says about its picture: 'red_fox-0012' -> 'red fox'."""
    words = [w for w in _SEPARATORS.split(stem) if w and not _NOISE.match(w)]
    return " ".join(words).lower().strip() or "image"


def _ratio(width: int, height: int) -> str:
    """The exact aspect ratio, reduced: 1024x768 -> '4:3'; capped at the allowed 8:1."""
    divisor = math.gcd(width, height) or 1
    w, h = width // divisor, height // divisor
    if max(w / h, h / w) > 8:
        return "8:1" if w > h else "1:8"
    return f"{w}:{h}"


def plan_folder(folder: Path) -> tuple[list[FilePlan], list[str]]:
    """(one plan per image file in name order, one line per file skipped and why).

    An image is recognised by its first bytes, not its extension. A file that starts like an
    image but cannot be read is still planned (QC rejects it, naming the reason).
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        what = "does not exist" if not folder.exists() else "is not a folder"
        raise InputFileError(
            f"images folder {folder} {what}; pass the folder that holds the images "
            "with --images DIR (or job.images_dir)"
        )
    plans: list[FilePlan] = []
    skipped: list[str] = []
    taken: set[str] = set()
    for path in sorted(folder.iterdir(), key=lambda p: p.name):
        if path.name.startswith(".") or not path.is_file():
            continue
        try:
            size = path.stat().st_size
            with path.open("rb") as handle:
                head = handle.read(32)
        except OSError as exc:
            skipped.append(f"skipped {path.name}: cannot be read ({exc.strerror or exc})")
            continue
        if sniff_media_type(head) is None:
            skipped.append(f"skipped {path.name}: not an image file")
            continue
        if size > _MAX_FILE_BYTES:
            skipped.append(f"skipped {path.name}: {size / 1e6:.0f} MB is too large")
            continue
        try:
            with Image.open(path) as image:
                width, height = image.size
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            width = height = 0
        plans.append(
            FilePlan(
                slot=len(plans),
                path=path.resolve(),
                keyword=keyword_from_stem(path.stem),
                aspect_ratio=_ratio(width, height) if width and height else "1:1",
                width=width,
                height=height,
                stem=_unique_name(path.stem, taken),
            )
        )
    if not plans:
        raise InputFileError(
            f"images folder {folder} holds no image files (PNG, JPEG, WebP, ...); check the folder"
        )
    return plans, skipped


def _unique_name(stem: str, taken: set[str]) -> str:
    """The file's name (`files.image_name`), numbered `-2`, `-3`... when another file of the
    folder already has it ('a b.png' and 'a_b.jpg', 'x.jpg' and 'x.jpeg', long names alike in
    their first 120 characters): one name per file in temp, so no original replaces another's.
    Compared without case, as macOS and Windows file systems do."""
    name = base = image_name("", 0, 0, stem)
    n = 1
    while name.lower() in taken:
        n += 1
        name = f"{base[: SOURCE_STEM_MAX - len(str(n)) - 1]}-{n}"
    taken.add(name.lower())
    return name


def warn_once(lines: list[str]) -> None:
    """Each line as a warning, once per process (the CLI and the job both prepare a job)."""
    for line in lines:
        if line not in _reported:
            _reported.add(line)
            logging.getLogger("genfactory").warning(line)


def settings_for_files(settings: Settings, count: int) -> Settings:
    """The settings of a job over `count` existing files: one image per slot, from the
    `files` provider; every other setting (QC, processing, metadata) applies as given."""
    return settings.model_copy(
        update={
            "providers": settings.providers.model_copy(update={"image": "files"}),
            "job": settings.job.model_copy(update={"count": count, "variations": 1}),
        }
    )
