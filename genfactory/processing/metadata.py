"""Embedding title, description and keywords (IPTC + XMP) into output files, with pyexiv2.

The one module of the package that touches files. Stock agencies read these fields to
pre-fill a submission: IPTC where the format has it (JPEG, PNG), XMP everywhere, plus the
IPTC digital source type that declares the image as AI-generated.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyexiv2

from genfactory.errors import ImageRejected

#: IPTC NewsCode for "created by a trained algorithm": what agencies require for AI images.
DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"

#: IPTC 1:90 value declaring UTF-8 text (ESC % G); without it readers assume Latin-1.
_IPTC_UTF8 = "\x1b%G"

# exiv2's XMP toolkit is initialised by pyexiv2 without a lock callback, which makes XMP
# parsing and serialising unsafe across threads; every pyexiv2 call goes through this lock.
_EXIV2_LOCK = threading.Lock()

# pyexiv2 prints exiv2's warnings on stderr; failures still raise.
pyexiv2.set_log_level(4)


def _clean_keywords(keywords: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for keyword in keywords:
        word = " ".join(str(keyword).split())
        if word and word.lower() not in seen:
            seen.add(word.lower())
            out.append(word)
    return out


def _lang_alt(text: str) -> dict[str, str] | None:
    # None deletes the property, so re-embedding never leaves an older value behind.
    return {'lang="x-default"': text} if text else None


def _write(path: Path, title: str, description: str, keywords: list[str]) -> None:
    with _EXIV2_LOCK, pyexiv2.Image(str(path)) as meta:
        modes = meta.get_access_mode()
        if "write" in (modes.get("iptc") or ""):
            iptc: dict[str, Any] = {
                "Iptc.Envelope.CharacterSet": _IPTC_UTF8,
                "Iptc.Application2.ObjectName": title or None,
                "Iptc.Application2.Headline": title or None,
                "Iptc.Application2.Caption": description or None,
                "Iptc.Application2.Keywords": keywords or None,
            }
            meta.modify_iptc(iptc)
        xmp: dict[str, Any] = {
            "Xmp.dc.title": _lang_alt(title),
            "Xmp.dc.description": _lang_alt(description),
            "Xmp.dc.subject": keywords or None,
            "Xmp.iptcExt.DigitalSourceType": DIGITAL_SOURCE_TYPE,
        }
        meta.modify_xmp(xmp)


_TEMP_MARK = ".meta"


_LEFTOVER = re.compile(r"^\.(?P<stem>.+)\.[0-9a-f]{8}" + re.escape(_TEMP_MARK) + r"\.[A-Za-z0-9]+$")


def embedding_leftover_stem(name: str) -> str | None:
    """The stem of the file a leftover of `embed_metadata` named ``name`` was a copy of, or
    None when ``name`` is not such a leftover."""
    match = _LEFTOVER.match(name)
    return match["stem"] if match else None


def embed_metadata(path: Path, *, title: str, description: str, keywords: list[str]) -> None:
    """Write title, description and keywords into the image file at ``path``, atomically.

    IPTC (Object Name 2:05, Headline 2:105, Caption-Abstract 2:120, Keywords 2:25, UTF-8
    declared) where the format supports it: JPEG and PNG; WebP has no IPTC block, so it
    gets XMP only. XMP everywhere: dc:title, dc:description, dc:subject and
    Iptc4xmpExt:DigitalSourceType = trainedAlgorithmicMedia. Keywords are whitespace-
    normalised and deduplicated (case-insensitively), order kept. The file is copied to a
    temporary name in its directory, edited, synced and moved over the original, so a
    reader never sees a half-written file. A file exiv2 cannot parse raises ImageRejected.
    """
    path = Path(path)
    words = _clean_keywords(keywords)
    tmp = path.with_name(f".{path.stem}.{secrets.token_hex(4)}{_TEMP_MARK}{path.suffix}")
    try:
        # O_EXCL with mode 0o666: a fresh name, and the umask decides permissions as for
        # any other output file (mkstemp would make it 0600).
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as out, path.open("rb") as src:
            shutil.copyfileobj(src, out)
        try:
            _write(tmp, title.strip(), description.strip(), words)
        except RuntimeError as exc:  # pyexiv2 reports every exiv2 failure as RuntimeError
            raise ImageRejected(f"cannot write metadata into {path.name}: {exc}") from None
        with tmp.open("rb+") as synced:
            os.fsync(synced.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
