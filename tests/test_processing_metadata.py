"""Embedded IPTC/XMP, read back by an independent reader: ExifTool.

Without `exiftool` on PATH these tests are skipped, except on CI (CI=true), where a missing
ExifTool is a broken test environment and fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from genfactory.processing import DIGITAL_SOURCE_TYPE, embed_metadata
from genfactory.tasks.image_files import embed_file_metadata

EXIFTOOL = shutil.which("exiftool")
MISSING = "exiftool not installed (apt-get install libimage-exiftool-perl)"


@pytest.fixture(autouse=True)
def _need_exiftool() -> None:
    if EXIFTOOL is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{MISSING}: required on CI", pytrace=False)
        pytest.skip(f"{MISSING}: these tests need an independent metadata reader")


TITLE = "Café crème on a marble table, morning light"
DESCRIPTION = "A cup of café crème with latte art; ½ croissant — shot from above. 東京"
KEYWORDS = ["café crème", "coffee", "croissant", "breakfast", "marble", "über", "latte art"]


def _image(path: Path, fmt: str) -> Path:
    image = Image.new("RGB", (64, 48), (120, 80, 40))
    image.save(path, fmt)
    return path


def _read(path: Path) -> dict[str, Any]:
    assert EXIFTOOL is not None
    out = subprocess.run(
        [EXIFTOOL, "-json", "-G1", "-a", "-struct", str(path)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    tags: dict[str, Any] = json.loads(out.stdout.decode("utf-8"))[0]
    return tags


def _as_list(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


@pytest.mark.parametrize(("fmt", "suffix"), [("JPEG", "jpg"), ("PNG", "png")])
def test_iptc_and_xmp_read_back_exactly(tmp_path: Path, fmt: str, suffix: str) -> None:
    path = _image(tmp_path / f"image.{suffix}", fmt)
    embed_metadata(path, title=TITLE, description=DESCRIPTION, keywords=KEYWORDS)
    tags = _read(path)
    assert tags["IPTC:CodedCharacterSet"] == "UTF8"
    assert tags["IPTC:ObjectName"] == TITLE
    assert tags["IPTC:Headline"] == TITLE
    assert tags["IPTC:Caption-Abstract"] == DESCRIPTION
    assert _as_list(tags["IPTC:Keywords"]) == KEYWORDS
    assert tags["XMP-dc:Title"] == TITLE
    assert tags["XMP-dc:Description"] == DESCRIPTION
    assert _as_list(tags["XMP-dc:Subject"]) == KEYWORDS
    assert tags["XMP-iptcExt:DigitalSourceType"] == DIGITAL_SOURCE_TYPE
    with Image.open(path) as reopened:
        reopened.load()  # the pixels are intact
        assert reopened.size == (64, 48)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temp left


def test_webp_gets_xmp_only(tmp_path: Path) -> None:
    path = _image(tmp_path / "image.webp", "WEBP")
    embed_file_metadata(str(path), TITLE, DESCRIPTION, KEYWORDS)
    tags = _read(path)
    assert not any(key.startswith("IPTC:") for key in tags)  # WebP has no IPTC block
    assert tags["XMP-dc:Title"] == TITLE
    assert _as_list(tags["XMP-dc:Subject"]) == KEYWORDS
    assert tags["XMP-iptcExt:DigitalSourceType"] == DIGITAL_SOURCE_TYPE


def test_embedding_again_replaces_every_field(tmp_path: Path) -> None:
    path = _image(tmp_path / "image.jpg", "JPEG")
    embed_metadata(path, title=TITLE, description=DESCRIPTION, keywords=KEYWORDS)
    embed_metadata(path, title="Second title", description="", keywords=["one", " two  words "])
    tags = _read(path)
    assert tags["IPTC:ObjectName"] == "Second title" and tags["XMP-dc:Title"] == "Second title"
    assert "IPTC:Caption-Abstract" not in tags and "XMP-dc:Description" not in tags
    assert _as_list(tags["IPTC:Keywords"]) == ["one", "two words"]
    assert _as_list(tags["XMP-dc:Subject"]) == ["one", "two words"]


def test_keywords_are_deduplicated_in_order(tmp_path: Path) -> None:
    path = _image(tmp_path / "image.png", "PNG")
    embed_metadata(path, title="t", description="d", keywords=["Sea", "sky", "sea", "", "SKY"])
    assert _as_list(_read(path)["IPTC:Keywords"]) == ["Sea", "sky"]


def test_concurrent_embedding_from_threads(tmp_path: Path) -> None:
    paths = [_image(tmp_path / f"image{i}.jpg", "JPEG") for i in range(8)]
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            embed_metadata(
                paths[i], title=f"Title {i}", description=f"Déscription {i}", keywords=[f"k{i}"]
            )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for i, path in enumerate(paths):
        tags = _read(path)
        assert tags["XMP-dc:Title"] == f"Title {i}" and tags["IPTC:Keywords"] == f"k{i}"


def test_a_metadata_write_cut_short_leaves_a_temp_copy_whose_name_says_whose_it_is(
    tmp_path: Path,
) -> None:
    # The finish sweep and `jobs delete` (housekeeping) find such copies by this name.
    from genfactory.processing.metadata import embedding_leftover_stem

    staged = tmp_path / "fox_1_e2.png"
    staged.write_bytes(b"png")
    cut_short = tmp_path / ".fox_1_e2.5dc46519.meta.png"  # the name embed_metadata writes to
    cut_short.write_bytes(b"half")
    (tmp_path / ".fox_1_e22.5dc46519.meta.png").write_bytes(b"another image's")
    (tmp_path / ".fox_1_e2.5dc46519.tmp").write_bytes(b"another writer's")

    stems = {path.name: embedding_leftover_stem(path.name) for path in tmp_path.iterdir()}
    assert stems == {
        staged.name: None,
        cut_short.name: staged.stem,
        ".fox_1_e22.5dc46519.meta.png": "fox_1_e22",
        ".fox_1_e2.5dc46519.tmp": None,
    }
